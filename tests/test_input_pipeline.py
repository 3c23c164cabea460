"""make_batches: what the trainer gets, in what order, from raw splits."""

import numpy as np
import pytest
import tensorflow as tf

from cmaclip_tf.data import ImagePreprocessor
from cmaclip_tf.data import TextPreprocessor
from cmaclip_tf.data import load_dataset
from cmaclip_tf.data import make_batches
from cmaclip_tf.data import shuffle_seed

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


def test_training_shuffle_is_seeded_by_seed_and_epoch(setup):
    dataset, text, image = setup
    train = dataset.splits["train"]

    def order(seed, epoch):
        return ids_of(
            make_batches(
                train,
                text,
                image,
                16,
                training=True,
                seed=seed,
                epoch=epoch,
                include_ids=True,
            )
        )

    first = order(0, 0)
    assert (
        len(first) == 64
    )  # 70 examples, 4 full batches of 16; the rest dropped.
    assert len(set(first)) == 64
    assert order(0, 0) == first  # A resumed run sees the same epoch again.
    assert order(0, 1) != first
    assert order(1, 0) != first
    assert first != sorted(first, key=lambda i: int(i.rsplit("/", 1)[1]))
    assert shuffle_seed(0, 1) != shuffle_seed(1, 0)


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
        make_batches(
            dataset.splits["validation"], text, image, 4, training=True
        )
    )
    assert sum(1 for _ in distributed) == 2
