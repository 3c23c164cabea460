"""FeatureCache: rows on disk, read back in any order, reused when they fit."""

import numpy as np
import tensorflow as tf

from trainers.training import feature_cache
from trainers.training.feature_cache import FeatureCache


def batches(count=23, batch=5):
    """`(features, labels)` batches whose values encode the row number."""
    rows = np.arange(count)
    for start in range(0, count, batch):
        r = rows[start : start + batch]
        features = {
            "image_sequence": tf.constant(
                r[:, None, None] + np.linspace(0, 1, 6).reshape(1, 2, 3),
                tf.float32,
            ),
            "padding_mask": tf.constant((r[:, None] + np.arange(4)) % 3 == 0),
        }
        labels = {"color": tf.constant(r % 7 - 1, tf.int32)}
        yield features, labels


def expected_rows(positions):
    r = np.asarray(positions)
    return {
        "image_sequence": (
            r[:, None, None] + np.linspace(0, 1, 6).reshape(1, 2, 3)
        ).astype(np.float32),
        "padding_mask": (r[:, None] + np.arange(4)) % 3 == 0,
        "labels/color": (r % 7 - 1).astype(np.int32),
    }


def counting(compute_calls):
    def compute(features):
        compute_calls.append(1)
        return features

    return compute


def test_rows_come_back_in_any_order_across_shards(tmp_path, monkeypatch):
    # Shards of 4 rows (the widest row is 24 bytes), so 23 rows span 6.
    monkeypatch.setattr(feature_cache, "SHARD_BYTES", 4 * 24)
    calls = []
    cache = FeatureCache.build(str(tmp_path), batches(), counting(calls), "a")
    assert len(cache) == 23 and cache.rows_per_shard == 4
    assert len(list(tmp_path.glob("image_sequence-*.bin"))) == 6
    order = np.random.default_rng(0).permutation(23)
    rows = cache.read_rows(order)
    for key, values in expected_rows(order).items():
        np.testing.assert_array_equal(rows[key], values)
        assert rows[key].dtype == values.dtype
    read = list(cache.batches(order, 5))  # 4 full batches; the rest dropped.
    assert len(read) == 4
    features, labels = read[1]
    want = expected_rows(order[5:10])
    np.testing.assert_array_equal(features["image_sequence"], want["image_sequence"])
    np.testing.assert_array_equal(features["padding_mask"], want["padding_mask"])
    np.testing.assert_array_equal(labels["color"], want["labels/color"])
    assert features["image_sequence"].shape == (5, 2, 3)


def test_a_matching_cache_is_reused_and_a_stale_one_rebuilt(tmp_path):
    calls = []
    FeatureCache.build(str(tmp_path), batches(), counting(calls), "weights-1")
    built = len(calls)
    again = FeatureCache.build(str(tmp_path), batches(), counting(calls), "weights-1")
    assert len(calls) == built and len(again) == 23  # Reused: nothing computed.
    FeatureCache.build(str(tmp_path), batches(), counting(calls), "weights-2")
    assert len(calls) == 2 * built  # Other weights: computed again.
    # A cache without meta.json (killed while writing) is rebuilt too.
    (tmp_path / "meta.json").unlink()
    assert FeatureCache.load(str(tmp_path), "weights-2") is None
    FeatureCache.build(str(tmp_path), batches(), counting(calls), "weights-2")
    assert len(calls) == 3 * built


def test_half_precision_features_are_stored_exactly_as_float32(tmp_path):
    values = tf.constant([[0.1, 1e-3, 3.0]], tf.bfloat16)

    cache = FeatureCache.build(
        str(tmp_path), [({"x": values}, {"t": tf.constant([1])})],
        lambda features: features, "bf16",
    )
    stored = cache.read_rows([0])["x"]
    assert stored.dtype == np.float32
    np.testing.assert_array_equal(stored, tf.cast(values, tf.float32).numpy())


def test_weights_fingerprint_follows_values():
    a = tf.Variable([1.0, 2.0])
    first = feature_cache.weights_fingerprint([a], "warmup")
    assert feature_cache.weights_fingerprint([a], "warmup") == first
    assert feature_cache.weights_fingerprint([a], "tuning") != first
    a.assign([1.0, 2.5])
    assert feature_cache.weights_fingerprint([a], "warmup") != first


def test_an_empty_split_writes_an_empty_cache(tmp_path):
    cache = FeatureCache.build(str(tmp_path), [], lambda f: f, "empty")
    assert len(cache) == 0
