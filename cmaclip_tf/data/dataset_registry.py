"""`load_dataset`: one entry point for every dataset the trainer reads.

Names: `synthetic` (generated products, the default), `manifest` (CSV or
JSON Lines), `food101` (UPMC Food-101 files), `fashion_gen` (HDF5 files),
and `tfds:<builder>[/<config>]` for a built TFDS dataset
(`tfds:upmc_food101`, `tfds:fashion_gen/val20`).
"""

import math
import os

import numpy as np

from cmaclip_tf.data import fashion_gen
from cmaclip_tf.data import food101
from cmaclip_tf.data.bad_records import BadRecordCounter
from cmaclip_tf.data.file_records import FileRecordSource
from cmaclip_tf.data.image_validator import ImageValidator
from cmaclip_tf.data.label_vocabulary import LabelVocabularies
from cmaclip_tf.data.label_vocabulary import LabelVocabulary
from cmaclip_tf.data.manifest import read_manifest
from cmaclip_tf.data.multitask_dataset import SPLITS
from cmaclip_tf.data.multitask_dataset import MultiTaskDataset
from cmaclip_tf.data.stratified_split import default_validation_count
from cmaclip_tf.data.stratified_split import stratified_split
from cmaclip_tf.data.stratified_split import validation_count
from cmaclip_tf.data.synthetic_products import DEFAULT_NUM_EXAMPLES
from cmaclip_tf.data.synthetic_products import SyntheticProducts
from cmaclip_tf.data.synthetic_products import SyntheticProductsConfig
from cmaclip_tf.data.synthetic_source import SyntheticSource

DATASETS = ("synthetic", "manifest", "food101", "fashion_gen")
TFDS_PREFIX = "tfds:"
# A manifest without a validation manifest keeps this share of train for it.
DEFAULT_MANIFEST_VAL_FRACTION = 0.1


def available_datasets():
    """Dataset names `load_dataset` accepts (plus `tfds:<builder>`)."""
    return list(DATASETS) + [
        f"{TFDS_PREFIX}upmc_food101",
        f"{TFDS_PREFIX}fashion_gen",
    ]


def load_dataset(
    name,
    *,
    data_dir=None,
    manifest=None,
    val_manifest=None,
    test_manifest=None,
    tasks=None,
    seed=0,
    num_examples=None,
    val_size=None,
    val_fraction=None,
    on_bad_record="skip",
    label_vocabularies=None,
    image_size=64,
    synthetic_config=None,
    cache=None,
    num_workers=4,
):
    """Loads a dataset's tasks and raw train, validation and test splits.

    Args:
        name: one of `available_datasets()`.
        data_dir: the raw files' folder (`food101`, `fashion_gen`) or the TFDS
            data folder (`tfds:...`).
        manifest, val_manifest, test_manifest: manifest files (`manifest`).
            Without `val_manifest`, validation is a stratified `val_fraction`
            (default 0.1) of the train manifest; without `test_manifest`, the
            test split is empty.
        tasks: task names to read; default: the dataset's (all manifest
            columns; `subcategory` for Fashion-Gen; `label` for Food-101;
            `color`, `pattern`, `style` for `synthetic`).
        seed: seeds the generated data and the validation split.
        num_examples: int or `{split: int}`. For `synthetic`, how many to
            generate (default 2000/300/300); for files, a cap on each split
            (the first N), for smoke runs. An int `n` means `n` for train and
            `ceil(0.15 n)` for validation and test.
        val_size: validation examples taken from train (`food101`,
            `fashion_gen`: 5,000 as MMBT, or 10% of a train split too small
            for that, with a note in the dataset's `notes`).
        val_fraction: share of train for validation instead (the paper: 0.2).
        on_bad_record: `"skip"` (count and skip) or `"error"` (raise at the
            first, naming the file and row).
        label_vocabularies: `LabelVocabularies`, or a run folder / JSON file
            holding them, to reuse a trained run's classes instead of
            building them from train.
        image_size: image size of the generated data (`synthetic`).
        synthetic_config: `SyntheticProductsConfig` overriding the defaults
            (its `seed` and `image_size` are replaced by the arguments).
        cache: `synthetic` only: draw every example once and keep it in
            memory (default on; drawing costs ~1 ms an example).
        num_workers: threads reading and checking image files.

    Returns:
        `MultiTaskDataset`.
    """
    counter = BadRecordCounter(on_bad_record)
    if isinstance(label_vocabularies, (str, os.PathLike)):
        label_vocabularies = LabelVocabularies.load(label_vocabularies)
    if name == "synthetic":
        dataset = _load_synthetic(
            counter,
            tasks,
            seed,
            num_examples,
            image_size,
            synthetic_config,
            label_vocabularies,
            True if cache is None else cache,
        )
    elif name == "manifest":
        dataset = _load_manifest(
            counter,
            manifest,
            val_manifest,
            test_manifest,
            tasks,
            seed,
            num_examples,
            val_size,
            val_fraction,
            label_vocabularies,
            num_workers,
        )
    elif name == "food101":
        dataset = _load_food101(
            counter,
            _require_data_dir(name, data_dir),
            tasks,
            seed,
            num_examples,
            val_size,
            val_fraction,
            label_vocabularies,
            num_workers,
        )
    elif name == "fashion_gen":
        dataset = _load_fashion_gen(
            counter,
            _require_data_dir(name, data_dir),
            tasks,
            seed,
            num_examples,
            val_size,
            val_fraction,
            label_vocabularies,
        )
    elif name.startswith(TFDS_PREFIX):
        from cmaclip_tf.data.tfds_dataset import load_tfds_sources

        vocabularies, sources = load_tfds_sources(
            name[len(TFDS_PREFIX) :], data_dir, tasks, counter,
            caps=_split_sizes(num_examples, None),
        )
        if label_vocabularies is not None:
            _check_same_vocabularies(name, vocabularies, label_vocabularies)
        dataset = MultiTaskDataset(name, vocabularies, sources, counter)
    else:
        raise ValueError(
            f"Unknown dataset {name!r}; expected one of {available_datasets()}."
        )
    return dataset


def _require_data_dir(name, data_dir):
    if not data_dir:
        raise ValueError(
            f"Dataset {name!r} reads files: pass data_dir (--data-dir)."
        )
    return data_dir


def _validation_size(num_examples, val_size, val_fraction, default_size):
    """`(count, notes)` of a validation split carved out of train."""
    if val_size is None and val_fraction is None:
        count, note = default_validation_count(num_examples, default_size)
        return count, [note] if note else []
    return validation_count(num_examples, val_size, val_fraction), []


def _split_sizes(num_examples, defaults):
    """`{split: size or None}` from an int, a dict or `None`."""
    if num_examples is None:
        return dict(defaults) if defaults else {s: None for s in SPLITS}
    if isinstance(num_examples, int):
        small = int(math.ceil(0.15 * num_examples))
        return {"train": num_examples, "validation": small, "test": small}
    sizes = dict(defaults) if defaults else {s: None for s in SPLITS}
    unknown = set(num_examples) - set(SPLITS)
    if unknown:
        raise ValueError(f"num_examples has unknown splits {sorted(unknown)}.")
    sizes.update(num_examples)
    return sizes


def _check_same_vocabularies(name, built, given):
    for task, vocabulary in built.items():
        if task in given and given[task] != vocabulary:
            raise ValueError(
                f"The {task} classes of {name} differ from the given label "
                "vocabularies; was the run trained on this dataset?"
            )


def _load_synthetic(
    counter, tasks, seed, num_examples, image_size, config, label_vocabularies,
    cache,
):
    import dataclasses

    config = dataclasses.replace(
        config or SyntheticProductsConfig(), seed=seed, image_size=image_size
    )
    products = SyntheticProducts(config)
    tasks = list(tasks or products.tasks)
    unknown = [t for t in tasks if t not in products.tasks]
    if unknown:
        raise ValueError(
            f"The synthetic dataset has no task {unknown}; it has "
            f"{list(products.tasks)}."
        )
    vocabularies = LabelVocabularies({t: products.tasks[t] for t in tasks})
    if label_vocabularies is not None:
        _check_same_vocabularies("synthetic", vocabularies, label_vocabularies)
    sizes = _split_sizes(num_examples, DEFAULT_NUM_EXAMPLES)
    sources = {
        s: SyntheticSource(products, s, sizes[s], tasks, cache) for s in SPLITS
    }
    return MultiTaskDataset(
        "synthetic",
        vocabularies,
        sources,
        counter,
        description="Generated product attributes (color, pattern, style).",
    )


def _vocabularies_from(records, tasks, label_vocabularies):
    if label_vocabularies is not None:
        missing = [t for t in tasks if t not in label_vocabularies]
        if missing:
            raise ValueError(
                f"The given label vocabularies lack task(s) {missing}."
            )
        return LabelVocabularies({t: label_vocabularies[t] for t in tasks})
    usable = [r for r in records if r.problem is None]
    return LabelVocabularies(
        {
            t: LabelVocabulary.from_labels(r.labels.get(t) for r in usable)
            for t in tasks
        }
    )


def _stratify_records(records, tasks, count, seed):
    strata = [
        r.labels.get(tasks[0], "") if r.problem is None else "" for r in records
    ]
    train_ids, val_ids = stratified_split(strata, count, seed)
    return [records[i] for i in train_ids], [records[i] for i in val_ids]


def _file_dataset(
    name, counter, tasks, records, sizes, num_workers, description="",
    notes=(),
):
    validator = ImageValidator()
    sources = {}
    for split in SPLITS:
        split_records = records[split]
        if sizes.get(split) is not None:
            split_records = split_records[: sizes[split]]
        sources[split] = FileRecordSource(
            split_records, split, tasks, counter, validator, num_workers
        )
    return MultiTaskDataset(
        name, tasks, sources, counter, description, notes
    )


def _load_manifest(
    counter,
    manifest,
    val_manifest,
    test_manifest,
    tasks,
    seed,
    num_examples,
    val_size,
    val_fraction,
    label_vocabularies,
    num_workers,
):
    if not manifest:
        raise ValueError(
            "Dataset 'manifest' needs a train manifest (--manifest)."
        )
    train, tasks = read_manifest(manifest, tasks)
    if val_manifest:
        validation, _ = read_manifest(val_manifest, tasks)
    else:
        if val_size is None and val_fraction is None:
            val_fraction = DEFAULT_MANIFEST_VAL_FRACTION
        count = validation_count(len(train), val_size, val_fraction)
        train, validation = _stratify_records(train, tasks, count, seed)
    test = read_manifest(test_manifest, tasks)[0] if test_manifest else []
    vocabularies = _vocabularies_from(train, tasks, label_vocabularies)
    return _file_dataset(
        "manifest",
        counter,
        vocabularies,
        {"train": train, "validation": validation, "test": test},
        _split_sizes(num_examples, None),
        num_workers,
        description=f"Manifest {manifest}",
    )


def _load_food101(
    counter,
    data_dir,
    tasks,
    seed,
    num_examples,
    val_size,
    val_fraction,
    label_vocabularies,
    num_workers,
):
    if tasks is not None and list(tasks) != [food101.TASK]:
        raise ValueError(
            f"Food-101 has one task, {food101.TASK!r}; got {tasks}."
        )
    food101.check_layout(data_dir)
    train = food101.read_food101_split(data_dir, "train")
    test = food101.read_food101_split(data_dir, "test")
    count, notes = _validation_size(
        len(train), val_size, val_fraction, food101.DEFAULT_VAL_SIZE
    )
    train, validation = _stratify_records(train, [food101.TASK], count, seed)
    vocabularies = _vocabularies_from(train, [food101.TASK], label_vocabularies)
    return _file_dataset(
        "food101",
        counter,
        vocabularies,
        {"train": train, "validation": validation, "test": test},
        _split_sizes(num_examples, None),
        num_workers,
        description=f"UPMC Food-101 in {data_dir}",
        notes=notes,
    )


def _load_fashion_gen(
    counter,
    data_dir,
    tasks,
    seed,
    num_examples,
    val_size,
    val_fraction,
    label_vocabularies,
):
    tasks = fashion_gen.check_tasks(tasks)
    train_path, test_path = fashion_gen.fashion_gen_files(data_dir)
    labels = fashion_gen.read_labels(train_path, tasks)
    count, notes = _validation_size(
        len(labels[tasks[0]]), val_size, val_fraction,
        fashion_gen.DEFAULT_VAL_SIZE,
    )
    train_ids, val_ids = stratified_split(labels[tasks[0]], count, seed)
    if label_vocabularies is not None:
        vocabularies = LabelVocabularies(
            {t: label_vocabularies[t] for t in tasks}
        )
    else:
        vocabularies = LabelVocabularies(
            {
                t: LabelVocabulary.from_labels(
                    np.asarray(labels[t], object)[train_ids]
                )
                for t in tasks
            }
        )
    indices = {
        "train": train_ids,
        "validation": val_ids,
        "test": np.arange(fashion_gen.num_rows(test_path)),
    }
    paths = {"train": train_path, "validation": train_path, "test": test_path}
    sizes = _split_sizes(num_examples, None)
    sources = {}
    for split in SPLITS:
        split_indices = indices[split]
        if sizes.get(split) is not None:
            split_indices = split_indices[: sizes[split]]
        sources[split] = fashion_gen.FashionGenSource(
            paths[split], split_indices, split, vocabularies, counter
        )
    return MultiTaskDataset(
        "fashion_gen",
        vocabularies,
        sources,
        counter,
        description=f"Fashion-Gen HDF5 files in {data_dir}",
        notes=notes,
    )
