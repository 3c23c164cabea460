"""A seeded, stratified validation split taken from a training split."""

import collections

import numpy as np


def validation_count(num_examples, val_size=None, val_fraction=None):
    """How many examples the validation split gets.

    `val_fraction` (e.g. the paper's 0.2) wins over `val_size` (e.g. MMBT's
    5,000 for Food-101). Raises a clear error when the split would leave too
    little to train on.
    """
    if val_fraction is not None:
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(
                f"val_fraction must be in (0, 1); got {val_fraction}"
            )
        count = int(round(num_examples * val_fraction))
    else:
        count = int(val_size)
    if count < 0 or (count > 0 and count > num_examples // 2):
        raise ValueError(
            f"A validation split of {count} examples leaves too little of the "
            f"{num_examples} training examples; pass a smaller --val-size or "
            "--val-fraction."
        )
    return count


def default_validation_count(num_examples, default_size, max_share=0.1):
    """`(count, note)`: `default_size`, or `max_share` of a small train split.

    MMBT's 5,000 validation examples fit Food-101's 67,988 training rows, but
    not a 200-row file: there the default is `max_share` of the rows (at
    least 1 when there are 2 or more), and `note` says so; else `note` is
    `None`.
    """
    share = int(round(num_examples * max_share))
    if default_size <= share:
        return int(default_size), None
    count = max(share, 1) if num_examples >= 2 else 0
    note = (
        f"Validation split: {count} of the {num_examples} training examples "
        f"({max_share:.0%}), since the default {default_size:,} would leave "
        "too little to train on; set --val-size N or --val-fraction F to "
        "choose."
    )
    return count, note


def stratified_split(labels, num_validation, seed=0):
    """Splits indices so each class keeps its share in validation.

    Each class `c` with `n_c` of `N` examples gets `num_validation * n_c / N`
    validation examples, rounded by largest remainder so the total is exact;
    which ones is a seeded shuffle within the class.

    Args:
        labels: sequence of hashable labels, one per example.
        num_validation: int, the validation split's size.
        seed: int.

    Returns:
        `(train_indices, validation_indices)`, sorted numpy int64 arrays.
    """
    labels = list(labels)
    total = len(labels)
    by_class = collections.defaultdict(list)
    for index, label in enumerate(labels):
        by_class[label].append(index)
    classes = sorted(by_class, key=str)
    if num_validation == 0 or total == 0:
        return np.arange(total, dtype=np.int64), np.zeros([0], np.int64)
    quotas = {c: num_validation * len(by_class[c]) / total for c in classes}
    counts = {c: int(np.floor(q)) for c, q in quotas.items()}
    remaining = num_validation - sum(counts.values())
    by_remainder = sorted(
        classes, key=lambda c: (-(quotas[c] - counts[c]), str(c))
    )
    for c in by_remainder[:remaining]:
        counts[c] += 1
    rng = np.random.default_rng(seed)
    validation = []
    for c in classes:
        members = np.asarray(by_class[c], np.int64)
        validation.extend(rng.permutation(members)[: counts[c]].tolist())
    validation = np.sort(np.asarray(validation, np.int64))
    is_validation = np.zeros(total, bool)
    is_validation[validation] = True
    return np.flatnonzero(~is_validation).astype(np.int64), validation
