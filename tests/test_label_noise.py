"""Label noise: the share flipped, never to the same class, missing kept."""

import numpy as np
import pytest
import tensorflow as tf

from cmaclip_tf.datasets.label_noise import flip_labels
from cmaclip_tf.datasets.label_noise import with_label_noise

NUM_EXAMPLES = 10_000


def test_flips_exactly_the_share_of_labelled_entries():
    labels = np.array([0, 1, 2, -1, -1, 1])
    noisy = flip_labels(labels, num_classes=3, rate=0.5, seed=0)
    # Four labelled entries, half of them flipped; the -1 stay.
    assert (noisy != labels).sum() == 2
    np.testing.assert_array_equal(noisy[[3, 4]], [-1, -1])
    assert set(noisy.tolist()) <= {-1, 0, 1, 2}
    np.testing.assert_array_equal(flip_labels(labels, 3, 0.0, seed=0), labels)
    everything = flip_labels(labels, 3, 1.0, seed=0)
    assert np.all((everything != labels) == (labels != -1))


def test_flips_go_uniformly_to_the_other_classes():
    labels = np.zeros(NUM_EXAMPLES, np.int32)
    labels[::5] = -1  # 2,000 missing, 8,000 labelled.
    noisy = flip_labels(labels, num_classes=5, rate=0.3, seed=1)
    assert noisy.dtype == labels.dtype
    assert (noisy != labels).sum() == 2400  # round(0.3 * 8,000)
    assert np.all(noisy[::5] == -1)
    counts = np.bincount(noisy[noisy >= 0], minlength=5)
    assert counts[0] == 8000 - 2400
    # Each of classes 1..4 gets a quarter of the 2,400 flips, +-4 sd.
    np.testing.assert_allclose(counts[1:], 600, atol=4 * np.sqrt(2400 * 0.1875))


def test_same_seed_same_flips_other_seed_other_flips():
    labels = np.arange(1000) % 7
    first = flip_labels(labels, 7, 0.2, seed=3)
    np.testing.assert_array_equal(first, flip_labels(labels, 7, 0.2, seed=3))
    assert not np.array_equal(first, flip_labels(labels, 7, 0.2, seed=4))


def test_bad_labels_and_rates_are_errors():
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        flip_labels(np.array([0, 3]), 3, 0.1, seed=0)
    with pytest.raises(ValueError, match="rate"):
        flip_labels(np.array([0, 1]), 3, 1.5, seed=0)
    with pytest.raises(ValueError, match="1 class"):
        flip_labels(np.array([0, 0]), 1, 0.1, seed=0)


def raw_split(labels):
    count = len(next(iter(labels.values())))
    return tf.data.Dataset.from_tensor_slices(
        {
            "image": tf.zeros([count], tf.string),
            "text": tf.fill([count], "title"),
            "labels": {t: tf.constant(v, tf.int32) for t, v in labels.items()},
            "id": tf.constant([f"set/train.csv:{i}" for i in range(count)]),
        }
    )


def labels_of(dataset, task):
    return next(iter(dataset.batch(NUM_EXAMPLES)))["labels"][task].numpy()


def test_raw_split_flips_the_rate_per_task_the_same_every_pass():
    rng = np.random.default_rng(0)
    clean = {
        "color": rng.integers(0, 14, NUM_EXAMPLES),
        "style": np.where(rng.random(NUM_EXAMPLES) < 0.25, -1,
                          rng.integers(0, 8, NUM_EXAMPLES)),
    }
    num_classes = {"color": 14, "style": 8}
    noisy = with_label_noise(raw_split(clean), num_classes, 0.2, seed=5)
    first, again = (next(iter(noisy.batch(NUM_EXAMPLES))) for _ in range(2))
    flips = {}
    for task, labels in clean.items():
        flipped = first["labels"][task].numpy()
        # The same labels are flipped in every pass (epoch).
        np.testing.assert_array_equal(flipped, again["labels"][task])
        labelled = labels != -1
        np.testing.assert_array_equal(flipped[~labelled], -1)
        assert flipped.min() >= -1 and flipped.max() < num_classes[task]
        flips[task] = flipped != labels
        assert abs(flips[task][labelled].mean() - 0.2) < 0.02, task
    # Tasks are flipped independently: both at once for about 0.2 * 0.2.
    both = (flips["color"] & flips["style"])[clean["style"] != -1].mean()
    assert abs(both - 0.04) < 0.01


def test_raw_split_flips_follow_the_id_not_the_order():
    labels = {"color": np.arange(500) % 4}
    num_classes = {"color": 4}
    ordered = labels_of(
        with_label_noise(raw_split(labels), num_classes, 0.5, 1), "color"
    )
    shuffled = with_label_noise(
        raw_split(labels).shuffle(500, seed=2), num_classes, 0.5, 1
    )
    batch = next(iter(shuffled.batch(500)))
    by_id = dict(zip(batch["id"].numpy().astype(str),
                     batch["labels"]["color"].numpy().tolist()))
    assert [by_id[f"set/train.csv:{i}"] for i in range(500)] == ordered.tolist()
    other_seed = labels_of(
        with_label_noise(raw_split(labels), num_classes, 0.5, 2), "color"
    )
    assert not np.array_equal(ordered, other_seed)


def test_raw_split_at_rate_one_moves_every_label_to_another_class():
    labels = np.where(np.arange(4000) % 4 == 0, -1, 0)
    noisy = labels_of(with_label_noise(raw_split({"color": labels}),
                                       {"color": 5}, 1.0, seed=0), "color")
    np.testing.assert_array_equal(noisy[labels == -1], -1)
    counts = np.bincount(noisy[labels != -1], minlength=5)
    assert counts[0] == 0
    # 3,000 flips, a quarter to each other class, +-4 sd.
    np.testing.assert_allclose(counts[1:], 750, atol=4 * np.sqrt(3000 * 0.1875))


def test_raw_split_needs_every_task_class_count():
    with pytest.raises(ValueError, match="style"):
        with_label_noise(
            raw_split({"color": [0], "style": [1]}), {"color": 3}, 0.1, 0
        )
