"""Examples whose images are files: manifests and UPMC Food-101.

Readers parse their index files into `FileRecord`s (path, text, label
strings, file and row); `FileRecordSource` checks one split of them once
(text that is not UTF-8, a label outside the training vocabulary, a missing
or corrupt image, one over the pixel limit are bad records) and then reads
the good ones as raw examples, in any order.
"""

import collections
import dataclasses

import numpy as np
import tensorflow as tf

from cmaclip_tf.datasets import bad_records
from cmaclip_tf.datasets.raw_examples import examples_to_columns
from cmaclip_tf.datasets.raw_examples import indexed_dataset
from cmaclip_tf.datasets.raw_examples import ordered_parallel_map
from cmaclip_tf.preprocessing.image_validator import ImageValidator
from cmaclip_tf.preprocessing.image_validator import decoder_messages_silenced


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
    """One split of `FileRecord`s as a record source of raw examples.

    The first use checks every record (in parallel threads: text, labels,
    and each image decoded once with the graph's own decoder); bad records
    are reported to `counter` and left out of the index, so `len()` is the
    number of good records. Reading then happens in the graph, in any
    order: the image files are read in parallel, never all held in memory.

    Args:
        records: list of `FileRecord`.
        split: the split's name, for the bad-record counts.
        tasks: `LabelVocabularies` (label ids come from these).
        counter: `BadRecordCounter`.
        validator: `ImageValidator`; one is made if `None`.
        num_workers: threads checking images.
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
        self._good = None  # Columns of the good records, once checked.
        # (task, class name) -> rows whose label is outside the vocabulary.
        self.unknown_labels = collections.Counter()

    def __len__(self):
        return len(self.good_records()["id"])

    def good_records(self):
        """Checks every record once; returns the good ones' columns."""
        if self._good is None:
            with decoder_messages_silenced():
                good = list(self._examples())
            self._good = examples_to_columns(good, list(self.tasks))
        return self._good

    def labels(self):
        """`{task: int array}`: the good records' class ids (-1: no label)."""
        return self.good_records()["labels"]

    def dataset(self, order=None, num_parallel_reads=tf.data.AUTOTUNE):
        """The good records as raw examples, in `order` (default: file order)."""
        def read(example):
            return {**example, "image": tf.io.read_file(example["image"])}

        return indexed_dataset(self.good_records(), order).map(
            read, num_parallel_calls=num_parallel_reads, deterministic=True
        )

    def examples(self):
        """Yields the good records with their image bytes, in file order."""
        good = self.good_records()
        for i, path in enumerate(good["image"]):
            with open(path, "rb") as f:
                image = f.read()
            yield {
                "image": image,
                "text": good["text"][i],
                "labels": {t: v[i] for t, v in good["labels"].items()},
                "id": good["id"][i],
            }

    def _examples(self):
        for result in ordered_parallel_map(
            self._check,
            self.records,
            num_workers=self.num_workers,
        ):
            if result[0] == "bad":
                _, reason, location, detail = result[:4]
                if reason == bad_records.UNKNOWN_LABEL:
                    self.unknown_labels[result[4]] += 1
                self.counter.report(self.split, reason, location, detail)
                continue
            yield result[1]

    def _check(self, record):
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
                    (task, name),
                )
        problem = self.validator.check_file(record.image_path)
        if problem is not None:
            reason, detail = problem
            separator = " " if reason == bad_records.MISSING_IMAGE else ": "
            return (
                "bad",
                reason,
                record.location,
                f"{record.image_path}{separator}{detail}",
            )
        return (
            "ok",
            {
                "image": record.image_path.encode("utf-8"),
                "text": record.text.encode("utf-8"),
                "labels": labels,
                "id": record.location.encode("utf-8"),
            },
        )
