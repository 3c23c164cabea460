"""`DatasetBuilder`: the base of every dataset's reader (one file each)."""

from cmaclip_tf.datasets.file_records import FileRecordSource
from cmaclip_tf.datasets.label_vocabulary import LabelVocabularies
from cmaclip_tf.datasets.label_vocabulary import LabelVocabulary
from cmaclip_tf.datasets.multitask_dataset import SPLITS
from cmaclip_tf.datasets.multitask_dataset import MultiTaskDataset
from cmaclip_tf.limits.serving_limits import MAX_IMAGE_PIXELS
from cmaclip_tf.preprocessing.image_validator import ImageValidator


class DatasetBuilder:
    """Reads one dataset into a `MultiTaskDataset`.

    A dataset is a subclass in a file of its own, with a `name` and a
    `build(**options)` (the files it reads: `data_dir`, `manifest`, ...),
    listed once in `registry.DATASETS`.

    Args:
        spec: `SplitSpec`, the split flags.
        counter: `BadRecordCounter`.
        tasks: task names to read, or `None` for the dataset's own.
        label_vocabularies: `LabelVocabularies` of a trained run to reuse,
            or `None` to build them from train.
        max_image_pixels: int. Image files over this many pixels (read from
            the header) are bad records (`image_too_large`); 0: no limit.
    """

    name = None

    def __init__(self, spec, counter, tasks=None, label_vocabularies=None,
                 max_image_pixels=MAX_IMAGE_PIXELS):
        self.spec = spec
        self.max_image_pixels = max_image_pixels
        self.counter = counter
        self.tasks = list(tasks) if tasks is not None else None
        self.label_vocabularies = label_vocabularies

    def build(self, **options):
        raise NotImplementedError

    # === Shared by the readers ===

    def require(self, option, value, flag):
        """`value`, or a clear error naming the flag that sets it."""
        if not value:
            raise ValueError(
                f"Dataset {self.name!r} needs {option}: pass {flag}."
            )
        return value

    def vocabularies(self, tasks, labels_of):
        """The given vocabularies of `tasks`, or ones built from train.

        Args:
            tasks: task names.
            labels_of: task -> iterable of train's label strings.
        """
        given = self.label_vocabularies
        if given is not None:
            missing = [t for t in tasks if t not in given]
            if missing:
                raise ValueError(
                    f"The given label vocabularies lack task(s) {missing}."
                )
            return LabelVocabularies({t: given[t] for t in tasks})
        built = {t: LabelVocabulary.from_labels(labels_of(t)) for t in tasks}
        unlabelled = [t for t, vocabulary in built.items() if not len(vocabulary)]
        if unlabelled:
            raise ValueError(
                f"No training record of {self.name} has a label for task(s) "
                f"{unlabelled}; leave them out of --tasks."
            )
        return LabelVocabularies(built)

    def check_same_vocabularies(self, built):
        """Raises if the given vocabularies differ from the dataset's own."""
        given = self.label_vocabularies
        for task, vocabulary in built.items():
            if given is not None and task in given and given[task] != vocabulary:
                raise ValueError(
                    f"The {task} classes of {self.name} differ from the given "
                    "label vocabularies; was the run trained on this dataset?"
                )

    def file_dataset(self, records, tasks, description, notes=(), num_workers=4):
        """A `MultiTaskDataset` of `FileRecord`s per split (images as files).

        Args:
            records: `{split: [FileRecord]}`, capped by the spec's sizes.
            tasks: task names; vocabularies come from train's good rows.
        """
        usable = [r for r in records["train"] if r.problem is None]
        vocabularies = self.vocabularies(
            tasks, lambda t: (r.labels.get(t) for r in usable)
        )
        sizes = self.spec.sizes()
        validator = ImageValidator(self.max_image_pixels)
        sources = {}
        for split in SPLITS:
            split_records = records[split][: sizes[split]]
            sources[split] = FileRecordSource(
                split_records, split, vocabularies, self.counter, validator,
                num_workers,
            )
        return MultiTaskDataset(
            self.name, vocabularies, sources, self.counter, description, notes
        )

    def carve_file_validation(self, train, tasks, **defaults):
        """Train's `FileRecord`s split into `(train, validation, notes)`,
        stratified by the first task (rows bad at parsing, and every row
        when there are no tasks, in one stratum)."""
        strata = [
            r.labels.get(tasks[0], "") if r.problem is None and tasks else ""
            for r in train
        ]
        train_ids, val_ids, notes = self.spec.carve_validation(strata, **defaults)
        return [train[i] for i in train_ids], [train[i] for i in val_ids], notes
