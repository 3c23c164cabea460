"""SequenceWiseAttention: masking, pooling positions, serialization."""

import numpy as np

from cmaclip_tf.layers import SequenceWiseAttention


def _layer(**kwargs):
    config = dict(num_layers=2, hidden_dim=32, num_heads=4, dropout=0.0)
    config.update(kwargs)
    return SequenceWiseAttention(**config)


def _inputs(seed=0, batch=3, patches=5, text_length=7):
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(batch, patches, 24)).astype("float32")
    text = rng.normal(size=(batch, text_length, 16)).astype("float32")
    lengths = np.array([3, 7, 5])[:batch]
    mask = np.arange(text_length)[None, :] < lengths[:, None]
    return image, text, mask


def test_padding_never_influences_outputs():
    layer = _layer()
    image, text, mask = _inputs()
    expected = layer(image, text, mask)
    noisy = text.copy()
    noisy[~mask] = 1e3 * np.random.default_rng(9).normal(size=noisy[~mask].shape)
    got = layer(image, noisy, mask)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-5)


def test_same_text_padded_to_two_lengths():
    layer = _layer()
    image, text, mask = _inputs()
    short = layer(image, text, mask)
    pad = np.zeros((3, 9, 16), "float32")
    long = layer(
        image,
        np.concatenate([text, pad], axis=1),
        np.concatenate([mask, np.zeros((3, 9), bool)], axis=1),
    )
    for s, g in zip(short, long):
        np.testing.assert_allclose(s, g, atol=1e-5)


def test_text_embedding_is_taken_at_the_end_of_text_position():
    layer = _layer()
    image, text, mask = _inputs()
    _, text_embedding = layer(image, text, mask)
    # Changing a real token at the last position changes T' for that row only.
    changed = text.copy()
    changed[0, 2] += 5.0  # Row 0 has 3 tokens: index 2 is its end token.
    _, text_embedding_2 = layer(image, changed, mask)
    assert np.abs(text_embedding_2[0] - text_embedding[0]).max() > 1e-3
    np.testing.assert_allclose(text_embedding_2[1:], text_embedding[1:], atol=1e-6)


def test_attention_scores_mask_padding_keys():
    layer = _layer()
    image, text, mask = _inputs()
    _, _, scores = layer(image, text, mask, return_attention_scores=True)
    scores = np.asarray(scores)
    assert scores.shape == (3, 4, 12, 12)
    key_mask = np.concatenate([np.ones((3, 5), bool), mask], axis=1)
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)
    assert np.abs(scores * ~key_mask[:, None, None, :]).max() < 1e-6


def test_projections_start_from_given_matrices():
    layer = _layer()
    layer.build((None, None, 24), (None, None, 16))
    image_kernel = np.random.default_rng(0).normal(size=(24, 32)).astype("float32")
    copied = layer.initialize_projections(image_kernel, np.zeros((3, 3)))
    assert copied == ["image_projection"]
    np.testing.assert_array_equal(layer.image_projection.kernel, image_kernel)


def test_serialization_round_trip():
    layer = _layer()
    image, text, mask = _inputs()
    expected = layer(image, text, mask)
    restored = SequenceWiseAttention.from_config(layer.get_config())
    restored.build(image.shape, text.shape)
    restored.set_weights(layer.get_weights())
    for got, want in zip(restored(image, text, mask), expected):
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert restored.get_config() == layer.get_config()
