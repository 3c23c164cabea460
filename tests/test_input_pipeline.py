"""make_batches: what the trainer gets, in what order, from raw splits."""

import csv
import os

import numpy as np
import pytest
import tensorflow as tf
from fixtures_data import encoded_image

from cmaclip_tf.datasets import load_dataset
from cmaclip_tf.preprocessing import ImagePreprocessor
from cmaclip_tf.preprocessing import TextPreprocessor
from cmaclip_tf.preprocessing.input_pipeline import epoch_permutation
from cmaclip_tf.preprocessing.input_pipeline import make_batches

SIZES = {"train": 70, "validation": 10, "test": 10}


@pytest.fixture(scope="module")
def setup(tiny_clip):
    dataset = load_dataset(
        "synthetic", seed=5, num_examples=SIZES, image_size=40
    )
    text = TextPreprocessor.from_tokenizer(tiny_clip.tokenizer, 16)
    image = ImagePreprocessor(32)
    return dataset, text, image


def ids_of(batches):
    return [
        i.decode() for features, _ in batches for i in features["id"].numpy()
    ]


def test_evaluation_batches_keep_order_and_values(setup):
    dataset, text, image = setup
    raw = list(dataset.splits["train"].as_numpy_iterator())
    batches = list(
        make_batches(dataset.splits["train"], text, image, 32, training=False)
    )
    assert [f["images"].shape[0] for f, _ in batches] == [32, 32, 6]
    features = {
        k: np.concatenate([f[k].numpy() for f, _ in batches])
        for k in batches[0][0]
    }
    labels = {
        k: np.concatenate([y[k].numpy() for _, y in batches])
        for k in batches[0][1]
    }
    assert features["images"].dtype == np.float32 and features["images"].shape[
        1:
    ] == (32, 32, 3)
    assert (
        features["token_ids"].dtype == np.int32
        and features["padding_mask"].dtype == bool
    )
    for task in ("color", "pattern", "style"):
        np.testing.assert_array_equal(
            labels[task], [r["labels"][task] for r in raw]
        )
        assert labels[task].dtype == np.int32
    expected_tokens = text(tf.constant([r["text"] for r in raw]))
    np.testing.assert_array_equal(
        features["token_ids"], expected_tokens["token_ids"].numpy()
    )
    np.testing.assert_array_equal(
        features["padding_mask"], expected_tokens["padding_mask"].numpy()
    )
    np.testing.assert_allclose(
        features["images"][7],
        image.preprocess_pixels(raw[7]["image"]).numpy(),
        atol=1e-5,
    )


def test_epoch_order_is_a_seeded_full_permutation(setup):
    dataset, text, image = setup

    def order(seed, epoch, skip=0):
        raw = dataset.epoch_split("train", seed, epoch, skip)
        return [e["id"].decode() for e in raw.as_numpy_iterator()]

    first = order(0, 0)
    assert sorted(first) == sorted(f"synthetic/train/{i}" for i in range(70))
    assert first != sorted(first, key=lambda i: int(i.rsplit("/", 1)[1]))
    assert order(0, 0) == first  # A resumed run sees the same epoch again,
    assert order(0, 0, skip=48) == first[48:]  # from where it stopped.
    assert order(0, 1) != first
    assert order(1, 0) != first
    np.testing.assert_array_equal(
        epoch_permutation(70, 0, 0),
        [int(i.rsplit("/", 1)[1]) for i in first],
    )
    batches = make_batches(
        dataset.epoch_split("train", 0, 0), text, image, 16, training=True,
        include_ids=True,
    )
    assert ids_of(batches) == first[:64]  # 4 full batches; the rest dropped.


def class_sorted_manifest(root, num_classes, per_class):
    """A CSV manifest sorted by class, all rows sharing one image file."""
    with open(os.path.join(root, "item.png"), "wb") as f:
        f.write(encoded_image(image_format="PNG"))
    path = os.path.join(root, "sorted.csv")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "text", "category"])
        for c in range(num_classes):
            for i in range(per_class):
                writer.writerow(["item.png", f"item {i}", f"class_{c:02d}"])
    return path


@pytest.mark.parametrize("seed,epoch", [(0, 0), (3, 7)])
def test_batches_of_a_class_sorted_source_draw_from_the_whole_split(
    tmp_path, seed, epoch
):
    # 12,000 rows sorted by class: more than any shuffle buffer held. Each
    # epoch's first batches must follow the split's class frequencies, not
    # a window of a few classes (a chi-square test, 9 degrees of freedom).
    path = class_sorted_manifest(str(tmp_path), num_classes=10, per_class=1200)
    dataset = load_dataset("manifest", manifest=path, val_fraction=0.05)
    assert dataset.num_examples["train"] == 11400
    labels = [
        int(e["labels"]["category"])
        for e in dataset.epoch_split("train", seed, epoch)
        .take(20 * 32)
        .as_numpy_iterator()
    ]
    observed = np.bincount(labels, minlength=10)
    expected = np.full(10, len(labels) / 10)  # Stratified: equal shares.
    chi_square = float(((observed - expected) ** 2 / expected).sum())
    assert chi_square < 27.88  # The 0.1% critical value at 9 d.o.f.
    # Every batch of 32 mixes many classes (sorted order would give 1).
    per_batch = [len(set(labels[i : i + 32])) for i in range(0, 640, 32)]
    assert min(per_batch) >= 6


def test_batch_size_is_global_and_remainder_is_configurable(setup):
    dataset, text, image = setup
    batches = make_batches(
        dataset.splits["validation"],
        text,
        image,
        4,
        training=True,
        drop_remainder=False,
    )
    assert [f["images"].shape[0] for f, _ in batches] == [4, 4, 2]
    strategy = tf.distribute.get_strategy()
    distributed = strategy.experimental_distribute_dataset(
        make_batches(dataset.split("validation"), text, image, 4, training=True)
    )
    assert sum(1 for _ in distributed) == 2
