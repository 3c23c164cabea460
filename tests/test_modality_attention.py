"""ModalityAttention: eq. (3)-(6) against numpy, from the layer's own weight."""

import keras
import numpy as np

from cmaclip_tf.layers import AverageFusion
from cmaclip_tf.layers import ModalityAttention


def _numpy_modality_attention(w, image, text):
    e_image = image @ w  # eq. (4)
    e_text = text @ w  # eq. (5)
    lam = np.exp(e_image) / (np.exp(e_image) + np.exp(e_text))  # eq. (6)
    return lam[:, None] * image + (1 - lam[:, None]) * text, lam  # eq. (3)


def test_matches_numpy_from_its_own_weight():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(5, 16)).astype("float32")
    text = rng.normal(size=(5, 16)).astype("float32")
    layer = ModalityAttention(kernel_initializer="random_normal")
    fused, image_weight = layer(image, text)
    w = layer.kernel.numpy()
    expected_fused, expected_lambda = _numpy_modality_attention(w, image, text)
    np.testing.assert_allclose(image_weight, expected_lambda, atol=1e-6)
    np.testing.assert_allclose(fused, expected_fused, atol=1e-5)
    # λ really varies across examples, so the check is not vacuous.
    assert np.ptp(expected_lambda) > 0.05


def test_weight_vector_is_the_only_trainable_weight():
    layer = ModalityAttention()
    layer(np.ones((2, 8), "float32"), np.zeros((2, 8), "float32"))
    assert [tuple(v.shape) for v in layer.trainable_weights] == [(8,)]
    assert layer.non_trainable_weights == []


def test_starts_as_an_average():
    image = np.full((3, 4), 2.0, "float32")
    text = np.zeros((3, 4), "float32")
    fused, image_weight = ModalityAttention()(image, text)
    np.testing.assert_allclose(image_weight, 0.5)
    np.testing.assert_allclose(fused, 1.0)


def test_large_scores_damp_the_other_modality():
    w = np.ones(4, "float32") * 10
    layer = ModalityAttention(kernel_initializer=keras.initializers.Constant(w))
    image = np.ones((1, 4), "float32")
    text = -np.ones((1, 4), "float32")
    fused, image_weight = layer(image, text)
    assert float(image_weight[0]) > 1 - 1e-6
    np.testing.assert_allclose(fused, image, atol=1e-5)


def test_serialization_round_trip():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(2, 8)).astype("float32")
    text = rng.normal(size=(2, 8)).astype("float32")
    layer = ModalityAttention(kernel_initializer="random_normal")
    expected = layer(image, text)
    restored = ModalityAttention.from_config(layer.get_config())
    restored.build(image.shape)
    restored.set_weights(layer.get_weights())
    for got, want in zip(restored(image, text), expected):
        np.testing.assert_allclose(got, want, atol=1e-7)


def test_average_fusion_is_the_fixed_half():
    fused, image_weight = AverageFusion()(
        np.full((2, 3), 4.0, "float32"), np.zeros((2, 3), "float32")
    )
    np.testing.assert_allclose(fused, 2.0)
    np.testing.assert_allclose(image_weight, [0.5, 0.5])


def test_mixed_precision_scores_lambda_in_float32():
    # Eq. 4-6 in float32 from the bfloat16 embeddings the fusion hands over:
    # λ as numpy computes it in float64 from those same (rounded) inputs.
    # In bfloat16 the dot products over 512 dimensions are off by ~1e-2.
    rng = np.random.default_rng(2)
    image = keras.ops.cast(rng.normal(size=(64, 512)), "bfloat16")
    text = keras.ops.cast(rng.normal(size=(64, 512)), "bfloat16")
    w = rng.normal(scale=0.05, size=512).astype("float32")
    layer = ModalityAttention(
        kernel_initializer=keras.initializers.Constant(w), dtype="mixed_bfloat16"
    )
    fused, image_weight = layer(image, text)
    assert keras.backend.standardize_dtype(image_weight.dtype) == "float32"
    assert keras.backend.standardize_dtype(fused.dtype) == "bfloat16"
    image_64 = keras.ops.convert_to_numpy(keras.ops.cast(image, "float32")).astype("float64")
    text_64 = keras.ops.convert_to_numpy(keras.ops.cast(text, "float32")).astype("float64")
    _, expected_lambda = _numpy_modality_attention(w.astype("float64"), image_64, text_64)
    np.testing.assert_allclose(image_weight, expected_lambda, atol=2e-6)
    assert np.ptp(expected_lambda) > 0.2
