"""Reads a built TFDS dataset (`upmc_food101`, `fashion_gen`) as raw splits.

Images stay encoded (`SkipDecoding`), so they go through the same decoder as
every other source. Class ids are the builder's `ClassLabel` ids, whose
names are the sorted training classes, as the raw-file readers' vocabularies.
Records the builder skipped are reported to the bad-record counter.

A built TFDS dataset has no random access (TFRecord shards), but TFDS wrote
its records in an order shuffled by key hash, not in class order; a training
epoch reads the shards in a seeded order and shuffles through a buffer of
`SHUFFLE_BUFFER` encoded examples on top.
"""

import tensorflow as tf

from cmaclip_tf.datasets.dataset_builder import DatasetBuilder
from cmaclip_tf.datasets.label_vocabulary import LabelVocabularies
from cmaclip_tf.datasets.multitask_dataset import SPLITS
from cmaclip_tf.datasets.multitask_dataset import MultiTaskDataset
from cmaclip_tf.preprocessing.input_pipeline import epoch_seed

SHUFFLE_BUFFER = 1_000


class TFDSSource:
    """One split of a built TFDS dataset as a record source.

    Args:
        builder: a prepared `tfds.core.DatasetBuilder`.
        split: the split's name.
        tasks: task names (the builder's `ClassLabel` features).
        cap: read only the first `cap` examples (smoke runs), or `None`.
    """

    def __init__(self, builder, split, tasks, cap=None):
        self.builder = builder
        self.split = split
        self.tasks = list(tasks)
        self.cap = cap

    def __len__(self):
        count = self.builder.info.splits[self.split].num_examples
        return count if self.cap is None else min(count, self.cap)

    def dataset(self, order=None):
        """The split in its stored order (`order` must be `None`)."""
        if order is not None:
            raise ValueError(
                "A built TFDS dataset has no random access; use epoch_dataset."
            )
        return self._read(shuffle_files=False)

    def epoch_dataset(self, seed, epoch, skip=0):
        """Epoch `epoch`'s order: seeded shard order, then a seeded buffer."""
        import tensorflow_datasets as tfds

        shuffle_seed = epoch_seed(seed, epoch)
        if self.cap is not None:
            dataset = self._read(shuffle_files=False)
        else:
            dataset = self._read(
                shuffle_files=True,
                read_config=tfds.ReadConfig(shuffle_seed=shuffle_seed),
            )
        dataset = dataset.shuffle(
            SHUFFLE_BUFFER, seed=shuffle_seed, reshuffle_each_iteration=False
        )
        return dataset.skip(int(skip))

    def _read(self, shuffle_files, read_config=None):
        import tensorflow_datasets as tfds

        tasks = self.tasks

        def to_raw(example):
            return {
                "image": example["image"],
                "text": example["text"],
                "labels": {t: tf.cast(example[t], tf.int32) for t in tasks},
                "id": example["id"],
            }

        dataset = self.builder.as_dataset(
            split=self.split,
            decoders={"image": tfds.decode.SkipDecoding()},
            shuffle_files=shuffle_files,
            read_config=read_config,
        )
        if self.cap is not None:
            dataset = dataset.take(self.cap)
        return dataset.map(to_raw)


class TFDSDataset(DatasetBuilder):
    """A built TFDS dataset: `build(tfds_name, data_dir=None)`.

    `tfds_name` is a builder name, optionally with a config:
    `"upmc_food101"`, `"fashion_gen/val20"`; `data_dir` the TFDS data folder
    it was built into (`None`: TFDS's default, `~/tensorflow_datasets`).
    Records the build skipped are reported to the bad-record counter.
    """

    name = "tfds"

    def build(self, tfds_name=None, data_dir=None, **_):
        import tensorflow_datasets as tfds

        from cmaclip_tf.datasets import tfds as builders

        builder_name = tfds_name.split("/")[0]
        if builder_name not in builders.BUILDERS:
            raise ValueError(
                f"Unknown TFDS dataset {tfds_name!r}; this project builds "
                f"{sorted(builders.BUILDERS)}."
            )
        builder = tfds.builder(tfds_name, data_dir=data_dir)
        if not builder.is_prepared():
            raise FileNotFoundError(
                f"TFDS dataset {tfds_name} is not built in {builder.data_dir}. "
                f"Build it with `python -m cmaclip_tf.datasets.tfds {tfds_name} "
                "--manual_dir DIR --data_dir TFDS_DIR` or read the raw files "
                f"(--dataset {builder_name.replace('upmc_', '')})."
            )
        features = builder.info.features
        tasks = list(self.tasks or builders.BUILDERS[builder_name].DEFAULT_TASKS)
        unknown = [t for t in tasks if t not in features]
        if unknown:
            raise ValueError(f"{tfds_name} has no task {unknown}.")
        vocabularies = LabelVocabularies({t: features[t].names for t in tasks})
        self.check_same_vocabularies(vocabularies)
        skipped = (builder.info.metadata or {}).get("bad_records", {})
        for split, records in skipped.items():
            for location, reason in records:
                self.counter.report(
                    split, reason, location, "skipped when the dataset was built"
                )
        caps = self.spec.sizes()
        sources = {
            split: TFDSSource(builder, split, tasks, caps[split])
            for split in SPLITS
        }
        return MultiTaskDataset(
            f"tfds:{tfds_name}", vocabularies, sources, self.counter,
            description=f"TFDS {tfds_name} in {builder.data_dir}",
        )
