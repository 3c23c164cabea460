"""Examples whose images are files: manifests and UPMC Food-101.

Readers parse their index files into `FileRecord`s (path, text, label
strings, file and row); `FileRecordSource` streams one split of them as raw
examples, checking each on the way: text that is not UTF-8, a label outside
the training vocabulary, a missing or corrupt image are bad records.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from cmaclip_tf.data import bad_records
from cmaclip_tf.data.image_validator import ImageValidator
from cmaclip_tf.data.raw_examples import ENCODED_IMAGE_SPEC
from cmaclip_tf.data.raw_examples import ordered_parallel_map
from cmaclip_tf.data.raw_examples import raw_example_spec


@dataclasses.dataclass
class FileRecord:
    """One example of an index file, before it is checked.

    Attributes:
        image_path: absolute path of the image file.
        text: the text, possibly holding surrogate escapes where the file
            had bytes that are not UTF-8.
        labels: `{task: class name}`; an empty string or `None` is "no label".
        location: the file and row, for messages (`"path/train.csv:12"`).
        problem: `(reason, detail)` when parsing already found it bad.
    """

    image_path: str
    text: str
    labels: dict
    location: str
    problem: tuple = None


def text_problem(text):
    """What is wrong with `text` as UTF-8, or `None`."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"not valid UTF-8 near character {error.start}"
    return None


class FileRecordSource:
    """Streams one split of `FileRecord`s as raw examples (a generator factory).

    Args:
        records: list of `FileRecord`.
        split: the split's name, for the bad-record counts.
        tasks: `LabelVocabularies` (label ids come from these).
        counter: `BadRecordCounter`.
        validator: `ImageValidator`; one is made if `None`.
        num_workers: threads reading and checking images.
    """

    def __init__(
        self, records, split, tasks, counter, validator=None, num_workers=4
    ):
        self.records = records
        self.split = split
        self.tasks = tasks
        self.counter = counter
        self.validator = validator or ImageValidator()
        self.num_workers = num_workers
        self._good = None  # The good records' tensors, after a full pass.

    def __len__(self):
        return len(self.records)

    def __call__(self):
        """Yields the good records as raw examples (image bytes included)."""
        return self._examples(read_images=True)

    def dataset(self, num_parallel_reads=tf.data.AUTOTUNE):
        """The split as a `tf.data.Dataset` of raw examples.

        Until one pass has checked every record, Python checks each one and
        yields its image path; after that, the good records are known and
        come straight from tensors. Either way the graph reads the image
        files, in parallel, and the order is the records' order.
        """
        if self._good is not None:
            good = self._good
            paths = tf.data.Dataset.from_tensor_slices(
                {
                    "image": tf.constant(good["image"], tf.string),
                    "text": tf.constant(good["text"], tf.string),
                    "labels": {
                        task: tf.constant(good["labels"][task], tf.int32)
                        for task in self.tasks
                    },
                    "id": tf.constant(good["id"], tf.string),
                }
            )
        else:
            spec = raw_example_spec(list(self.tasks), ENCODED_IMAGE_SPEC)
            paths = tf.data.Dataset.from_generator(
                self._checked_paths, output_signature=spec
            )

        def read(example):
            return {**example, "image": tf.io.read_file(example["image"])}

        return paths.map(
            read, num_parallel_calls=num_parallel_reads, deterministic=True
        )

    def _checked_paths(self):
        good = []
        for example in self._examples(read_images=False):
            good.append(example)
            yield example
        # A complete pass: later epochs need no Python per record.
        self._good = {
            "image": [e["image"] for e in good],
            "text": [e["text"] for e in good],
            "labels": {
                task: [int(e["labels"][task]) for e in good]
                for task in self.tasks
            },
            "id": [e["id"] for e in good],
        }

    def _examples(self, read_images):
        for result in ordered_parallel_map(
            lambda record: self._load(record, read_images),
            self.records,
            num_workers=self.num_workers,
        ):
            if result[0] == "bad":
                _, reason, location, detail = result
                self.counter.report(self.split, reason, location, detail)
                continue
            yield result[1]

    def _load(self, record, read_image=True):
        if record.problem is not None:
            reason, detail = record.problem
            return ("bad", reason, record.location, detail)
        problem = text_problem(record.text)
        if problem is not None:
            return (
                "bad",
                bad_records.UNDECODABLE_TEXT,
                record.location,
                problem,
            )
        labels = {}
        for task, vocabulary in self.tasks.items():
            name = record.labels.get(task)
            try:
                labels[task] = np.int32(vocabulary.lookup(name))
            except KeyError:
                return (
                    "bad",
                    bad_records.UNKNOWN_LABEL,
                    record.location,
                    f"{task} label {name!r} is not in the training vocabulary "
                    f"({len(vocabulary)} classes)",
                )
        if read_image:
            data, problem = self.validator.read(record.image_path)
        else:
            data = record.image_path.encode("utf-8")
            problem = self.validator.check_file(record.image_path)
        if problem is not None:
            if problem.startswith("missing"):
                return (
                    "bad",
                    bad_records.MISSING_IMAGE,
                    record.location,
                    f"{record.image_path} {problem}",
                )
            return (
                "bad",
                bad_records.CORRUPT_IMAGE,
                record.location,
                f"{record.image_path}: {problem}",
            )
        return (
            "ok",
            {
                "image": data,
                "text": record.text.encode("utf-8"),
                "labels": labels,
                "id": record.location.encode("utf-8"),
            },
        )
