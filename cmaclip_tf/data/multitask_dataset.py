"""`MultiTaskDataset`: what `load_dataset` returns."""

import tensorflow as tf

SPLITS = ("train", "validation", "test")


class MultiTaskDataset:
    """A dataset's tasks, raw splits and bad-record counts.

    Attributes:
        name: the dataset's name (`"synthetic"`, `"manifest"`, ...).
        tasks: `LabelVocabularies`, task name to class names, from train.
        splits: `{"train", "validation", "test"}` to raw `tf.data.Dataset`s
            (see `raw_examples`); an absent split is an empty dataset. Read
            `split(name)` once per epoch: file datasets hand out a faster
            dataset once a first pass has checked every record.
        num_examples: split to the number of records it reads (bad records
            are skipped from these), or `None` where unknown.
        bad_records: `BadRecordCounter`; `bad_records.counts()` is
            `{split: {reason: n}}` for the metrics.
    """

    def __init__(
        self, name, tasks, splits, num_examples, bad_records, description=""
    ):
        self.name = name
        self.tasks = tasks
        # A split is a dataset or a callable that builds one when asked.
        self._splits = dict(splits)
        self.num_examples = dict(num_examples)
        self.bad_records = bad_records
        self.description = description
        for split in SPLITS:
            if split not in self._splits:
                raise ValueError(
                    f"Dataset {name!r} is missing the {split!r} split."
                )

    def __repr__(self):
        sizes = ", ".join(f"{s}={self.num_examples.get(s)}" for s in SPLITS)
        return (
            f"MultiTaskDataset({self.name!r}, tasks={self.tasks.num_classes}, "
            f"{sizes})"
        )

    @property
    def task_names(self):
        return list(self.tasks)

    @property
    def num_classes(self):
        return self.tasks.num_classes

    @property
    def image_spec(self):
        """The raw `"image"` spec: encoded string or uint8 pixels."""
        return self.split("train").element_spec["image"]

    @property
    def splits(self):
        """`{split: raw tf.data.Dataset}`, as `split(name)` builds them now."""
        return {name: self.split(name) for name in self._splits}

    def split(self, name):
        """The raw `tf.data.Dataset` of split `name`."""
        if name not in self._splits:
            raise ValueError(
                f"Unknown split {name!r}; expected one of {SPLITS}."
            )
        split = self._splits[name]
        return split if isinstance(split, tf.data.Dataset) else split()

    def cache(self):
        """Keeps every split in memory after its first full pass."""
        self._splits = {name: self.split(name).cache() for name in self._splits}
        return self

    def save(self, directory):
        """Saves the label vocabularies (JSON) with a run; returns the path."""
        return self.tasks.save(directory)
