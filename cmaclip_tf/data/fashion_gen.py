"""Fashion-Gen's HDF5 files, streamed in blocks (never loaded whole).

    DATA_DIR/fashiongen_256_256_train.h5
    DATA_DIR/fashiongen_256_256_validation.h5

Each file holds `input_image` uint8 `(N, 256, 256, 3)` and, among others,
`input_description`, `input_subcategory` and `input_category` as `(N, 1)`
byte strings. The task is the 121-way `subcategory` by default; `category`
(48 classes) is available as a second task. The validation file is the test
split (the paper's 32,528 test examples); the validation split is a
stratified sample of the training file.
"""

import os

import h5py
import numpy as np

from cmaclip_tf.data import bad_records
from cmaclip_tf.data.raw_examples import PIXELS_IMAGE_SPEC
from cmaclip_tf.data.raw_examples import raw_split_from_generator

TRAIN_FILE = "fashiongen_256_256_train.h5"
VALIDATION_FILE = "fashiongen_256_256_validation.h5"
IMAGE_KEY = "input_image"
TEXT_KEY = "input_description"
TASK_KEYS = {"subcategory": "input_subcategory", "category": "input_category"}
DEFAULT_TASKS = ("subcategory",)
DEFAULT_VAL_SIZE = 5000
SOURCE_URL = "https://fashion-gen.com/"


def fashion_gen_files(data_dir):
    """`(train, validation)` file paths; raises naming any missing file."""
    paths = [
        os.path.join(data_dir, name) for name in (TRAIN_FILE, VALIDATION_FILE)
    ]
    missing = [os.path.basename(p) for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f"{' and '.join(missing)} not found in {data_dir}; get Fashion-Gen "
            f"from {SOURCE_URL} (the 256x256 HDF5 release) and pass its folder "
            "as --data-dir."
        )
    return tuple(paths)


def check_tasks(tasks):
    tasks = list(tasks or DEFAULT_TASKS)
    unknown = [t for t in tasks if t not in TASK_KEYS]
    if unknown:
        raise ValueError(
            f"Fashion-Gen has no task {unknown}; choose from {list(TASK_KEYS)}."
        )
    return tasks


def read_labels(path, tasks):
    """`{task: class name of every row}`, reading only the label columns."""
    with h5py.File(path, "r") as f:
        _check_keys(f, path, tasks)
        return {
            task: [_decode_label(v) for v in f[TASK_KEYS[task]][:, 0]]
            for task in tasks
        }


def num_rows(path):
    with h5py.File(path, "r") as f:
        return int(f[IMAGE_KEY].shape[0])


def _check_keys(f, path, tasks):
    keys = [IMAGE_KEY, TEXT_KEY] + [TASK_KEYS[t] for t in tasks]
    missing = [k for k in keys if k not in f]
    if missing:
        raise ValueError(
            f"{path} lacks {missing}; is it a Fashion-Gen HDF5 file? It has "
            f"{sorted(f.keys())}."
        )


def _decode_label(value):
    return bytes(value).decode("utf-8", errors="replace").strip()


class FashionGenSource:
    """Streams the rows `indices` of one Fashion-Gen file as raw examples.

    Rows are read `block_size` at a time (one slice when they are close
    together, else a point selection), so memory stays at a few blocks.

    Args:
        path: the HDF5 file.
        indices: sorted row indices of the split.
        split: the split's name, for bad-record counts.
        tasks: `LabelVocabularies` of the tasks to read.
        counter: `BadRecordCounter`.
        block_size: rows per read.
    """

    def __init__(self, path, indices, split, tasks, counter, block_size=64):
        self.path = path
        self.indices = np.asarray(indices, np.int64)
        self.split = split
        self.tasks = tasks
        self.counter = counter
        self.block_size = block_size

    def __len__(self):
        return len(self.indices)

    def dataset(self):
        return raw_split_from_generator(
            self, list(self.tasks), PIXELS_IMAGE_SPEC
        )

    def __call__(self):
        name = os.path.basename(self.path)
        with h5py.File(self.path, "r") as f:
            columns = {"image": f[IMAGE_KEY], "text": f[TEXT_KEY]}
            for task in self.tasks:
                columns[task] = f[TASK_KEYS[task]]
            for start in range(0, len(self.indices), self.block_size):
                block = self.indices[start : start + self.block_size]
                values = {
                    key: _read_rows(data, block)
                    for key, data in columns.items()
                }
                for i, index in enumerate(block):
                    location = f"{name}:row {index}"
                    example = self._example(values, i, location)
                    if example is not None:
                        yield example

    def _example(self, values, i, location):
        try:
            text = bytes(values["text"][i][0]).decode("utf-8")
        except UnicodeDecodeError as error:
            self.counter.report(
                self.split,
                bad_records.UNDECODABLE_TEXT,
                location,
                f"description is not valid UTF-8 at byte {error.start}",
            )
            return None
        labels = {}
        for task, vocabulary in self.tasks.items():
            name = _decode_label(values[task][i][0])
            if name not in vocabulary:
                self.counter.report(
                    self.split,
                    bad_records.UNKNOWN_LABEL,
                    location,
                    f"{task} label {name!r} is not in the training vocabulary "
                    f"({len(vocabulary)} classes)",
                )
                return None
            labels[task] = np.int32(vocabulary.index(name))
        return {
            "image": values["image"][i],
            "text": text.encode("utf-8"),
            "labels": labels,
            "id": location.encode("utf-8"),
        }


def _read_rows(data, block):
    first, last = int(block[0]), int(block[-1])
    if last - first + 1 <= 2 * len(block):
        return data[first : last + 1][block - first]
    return data[block.tolist()]
