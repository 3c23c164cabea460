"""SequenceWiseAttention: masking, pooling positions, serialization."""

import numpy as np

from cmaclip_tf.layers import SequenceWiseAttention
from cmaclip_tf.layers import end_of_text_embedding


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


def _fused_sequence(layer, image, text, mask):
    """The whole output sequence, run block by block from the layer's parts."""
    x = np.concatenate(
        [layer.image_projection(image), layer.text_projection(text)], axis=1
    )
    key_mask = np.concatenate([np.ones(image.shape[:2], bool), mask], axis=1)
    for block in layer.encoder_layers:
        x = block(x, padding_mask=key_mask)
    return np.asarray(layer.output_layer_norm(x))


def test_embeddings_are_the_image_cls_and_end_of_text_positions():
    layer = _layer()
    image, text, mask = _inputs()
    image_embedding, text_embedding = layer(image, text, mask)
    sequence = _fused_sequence(layer, image, text, mask)
    patches = image.shape[1]
    # Rows hold 3, 7 and 5 real tokens: end-of-text at text index 2, 6, 4.
    end_of_text = patches + np.array([2, 6, 4])
    np.testing.assert_allclose(image_embedding, sequence[:, 0], atol=1e-6)
    np.testing.assert_allclose(
        text_embedding, sequence[np.arange(3), end_of_text], atol=1e-6
    )
    # Every other position differs, so the checks above pin the positions.
    for row in range(3):
        others = np.delete(sequence[row], [0, end_of_text[row]], axis=0)
        for embedding in (image_embedding, text_embedding):
            distance = np.abs(others - np.asarray(embedding[row])).max(-1)
            assert distance.min() > 1e-3


def test_end_of_text_embedding_reads_the_last_real_token():
    sequence = np.arange(24, dtype="float32").reshape(3, 4, 2)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], bool)
    got = np.asarray(end_of_text_embedding(sequence, mask))
    # Rows' last true positions are 1 and 3; a row with none reads 0.
    np.testing.assert_array_equal(got, [[2, 3], [14, 15], [16, 17]])


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
