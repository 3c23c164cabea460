"""Label noise: a share of labels flipped to another class, for training on
noisy labels (the paper's future work, section 5).

Two forms, for the two ways labels reach training:

- `flip_labels` on a numpy array of one task's labels (a manifest column):
  flips exactly `round(rate * labelled)` of them;
- `with_label_noise` on a raw split (`tf.data`): flips each labelled
  (example, task) with probability `rate`, decided by a keyed hash of the
  example's `"id"`, so the same labels are flipped in every epoch, every run
  and whatever the order, sharding or shuffling.

In both, a flipped label is drawn uniformly from the task's other classes, so
it always differs from the original, and missing labels (-1) stay missing.
Apply it to the train split only, so that validation and test stay clean.
"""

import zlib

import numpy as np
import tensorflow as tf

from cmaclip_tf.datasets.label_vocabulary import MISSING_LABEL

# Hash buckets: 2**53 keeps `bucket / _BUCKETS` exact in float64.
_BUCKETS = 2**53


def flip_labels(labels, num_classes, rate, seed):
    """Flips `round(rate * labelled)` labels to another class, uniformly.

    Args:
        labels: int array (any shape), class ids in `[0, num_classes)` or -1
            (missing).
        num_classes: int, the task's number of classes.
        rate: float in `[0, 1]`, the share of labelled entries to flip.
        seed: int; the same seed flips the same entries to the same classes.

    Returns:
        A new array like `labels`; `result != labels` marks the flips.

    Example:

    ```python
    flip_labels(np.array([0, 1, 2, -1]), 3, 0.5, seed=0)
    # [0, 2, 0, -1]: 2 of the 3 labelled entries moved, the -1 kept.
    ```
    """
    labels = np.asarray(labels)
    _check(rate, num_classes)
    out_of_range = (labels < MISSING_LABEL) | (labels >= num_classes)
    if out_of_range.any():
        raise ValueError(
            f"Labels must be class ids in [0, {num_classes}) or "
            f"{MISSING_LABEL} (missing); got values in "
            f"[{labels.min()}, {labels.max()}]."
        )
    flat = labels.reshape(-1).copy()
    labelled = np.flatnonzero(flat != MISSING_LABEL)
    rng = np.random.default_rng(seed)
    count = int(round(rate * labelled.size))
    chosen = rng.choice(labelled, count, replace=False)
    if chosen.size:
        # A shift by 1..K-1 reaches every other class once: uniform, never
        # the original.
        shifts = rng.integers(1, num_classes, chosen.size)
        flat[chosen] = (flat[chosen] + shifts) % num_classes
    return flat.reshape(labels.shape)


def with_label_noise(raw_split, num_classes, rate, seed):
    """A raw split whose labels are flipped with probability `rate`, per task.

    Args:
        raw_split: `tf.data.Dataset` of raw examples (`"labels"`, `"id"`).
        num_classes: `{task: number of classes}` (`LabelVocabularies`
            `.num_classes`), for every task in the examples' labels.
        rate: float in `[0, 1]`.
        seed: non-negative int; the flips depend on `(seed, task, id)` only.

    Returns:
        The mapped `tf.data.Dataset`, same element spec.

    Example:

    ```python
    dataset = load_dataset("synthetic")
    train = with_label_noise(
        dataset.splits["train"], dataset.tasks.num_classes, 0.2, seed=0
    )
    ```
    """
    tasks = list(raw_split.element_spec["labels"])
    missing = [task for task in tasks if task not in num_classes]
    if missing:
        raise ValueError(
            f"num_classes has no entry for task(s) {missing}; pass "
            "dataset.tasks.num_classes."
        )
    for task in tasks:
        _check(rate, num_classes[task])
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")

    def flip(example):
        labels = dict(example["labels"])
        for task in tasks:
            labels[task] = _flip_by_id(
                labels[task], example["id"], num_classes[task], rate,
                [seed, zlib.crc32(task.encode())],
            )
        return {**example, "labels": labels}

    return raw_split.map(flip, num_parallel_calls=tf.data.AUTOTUNE)


def _flip_by_id(label, example_id, num_classes, rate, key):
    """`label` flipped iff hash(id) < rate; the new class from a second hash."""
    draw = tf.strings.to_hash_bucket_strong(example_id, _BUCKETS, key)
    shift = tf.strings.to_hash_bucket_strong(
        example_id, max(num_classes - 1, 1), [key[0], key[1] + 2**32]
    )
    flipped = (label + 1 + tf.cast(shift, label.dtype)) % num_classes
    chosen = (label != MISSING_LABEL) & (
        tf.cast(draw, tf.float64) < rate * _BUCKETS
    )
    return tf.where(chosen, flipped, label)


def _check(rate, num_classes):
    if not 0 <= rate <= 1:
        raise ValueError(f"The label noise rate is {rate}; it is in [0, 1].")
    if rate > 0 and num_classes < 2:
        raise ValueError(
            f"Cannot flip labels of a task with {num_classes} class(es)."
        )
