"""Reads a built TFDS dataset (`upmc_food101`, `fashion_gen`) as raw splits.

Images stay encoded (`SkipDecoding`), so they go through the same decoder as
every other source. Class ids are the builder's `ClassLabel` ids, whose
names are the sorted training classes, as the raw-file readers' vocabularies.
Records the builder skipped are reported to the bad-record counter.
"""

import tensorflow as tf

from cmaclip_tf.data.label_vocabulary import LabelVocabularies
from cmaclip_tf.data.multitask_dataset import SPLITS


def load_tfds_splits(name, data_dir, tasks, counter):
    """Returns `(tasks, splits, num_examples)` of a built TFDS dataset.

    Args:
        name: builder name, optionally with a config: `"upmc_food101"`,
            `"fashion_gen/val20"`.
        data_dir: the TFDS data folder it was built into (`None`: TFDS's
            default, `~/tensorflow_datasets`).
        tasks: task names, or `None` for the builder's default tasks.
        counter: `BadRecordCounter`; receives the records the build skipped.
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

    def to_raw(example):
        return {
            "image": example["image"],
            "text": example["text"],
            "labels": {t: tf.cast(example[t], tf.int32) for t in tasks},
            "id": example["id"],
        }

    splits, num_examples = {}, {}
    for split in SPLITS:
        dataset = builder.as_dataset(
            split=split,
            decoders={"image": tfds.decode.SkipDecoding()},
            shuffle_files=False,
        )
        splits[split] = dataset.map(to_raw)
        num_examples[split] = builder.info.splits[split].num_examples
    return vocabularies, splits, num_examples
