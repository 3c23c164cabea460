"""`load_dataset`: one entry point for every dataset the trainer reads.

A dataset is a `DatasetBuilder` subclass in a file of its own and one line
of `DATASETS`. Built TFDS datasets are named `tfds:<builder>[/<config>]`
(`tfds:upmc_food101`, `tfds:fashion_gen/val20`).
"""

import os

from cmaclip_tf.datasets.bad_records import BadRecordCounter
from cmaclip_tf.datasets.caption_corpus_dataset import CaptionCorpusDataset
from cmaclip_tf.datasets.fashion_gen import FashionGenDataset
from cmaclip_tf.datasets.food101 import Food101Dataset
from cmaclip_tf.datasets.label_vocabulary import LabelVocabularies
from cmaclip_tf.datasets.manifest import ManifestDataset
from cmaclip_tf.datasets.split_spec import SplitSpec
from cmaclip_tf.datasets.synthetic_dataset import SyntheticDataset
from cmaclip_tf.datasets.tfds_source import TFDSDataset
from cmaclip_tf.limits.serving_limits import MAX_IMAGE_PIXELS

DATASETS = {
    builder.name: builder
    for builder in (SyntheticDataset, ManifestDataset, Food101Dataset,
                    FashionGenDataset, CaptionCorpusDataset)
}
TFDS_PREFIX = "tfds:"
TFDS_DATASETS = ("upmc_food101", "fashion_gen")
# What a dataset may read (`build` arguments); each reads its own.
SOURCE_OPTIONS = ("data_dir", "manifest", "val_manifest", "test_manifest",
                  "image_size", "synthetic_config", "cache", "num_workers")


def available_datasets():
    """Dataset names `load_dataset` accepts."""
    return list(DATASETS) + [f"{TFDS_PREFIX}{name}" for name in TFDS_DATASETS]


def is_dataset_name(name):
    """Whether `load_dataset` knows `name` (any `tfds:` name is tried)."""
    return name in DATASETS or name.startswith(TFDS_PREFIX)


def load_dataset(
    name,
    *,
    tasks=None,
    seed=0,
    num_examples=None,
    val_size=None,
    val_fraction=None,
    on_bad_record="skip",
    label_vocabularies=None,
    max_image_pixels=MAX_IMAGE_PIXELS,
    **options,
):
    """Loads a dataset's tasks and its train, validation and test splits.

    Args:
        name: one of `available_datasets()`, or `tfds:<builder>[/<config>]`.
        tasks: task names to read; default: the dataset's (all manifest
            columns; `subcategory` for Fashion-Gen; `label` for Food-101;
            `color`, `pattern`, `style` for `synthetic`). `()` reads no
            labels, for image-text pairs only (`manifest`, `caption_corpus`).
        seed, num_examples, val_size, val_fraction: the `SplitSpec`.
            Without `val_size` and `val_fraction`, a validation split carved
            out of train is 5,000 examples for `food101` and `fashion_gen`
            (as MMBT), or 10% of a train split too small for that (with a
            note in the dataset's `notes`), and 10% of a train manifest.
        on_bad_record: `"skip"` (count and skip) or `"error"` (raise at the
            first, naming the file and row).
        label_vocabularies: `LabelVocabularies`, or a run folder / JSON file
            holding them, to reuse a trained run's classes instead of
            building them from train.
        max_image_pixels: int. An image file over this many pixels (read
            from its header, before decoding; GIF frames counted) is a bad
            record, `image_too_large`. Defaults to `MAX_IMAGE_PIXELS`.
        **options: what the dataset reads: `data_dir` (the raw files'
            folder for `food101` and `fashion_gen`, the TFDS data folder for
            `tfds:`), `manifest`, `val_manifest`, `test_manifest`
            (`manifest`), `image_size`, `synthetic_config` and `cache`
            (`synthetic`), `num_workers` (threads checking image files).

    Returns:
        `MultiTaskDataset`.
    """
    unknown = set(options) - set(SOURCE_OPTIONS)
    if unknown:
        raise TypeError(
            f"load_dataset got unknown options {sorted(unknown)}; datasets read "
            f"{list(SOURCE_OPTIONS)}."
        )
    if name.startswith(TFDS_PREFIX):
        builder_class = TFDSDataset
        options["tfds_name"] = name[len(TFDS_PREFIX):]
    elif name in DATASETS:
        builder_class = DATASETS[name]
    else:
        raise ValueError(
            f"Unknown dataset {name!r}; expected one of {available_datasets()}."
        )
    if isinstance(label_vocabularies, (str, os.PathLike)):
        label_vocabularies = LabelVocabularies.load(label_vocabularies)
    spec = SplitSpec(seed, num_examples, val_size, val_fraction)
    builder = builder_class(
        spec, BadRecordCounter(on_bad_record), tasks, label_vocabularies,
        max_image_pixels,
    )
    return builder.build(**{k: v for k, v in options.items() if v is not None})
