"""ContrastiveTrainer: one step against AdamW by hand on the library loss, the
clamp, the schedule, and retrieval evaluation."""

import math

import numpy as np
import pytest
import tensorflow as tf

from cmaclip_tf.losses import MAX_LOGIT_SCALE
from cmaclip_tf.losses import contrastive_loss
from trainers.pretraining.contrastive_trainer import ContrastiveTrainer
from trainers.pretraining.contrastive_trainer import selection_score

# A large decay, so that AdamW's decay (lr * wd * w, ~1e-4 here) stands
# well above the float noise of the Adam part of the step.
LEARNING_RATE, WEIGHT_DECAY = 1e-3, 5.0
# Keras Adam's defaults.
BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7


def _backbone(tiny_clip):
    """A fresh copy of the tiny CLIP, so steps don't leak into other tests."""
    backbone = tiny_clip.backbone.from_config(tiny_clip.backbone.get_config())
    backbone.set_weights(tiny_clip.backbone.get_weights())
    return backbone


def _batch(tiny_clip, size=6):
    rng = np.random.default_rng(0)
    texts = ["a red dress", "blue shorts", "a striped skirt", "a green star",
             "a photo of a teal tee", "plain, black"][:size]
    tokenizer = tiny_clip.tokenizer
    ids = np.zeros((size, 16), "int32")
    for row, text in enumerate(texts):
        row_ids = [tokenizer.start_token_id, *np.asarray(tokenizer(text)),
                   tokenizer.end_token_id]
        ids[row, : len(row_ids)] = row_ids
    images = rng.normal(size=(size, 64, 64, 3)).astype("float32")
    return {"images": images, "token_ids": ids, "padding_mask": ids != 0}


def _one_step(trainer, features):
    dataset = tf.data.Dataset.from_tensors((features, {})).repeat()
    return trainer.train_steps(dataset, 1)


def test_one_step_is_adamw_on_clip_s_loss_sparing_1d_weights(tiny_clip):
    features = _batch(tiny_clip)
    reference = _backbone(tiny_clip)
    with tf.GradientTape() as tape:
        expected_loss = contrastive_loss(
            reference.get_vision_embeddings(features["images"]),
            reference.get_text_embeddings(features["token_ids"]),
            reference.clip_head.logit_scale,
        )
    variables = reference.trainable_variables
    gradients = tape.gradient(expected_loss, variables)

    backbone = _backbone(tiny_clip)
    trainer = ContrastiveTrainer(backbone, tf.distribute.get_strategy(),
                                 LEARNING_RATE, WEIGHT_DECAY)
    loss = _one_step(trainer, features)
    assert loss == pytest.approx(float(expected_loss), abs=1e-5)

    # Adam's first step: m = (1 - b1) g, v = (1 - b2) g^2, step size
    # lr sqrt(1 - b2) / (1 - b1); AdamW first decays w by lr * wd * w.
    alpha = LEARNING_RATE * math.sqrt(1 - BETA_2) / (1 - BETA_1)
    decayed = 0
    for before, gradient, after in zip(variables, gradients,
                                       backbone.trainable_variables):
        w = before.numpy()
        decay = WEIGHT_DECAY if w.ndim >= 2 else 0.0  # Not biases, norms, scale.
        decayed += decay > 0
        # The token embeddings' gradient is sparse: Adam sees it dense (a
        # token's repeats summed before squaring).
        g = tf.convert_to_tensor(gradient).numpy()
        want = w * (1 - LEARNING_RATE * decay) - alpha * (1 - BETA_1) * g / (
            np.sqrt((1 - BETA_2) * g * g) + EPSILON)
        # Adam's step is ~lr * sign(g): noise in a near-zero g moves it.
        np.testing.assert_allclose(after.numpy(), want, atol=2e-5,
                                   err_msg=before.path)
    assert 0 < decayed < len(variables)


def test_logit_scale_is_clamped_after_a_step(tiny_clip):
    backbone = _backbone(tiny_clip)
    trainer = ContrastiveTrainer(backbone, tf.distribute.get_strategy(),
                                 LEARNING_RATE, WEIGHT_DECAY)
    backbone.clip_head.logit_scale.assign(5.0)  # Scale e^5 = 148 > 100.
    _one_step(trainer, _batch(tiny_clip))
    assert float(backbone.clip_head.logit_scale.numpy()) == pytest.approx(
        MAX_LOGIT_SCALE, abs=1e-6)
    assert trainer.scale == pytest.approx(100.0, rel=1e-5)


def test_learning_rate_warms_up_then_decays_on_a_cosine(tiny_clip):
    trainer = ContrastiveTrainer(_backbone(tiny_clip), tf.distribute.get_strategy(),
                                 LEARNING_RATE, WEIGHT_DECAY, total_steps=10,
                                 warmup_steps=2)
    # Steps 0, 1 ramp lr / 2 -> lr; then lr * (1 + cos(pi * (s - 2) / 8)) / 2.
    expected = {0: LEARNING_RATE / 2, 1: LEARNING_RATE, 2: LEARNING_RATE,
                6: LEARNING_RATE / 2, 10: 0.0}
    for step, rate in expected.items():
        trainer.optimizer.iterations.assign(step)
        assert trainer.learning_rate == pytest.approx(rate, abs=1e-9), step


def test_evaluate_ranks_every_image_against_every_text(tiny_clip):
    backbone = _backbone(tiny_clip)
    trainer = ContrastiveTrainer(backbone, tf.distribute.get_strategy(),
                                 LEARNING_RATE, WEIGHT_DECAY)
    features = _batch(tiny_clip)
    # Two batches of 3: recall must rank across batches, not within one.
    dataset = tf.data.Dataset.from_tensor_slices((features, {})).batch(3)
    recall = trainer.evaluate(dataset)
    image = backbone.get_vision_embeddings(features["images"]).numpy()
    text = backbone.get_text_embeddings(features["token_ids"]).numpy()
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    similarity = image @ text.T
    hits = np.argmax(similarity, axis=1) == np.arange(6)
    assert recall["count"] == 6
    assert recall["image_to_text_recall@1"] == pytest.approx(hits.mean())
    assert recall["image_to_text_recall@5"] == pytest.approx(
        np.mean([(row > row[i]).sum() < 5 for i, row in enumerate(similarity)]))


def test_selection_score_is_the_mean_recall():
    recall = {"image_to_text_recall@1": 0.2, "text_to_image_recall@1": 0.4,
              "image_to_text_recall@5": 0.6, "text_to_image_recall@5": 1.0,
              "count": 10}
    assert selection_score(recall) == pytest.approx(0.55)



@pytest.mark.large  # A float16 CLIP built and stepped.
def test_float16_scales_the_loss_and_skips_an_overflowing_step(tiny_clip):
    import keras

    from cmaclip_tf.models import load_clip

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        backbone = load_clip("tiny_clip").backbone
    finally:
        keras.mixed_precision.set_global_policy("float32")
    trainer = ContrastiveTrainer(backbone, tf.distribute.get_strategy(),
                                 LEARNING_RATE, WEIGHT_DECAY)
    assert trainer.loss_scaling
    scale = float(trainer.optimizer.dynamic_scale.numpy())
    assert scale > 1.0
    before = [v.numpy().copy() for v in trainer.variables]
    loss = _one_step(trainer, _batch(tiny_clip))
    assert math.isfinite(loss)
    assert any(not np.array_equal(b, v.numpy()) for b, v in zip(before, trainer.variables))
    # An overflow (a non-finite image) skips the step and halves the scale.
    scale = float(trainer.optimizer.dynamic_scale.numpy())
    before = [v.numpy().copy() for v in trainer.variables]
    features = _batch(tiny_clip)
    features["images"][0, 0, 0, 0] = np.inf
    _one_step(trainer, features)
    for b, v in zip(before, trainer.variables):
        np.testing.assert_array_equal(b, v.numpy())
    assert float(trainer.optimizer.dynamic_scale.numpy()) == scale / 2
