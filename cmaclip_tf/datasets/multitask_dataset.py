"""`MultiTaskDataset`: what `load_dataset` returns."""

import numpy as np

from cmaclip_tf.preprocessing.input_pipeline import epoch_permutation

SPLITS = ("train", "validation", "test")


class MultiTaskDataset:
    """A dataset's tasks, its splits as record sources, and bad-record counts.

    Each split is a record source: an index of the split's good records
    (bad ones are found, counted and left out before anything is batched,
    so `num_examples` is exact) that reads them as raw examples (see
    `raw_examples`) in any order. A source has `__len__` and
    `dataset(order=None)` (`order`: positions into the good records; `None`
    is file order). A source without random access (a built TFDS dataset)
    has `epoch_dataset(seed, epoch, skip)` instead of honouring `order`.

    Attributes:
        name: the dataset's name (`"synthetic"`, `"manifest"`, ...).
        tasks: `LabelVocabularies`, task name to class names, from train.
        bad_records: `BadRecordCounter`; `bad_records.counts()` is
            `{split: {reason: n}}` for the metrics.
        description: one line on where the data came from.
        notes: lines the user should read once (e.g. a validation split
            made smaller than the default to fit a small file).
    """

    def __init__(
        self, name, tasks, sources, bad_records, description="", notes=()
    ):
        self.name = name
        self.tasks = tasks
        self.sources = dict(sources)
        self.bad_records = bad_records
        self.description = description
        self.notes = list(notes)
        for split in SPLITS:
            if split not in self.sources:
                raise ValueError(
                    f"Dataset {name!r} is missing the {split!r} split."
                )

    def __repr__(self):
        sizes = ", ".join(f"{s}={len(self.sources[s])}" for s in SPLITS)
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
    def num_examples(self):
        """`{split: number of good records}` (checks a split on first use)."""
        return {split: len(source) for split, source in self.sources.items()}

    @property
    def image_spec(self):
        """The raw `"image"` spec: encoded string or uint8 pixels."""
        return self.split("train").element_spec["image"]

    @property
    def splits(self):
        """`{split: raw tf.data.Dataset}` in file order."""
        return {name: self.split(name) for name in self.sources}

    def split(self, name):
        """The raw `tf.data.Dataset` of split `name`, in file order."""
        return self._source(name).dataset()

    def epoch_split(self, name, seed, epoch, skip=0):
        """Split `name` in epoch `epoch`'s order, from its `skip`-th example.

        The order is `epoch_permutation(len(split), seed, epoch)`: the same
        on every run, so a resumed epoch continues exactly where it stopped.
        Records are read in that order, so memory does not depend on the
        split's size or sorting.
        """
        source = self._source(name)
        if hasattr(source, "epoch_dataset"):
            return source.epoch_dataset(seed, epoch, skip)
        order = epoch_permutation(len(source), seed, epoch)[int(skip):]
        return source.dataset(order)

    def class_counts(self, split):
        """`{task: [good records of each class id]}` of `split`, or `None`
        where its source cannot count without reading every image."""
        labels = getattr(self._source(split), "labels", lambda: None)()
        if labels is None:
            return None
        counts = {}
        for task, vocabulary in self.tasks.items():
            ids = np.asarray(labels[task])
            counts[task] = np.bincount(ids[ids >= 0],
                                       minlength=len(vocabulary)).tolist()
        return counts

    def unknown_labels(self, split):
        """`{(task, class name): rows}` of `split` labelled with a class
        training never saw (bad records, left out)."""
        source = self._source(split)
        len(source)  # Checks the split's records, once.
        return dict(getattr(source, "unknown_labels", {}))

    def _source(self, name):
        if name not in self.sources:
            raise ValueError(
                f"Unknown split {name!r}; expected one of {SPLITS}."
            )
        return self.sources[name]

    def save(self, directory):
        """Saves the label vocabularies (JSON) with a run; returns the path."""
        return self.tasks.save(directory)
