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

from cmaclip_tf.datasets import bad_records
from cmaclip_tf.datasets.dataset_builder import DatasetBuilder
from cmaclip_tf.datasets.multitask_dataset import MultiTaskDataset
from cmaclip_tf.datasets.raw_examples import PIXELS_IMAGE_SPEC
from cmaclip_tf.datasets.raw_examples import raw_split_from_generator

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


def decode_text(value):
    """`(text, fell_back)`: UTF-8, else Latin-1, as Fashion-Gen's publishers.

    Their reader decodes `input_description` with `np.char.decode(...,
    "latin")`; most rows are UTF-8, some are not. Latin-1 decodes any bytes,
    so no row is lost; `fell_back` says which ones needed it.
    """
    data = bytes(value)
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("latin-1"), True


def _decode_label(value):
    return decode_text(value)[0].strip()


class FashionGenSource:
    """The rows `indices` of one Fashion-Gen file as a record source.

    The first use reads only the text and label columns (in blocks) to find
    the good rows: a label outside the training vocabulary is a bad record;
    text that is not UTF-8 is decoded as Latin-1 and counted as recovered.
    Reading then streams images `block_size` rows at a time in any order
    (each block is read sorted, in one slice when its rows are close
    together, else as a point selection), so memory stays at a few blocks.

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
        self._rows = None  # Good rows and their label ids, once checked.

    def __len__(self):
        return len(self.good_rows()[0])

    def good_rows(self):
        """`(rows, {task: label ids})` of the good rows; checks them once."""
        if self._rows is None:
            name = os.path.basename(self.path)
            rows, labels = [], {task: [] for task in self.tasks}
            with h5py.File(self.path, "r") as f:
                columns = {"text": f[TEXT_KEY]}
                columns.update({t: f[TASK_KEYS[t]] for t in self.tasks})
                for block, values in self._blocks(columns, self.indices, 4096):
                    for i, row in enumerate(block):
                        ids = self._check(values, i, f"{name}:row {row}")
                        if ids is not None:
                            rows.append(row)
                            for task in self.tasks:
                                labels[task].append(ids[task])
            self._rows = (
                np.asarray(rows, np.int64),
                {t: np.asarray(v, np.int32) for t, v in labels.items()},
            )
        return self._rows

    def dataset(self, order=None):
        """The good rows as raw examples, in `order` (default: file order)."""
        self.good_rows()  # Checked here, not inside tf.data: errors stay clear.
        return raw_split_from_generator(
            lambda: self.examples(order), list(self.tasks), PIXELS_IMAGE_SPEC
        )

    def examples(self, order=None):
        """Yields the good rows as raw examples (numpy), in `order`."""
        rows, labels = self.good_rows()
        positions = np.arange(len(rows)) if order is None else np.asarray(order)
        name = os.path.basename(self.path)
        with h5py.File(self.path, "r") as f:
            columns = {"image": f[IMAGE_KEY], "text": f[TEXT_KEY]}
            for start in range(0, len(positions), self.block_size):
                block = positions[start : start + self.block_size]
                # h5py reads increasing rows; read sorted, yield in order.
                by_row = np.argsort(rows[block], kind="stable")
                values = {
                    key: _read_rows(data, rows[block][by_row])
                    for key, data in columns.items()
                }
                inverse = np.empty_like(by_row)
                inverse[by_row] = np.arange(len(by_row))
                for j, position in enumerate(block):
                    k = inverse[j]
                    text, _ = decode_text(values["text"][k][0])
                    yield {
                        "image": values["image"][k],
                        "text": text.encode("utf-8"),
                        "labels": {
                            t: labels[t][position] for t in self.tasks
                        },
                        "id": f"{name}:row {rows[position]}".encode("utf-8"),
                    }

    def _blocks(self, columns, indices, block_size):
        for start in range(0, len(indices), block_size):
            block = indices[start : start + block_size]
            yield block, {
                key: _read_rows(data, block) for key, data in columns.items()
            }

    def _check(self, values, i, location):
        """The row's label ids, or `None` for a bad row (reported)."""
        _, fell_back = decode_text(values["text"][i][0])
        ids = {}
        for task, vocabulary in self.tasks.items():
            raw_label = values[task][i][0]
            fell_back |= decode_text(raw_label)[1]
            name = _decode_label(raw_label)
            if name not in vocabulary:
                self.counter.report(
                    self.split,
                    bad_records.UNKNOWN_LABEL,
                    location,
                    f"{task} label {name!r} is not in the training vocabulary "
                    f"({len(vocabulary)} classes)",
                )
                return None
            ids[task] = np.int32(vocabulary.index(name))
        if fell_back:
            self.counter.recover(self.split, bad_records.LATIN1_TEXT, location)
        return ids


def _read_rows(data, block):
    if len(block) == 0:
        return data[0:0]
    first, last = int(block[0]), int(block[-1])
    if last - first + 1 <= 2 * len(block):
        return data[first : last + 1][block - first]
    return data[block.tolist()]


class FashionGenDataset(DatasetBuilder):
    """Fashion-Gen: `build(data_dir)`; validation carved out of the train
    file, the validation file is the test split."""

    name = "fashion_gen"

    def build(self, data_dir=None, **_):
        data_dir = self.require("its data folder", data_dir, "--data-dir")
        tasks = check_tasks(self.tasks)
        train_path, test_path = fashion_gen_files(data_dir)
        labels = read_labels(train_path, tasks)
        train_ids, val_ids, notes = self.spec.carve_validation(
            labels[tasks[0]], default_size=DEFAULT_VAL_SIZE
        )
        vocabularies = self.vocabularies(
            tasks, lambda t: np.asarray(labels[t], object)[train_ids]
        )
        rows = {
            "train": (train_path, train_ids),
            "validation": (train_path, val_ids),
            "test": (test_path, np.arange(num_rows(test_path))),
        }
        sizes = self.spec.sizes()
        sources = {
            split: FashionGenSource(
                path, indices[: sizes[split]], split, vocabularies, self.counter
            )
            for split, (path, indices) in rows.items()
        }
        return MultiTaskDataset(
            self.name, vocabularies, sources, self.counter,
            description=f"Fashion-Gen HDF5 files in {data_dir}", notes=notes,
        )
