"""A CMA-CLIP model that starts where zero-shot CLIP stands.

The identity fusion, the heads' zero-shot path and the chosen λ, against
numpy computed from CLIP's own embeddings; the choice of λ and of which
tasks can use prompts.
"""

import keras
import numpy as np
import pytest

from cmaclip_tf.layers import MLPHead
from cmaclip_tf.layers import ModalityAttention
from cmaclip_tf.layers import SequenceWiseAttention
from cmaclip_tf.models import create_cma_clip
from cmaclip_tf.models.zero_shot_start import LOGIT_SCALES
from cmaclip_tf.models.zero_shot_start import calibrated_logit_scale
from cmaclip_tf.models.zero_shot_start import choose_image_weight
from cmaclip_tf.models.zero_shot_start import class_names_are_words
from cmaclip_tf.models.zero_shot_start import looks_like_word


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _inputs(batch=4, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(batch, 64, 64, 3)).astype("float32")
    token_ids = np.zeros((batch, 32), "int32")
    lengths = rng.integers(3, 20, size=batch)
    for row, length in enumerate(lengths):
        token_ids[row, :length] = rng.integers(1, 400, size=length)
        token_ids[row, length] = 499  # The tiny vocabulary's end of text.
    return {"images": images, "token_ids": token_ids,
            "padding_mask": token_ids != 0}


def test_word_and_id_class_names():
    assert [looks_like_word(n) for n in
            ("navy blue", "t-shirt", "A-line", "sku123", "cat_17", "42", "")] == [
        True, True, True, False, False, False, False]
    assert class_names_are_words(["red", "green", "blue", "navy blue", "teal"])
    # 4 of 5 words is enough (a "3/4 sleeve" among words); 3 of 5 is not.
    assert class_names_are_words(["red", "green", "blue", "teal", "3/4"])
    assert not class_names_are_words(["red", "green", "blue", "sku1", "sku2"])
    assert not class_names_are_words([])


def test_choose_image_weight_follows_the_informative_modality():
    classes = np.eye(3, dtype="float32")
    labels = np.array([0, 1, 2, 0, 1, 2, -1])
    right = classes[np.maximum(labels, 0)]
    wrong = classes[(np.maximum(labels, 0) + 1) % 3]  # Misleading.
    # Images right, titles misleading: an image-leaning start.
    weight, acc = choose_image_weight(right + 0.1 * wrong, wrong, classes, labels)
    assert weight > 0.5 and acc[weight] == 1.0 and acc[0.0] == 0.0
    assert acc[1.0] == 1.0
    # Titles right, images misleading: a title-leaning start.
    weight, acc = choose_image_weight(wrong, right + 0.1 * wrong, classes, labels)
    assert weight < 0.5 and acc[weight] == 1.0
    # Both right: 0.5, the paper's start, wins the tie.
    weight, _ = choose_image_weight(right, right, classes, labels)
    assert weight == 0.5
    # Nothing labelled: 0.5.
    assert choose_image_weight(right, right, classes, -np.ones(7))[0] == 0.5


def test_calibrated_scale_is_confident_only_where_zero_shot_is_right():
    classes = np.eye(4, dtype="float32")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=400)
    noise = rng.normal(size=(400, 4)).astype("float32")
    # Right every time, by a clear margin: the largest scale.
    right = classes[labels] + 0.1 * noise
    assert calibrated_logit_scale(right, right, classes, labels, 0.5) >= 32.0
    # Right a third of the time: a soft start.
    guess = np.where((np.arange(400) % 3 == 0)[:, None], classes[labels],
                     classes[(labels + 1) % 4]) + 0.1 * noise
    weak = calibrated_logit_scale(guess, guess, classes, labels, 0.5)
    assert weak < 4.0
    # Matches a brute-force minimum of the cross-entropy.
    def nll(scale):
        logits = scale * _unit(guess) @ classes.T
        logits -= logits.max(-1, keepdims=True)
        p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        return -np.mean(np.log(p[np.arange(400), labels]))
    assert nll(weak) == min(nll(s) for s in LOGIT_SCALES)
    assert calibrated_logit_scale(right, right, classes, -np.ones(400), 0.5) is None


@pytest.mark.parametrize("variant", ["full", "no_ma", "no_ma_sa", "clip_linear"])
def test_fresh_model_is_zero_shot_clip(variant):
    model, clip, _ = create_cma_clip("tiny", {"color": 5, "shape": 3},
                                     variant=variant)
    inputs = _inputs()
    features = model.encode(inputs["images"], inputs["token_ids"],
                            inputs["padding_mask"])
    clip_image, clip_text = (np.asarray(x) for x in model.pooled_embeddings(features))
    # The fusion starts as the identity on CLIP's embedding directions.
    fused = model.fuse(features)
    for got, want in ((fused["image_embedding"], clip_image),
                      (fused["text_embedding"], clip_text)):
        np.testing.assert_allclose(
            np.sum(_unit(np.asarray(got)) * _unit(want), -1), 1.0, atol=1e-5)

    rng = np.random.default_rng(1)
    prompts = {"color": rng.normal(size=(5, 64)), "shape": rng.normal(size=(3, 64))}
    scale = 37.0
    started = model.start_from_zero_shot(prompts, scale, {"color": 0.88})
    assert started == ["color", "shape"]
    outputs = model(inputs)
    weight = 0.88 if variant in ("full", "clip_linear") else 0.5
    for task, w in (("color", weight), ("shape", 0.5)):
        classes = _unit(prompts[task])
        want = scale * (w * _unit(clip_image) @ classes.T
                        + (1 - w) * _unit(clip_text) @ classes.T)
        np.testing.assert_allclose(outputs[f"{task}_logits"], want, atol=1e-4)
    if variant == "full":
        np.testing.assert_allclose(outputs["color_image_weight"], 0.88, atol=1e-6)


def test_tasks_without_prompts_keep_their_random_start():
    model, _, _ = create_cma_clip("tiny", {"color": 5, "sku": 4})
    before = [w.numpy().copy() for w in model.heads[1].weights]
    started = model.start_from_zero_shot(
        {"color": np.ones((5, 64)), "sku": None}, 10.0)
    assert started == ["color"]
    for a, b in zip(before, model.heads[1].weights):
        np.testing.assert_array_equal(a, b.numpy())
    # The random head is not the zeroed one.
    assert np.abs(model.heads[1].logits.kernel.numpy()).sum() > 0


def test_mlp_head_linear_path():
    head = MLPHead(3, 8, linear_path=True)
    x = np.random.default_rng(0).normal(size=(2, 4)).astype("float32")
    head(x)
    kernel = np.arange(12, dtype="float32").reshape(4, 3)
    head.initialize_zero_shot(kernel, 2.5)
    np.testing.assert_allclose(head(x), 2.5 * x @ kernel, rtol=1e-5)
    # The MLP branch reads the (unit) inputs times √dim.
    head.logits.kernel.assign(np.ones((8, 3), "float32"))
    hidden = keras.activations.gelu(
        2.0 * x @ head.hidden.kernel.numpy() + head.hidden.bias.numpy())
    np.testing.assert_allclose(head(x), 2.5 * x @ kernel + hidden @ np.ones((8, 3)),
                               rtol=1e-4, atol=1e-4)
    head.initialize_zero_shot(kernel, 2.5)
    # The scale is a weight that does not train.
    assert [w.name for w in head.non_trainable_weights] == ["linear_scale"]
    restored = MLPHead.from_config(head.get_config())
    assert restored.linear_path and restored.get_config() == head.get_config()
    linear = MLPHead(3, 0, linear_path=True)  # CLIP + linear heads.
    linear(x)
    linear.initialize_zero_shot(kernel, 2.5)
    np.testing.assert_allclose(linear(x), 2.5 * x @ kernel, rtol=1e-5)
    with pytest.raises(ValueError, match="linear_path"):
        plain = MLPHead(3, 8)
        plain(x)
        plain.initialize_zero_shot(kernel)


def test_modality_attention_bias_sets_the_start():
    layer = ModalityAttention(use_bias=True)
    image = np.random.default_rng(0).normal(size=(3, 8)).astype("float32")
    text = -image
    layer(image, text)
    layer.set_image_weight(0.9)
    fused, weight = layer(image, text)
    np.testing.assert_allclose(weight, 0.9, atol=1e-6)
    np.testing.assert_allclose(fused, 0.9 * image + 0.1 * text, atol=1e-5)
    # w still weighs per example on top of the bias: e_I = wᵀI' + b.
    layer.kernel.assign(np.full(8, 0.5, "float32"))
    _, weight = layer(image, text)
    logit = 0.5 * image.sum(-1) - 0.5 * text.sum(-1) + np.log(9.0)
    np.testing.assert_allclose(weight, 1 / (1 + np.exp(-logit)), atol=1e-5)
    assert ModalityAttention.from_config(layer.get_config()).use_bias
    with pytest.raises(ValueError, match="use_bias"):
        plain = ModalityAttention()
        plain(image, text)
        plain.set_image_weight(0.9)


def test_rms_output_norm_keeps_direction():
    layer = SequenceWiseAttention(num_layers=1, hidden_dim=16, num_heads=2,
                                  output_norm="rms")
    rng = np.random.default_rng(0)
    image_sequence = rng.normal(size=(2, 5, 16)).astype("float32")
    text_sequence = rng.normal(size=(2, 4, 16)).astype("float32")
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
    layer(image_sequence, text_sequence, mask)
    layer.start_as_identity()
    eye = np.eye(16, dtype="float32")
    layer.initialize_projections(eye, eye)
    image, text = layer(image_sequence, text_sequence, mask)
    np.testing.assert_allclose(_unit(np.asarray(image)),
                               _unit(image_sequence[:, 0]), atol=1e-5)
    np.testing.assert_allclose(_unit(np.asarray(text)[0]),
                               _unit(text_sequence[0, 2]), atol=1e-5)
    config = layer.get_config()
    assert config["output_norm"] == "rms"
    assert isinstance(SequenceWiseAttention.from_config(config).output_layer_norm,
                      keras.layers.RMSNormalization)
    with pytest.raises(ValueError, match="output_norm"):
        SequenceWiseAttention(output_norm="batch")


class _Data:
    """What `start_from_zero_shot` reads of a run's data: tasks, the text
    preprocessor and a sample of training batches."""

    def __init__(self, clip, tasks, labels):
        import tensorflow as tf

        from cmaclip_tf.preprocessing import TextPreprocessor

        self.tasks = tasks
        self.text_preprocessor = TextPreprocessor.from_tokenizer(clip.tokenizer, 32)
        inputs = _inputs(batch=len(next(iter(labels.values()))))
        self._batches = tf.data.Dataset.from_tensors((
            inputs, {t: np.asarray(v, "int32") for t, v in labels.items()}))

    def sample_batches(self, split, num_examples, batch_size):
        assert split == "train"
        return self._batches


def test_start_from_zero_shot_uses_prompts_where_names_are_words():
    from trainers.training.zero_shot_initialization import start_from_zero_shot

    model, clip, _ = create_cma_clip("tiny", {"color": 3, "sku": 2})
    data = _Data(clip, {"color": ["red", "green", "blue"], "sku": ["sku1", "sku2"]},
                 {"color": [0, 1, 2, -1], "sku": [0, 1, 0, 1]})
    sku_before = model.heads[1].logits.kernel.numpy().copy()
    lines = []
    report = start_from_zero_shot(model, data, "a photo of a {label}", lines.append)
    assert lines[0] == ("[start] sku: class names look like ids (sku1, sku2); its "
                        "head starts at random, not from zero-shot CLIP.")
    assert lines[1].startswith("[start] color: zero-shot start, λ ")
    assert "accuracy on 3 training examples" in lines[1]
    assert report["sku"] == {"zero_shot": False} and report["color"]["zero_shot"]
    np.testing.assert_array_equal(model.heads[1].logits.kernel.numpy(), sku_before)
    # The color head is zero-shot CLIP's classifier: the prompts' embeddings.
    ids = data.text_preprocessor(["a photo of a red", "a photo of a green",
                                  "a photo of a blue"])["token_ids"]
    prompts = _unit(np.asarray(clip.backbone.get_text_embeddings(ids)))
    np.testing.assert_allclose(model.heads[0].linear.kernel.numpy(), prompts.T,
                               atol=1e-5)
    scale = report["color"]["logit_scale"]
    assert scale in LOGIT_SCALES
    assert model.heads[0].linear_scale.numpy() == pytest.approx(scale)
    weight = report["color"]["image_weight"]
    np.testing.assert_allclose(model(_inputs())["color_image_weight"], weight,
                               atol=1e-5)
