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

from cmaclip_tf.data.input_pipeline import epoch_seed
from cmaclip_tf.data.label_vocabulary import LabelVocabularies
from cmaclip_tf.data.multitask_dataset import SPLITS

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


def load_tfds_sources(name, data_dir, tasks, counter, caps=None):
    """Returns `(tasks, {split: TFDSSource})` of a built TFDS dataset.

    Args:
        name: builder name, optionally with a config: `"upmc_food101"`,
            `"fashion_gen/val20"`.
        data_dir: the TFDS data folder it was built into (`None`: TFDS's
            default, `~/tensorflow_datasets`).
        tasks: task names, or `None` for the builder's default tasks.
        counter: `BadRecordCounter`; receives the records the build skipped.
        caps: `{split: first N examples or None}`.
    """
    import tensorflow_datasets as tfds

    from cmaclip_tf.data import tfds as builders

    builder_name = name.split("/")[0]
    if builder_name not in builders.BUILDERS:
        raise ValueError(
            f"Unknown TFDS dataset {name!r}; this project builds "
            f"{sorted(builders.BUILDERS)}."
        )
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"TFDS dataset {name} is not built in {builder.data_dir}. Build it "
            f"with `python -m cmaclip_tf.data.tfds {name} --manual_dir DIR "
            "--data_dir TFDS_DIR` or read the raw files "
            f"(--dataset {builder_name.replace('upmc_', '')})."
        )
    features = builder.info.features
    tasks = list(tasks or builders.BUILDERS[builder_name].DEFAULT_TASKS)
    unknown = [t for t in tasks if t not in features]
    if unknown:
        raise ValueError(f"{name} has no task {unknown}.")
    vocabularies = LabelVocabularies({t: features[t].names for t in tasks})

    bad = (
        builder.info.metadata.get("bad_records", {})
        if builder.info.metadata
        else {}
    )
    for split, records in bad.items():
        for location, reason in records:
            counter.report(
                split, reason, location, "skipped when the dataset was built"
            )
    caps = caps or {}
    sources = {
        split: TFDSSource(builder, split, tasks, caps.get(split))
        for split in SPLITS
    }
    return vocabularies, sources
