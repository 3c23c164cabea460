"""CLIP's contrastive loss: a hand-computed 3x3 case, the logit-scale clamp,
the global batch on two replicas against one device, and a few steps of
training that lower it."""

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from cmaclip_tf.losses import INITIAL_LOGIT_SCALE
from cmaclip_tf.losses import MAX_LOGIT_SCALE
from cmaclip_tf.losses import clamp_logit_scale
from cmaclip_tf.losses import contrastive_loss
from cmaclip_tf.losses import global_batch_contrastive_loss
from cmaclip_tf.metrics import retrieval_recall

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Unit vectors, then rescaled per row: the loss must normalize them.
IMAGES = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]) * [[3.0], [0.5], [10.0]]
TEXTS = np.array([[1.0, 0.0], [0.0, 1.0], [0.28, 0.96]]) * [[2.0], [7.0], [0.1]]
# Their cosine similarities, by hand: row = image, column = text.
COSINES = np.array(
    [
        [1.0, 0.0, 0.28],
        [0.0, 1.0, 0.96],
        [0.6, 0.8, 0.6 * 0.28 + 0.8 * 0.96],
    ]
)


def hand_loss(scale):
    """Symmetric InfoNCE of the 3x3 case, written out term by term."""
    s = scale * COSINES

    def cross_entropy(logits, true):
        return math.log(sum(math.exp(x) for x in logits)) - true

    image_to_text = [cross_entropy(s[i, :], s[i, i]) for i in range(3)]
    text_to_image = [cross_entropy(s[:, j], s[j, j]) for j in range(3)]
    return (sum(image_to_text) / 3 + sum(text_to_image) / 3) / 2


def loss_and_scale_gradient(logit_scale):
    variable = tf.Variable(logit_scale, dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = contrastive_loss(
            tf.constant(IMAGES, tf.float32), tf.constant(TEXTS, tf.float32), variable
        )
    return float(loss), float(tape.gradient(loss, variable))


def test_hand_computed_3x3_case():
    # logit_scale = log 2: the logits are 2 * COSINES. Each term is
    # log(sum(exp(logits of the row or column))) - the true pair's logit.
    def lse(*logits):
        return math.log(sum(math.exp(x) for x in logits))

    rows = [lse(2, 0, 0.56) - 2, lse(0, 2, 1.92) - 2, lse(1.2, 1.6, 1.872) - 1.872]
    cols = [lse(2, 0, 1.2) - 2, lse(0, 2, 1.6) - 2, lse(0.56, 1.92, 1.872) - 1.872]
    loss, _ = loss_and_scale_gradient(math.log(2.0))
    assert loss == pytest.approx((sum(rows) / 3 + sum(cols) / 3) / 2, abs=1e-6)
    assert loss_and_scale_gradient(1.5)[0] == pytest.approx(
        hand_loss(math.exp(1.5)), abs=1e-5
    )


def test_orthonormal_pairs():
    # Every row and column: log(e^s + 2) - s = log(1 + 2 e^-s), at s = 3.
    eye = tf.eye(3) * 4.0
    loss = contrastive_loss(eye, eye, math.log(3.0))
    assert float(loss) == pytest.approx(math.log(1 + 2 * math.exp(-3.0)), abs=1e-6)
    assert INITIAL_LOGIT_SCALE == pytest.approx(math.log(1 / 0.07))


def test_logit_scale_gradient_matches_finite_differences():
    logit_scale, h = math.log(5.0), 1e-4
    _, gradient = loss_and_scale_gradient(logit_scale)
    numeric = (
        hand_loss(math.exp(logit_scale + h)) - hand_loss(math.exp(logit_scale - h))
    ) / (2 * h)
    assert gradient == pytest.approx(numeric, rel=1e-3)


def test_scale_is_clamped_at_100():
    assert MAX_LOGIT_SCALE == pytest.approx(math.log(100))
    loss, gradient = loss_and_scale_gradient(math.log(1000.0))
    assert loss == pytest.approx(hand_loss(100.0), abs=1e-4)
    assert gradient == 0.0
    # Just below the cap the scale still learns.
    assert loss_and_scale_gradient(math.log(99.0))[1] != 0.0


@pytest.mark.parametrize(
    "value, clamped", [(6.0, math.log(100)), (-1.0, 0.0), (2.0, 2.0)]
)
def test_clamp_logit_scale_variable(value, clamped):
    variable = keras.Variable(value)
    clamp_logit_scale(variable)
    assert float(variable.numpy()) == pytest.approx(clamped, abs=1e-6)


def test_global_batch_loss_is_the_loss_on_one_replica():
    images, texts = tf.constant(IMAGES, tf.float32), tf.constant(TEXTS, tf.float32)
    assert float(global_batch_contrastive_loss(images, texts, 2.0)) == pytest.approx(
        hand_loss(math.exp(2.0)), abs=1e-5
    )


def test_global_batch_loss_outside_strategy_run_says_where_to_call_it():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope(), pytest.raises(ValueError, match="strategy.run"):
        global_batch_contrastive_loss(tf.ones((2, 2)), tf.ones((2, 2)), 2.0)


@pytest.mark.large
def test_two_replicas_match_one_device_on_the_global_batch():
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "tests", "contrastive_loss_two_replicas.py")],
        env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout)
    for split in ("even", "uneven", "second_empty"):
        single, mirrored = results[split]["single"], results[split]["mirrored"]
        assert mirrored["loss"] == pytest.approx(single["loss"], abs=1e-5), split
        # Each replica holds an equal share of the global loss.
        for share in mirrored["per_replica_losses"]:
            assert share == pytest.approx(single["loss"] / 2, abs=1e-5), split
        # Kernels, biases of both towers, then logit_scale; gradients are O(1).
        assert abs(single["gradients"][-1]) > 0.1
        for name in ("gradients", "weights_after_step"):
            for a, b in zip(single[name], mirrored[name]):
                np.testing.assert_allclose(b, a, atol=1e-5, err_msg=f"{split} {name}")
        for a, b in zip(mirrored["weights_after_step"],
                        mirrored["replica_1_weights_after_step"]):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(
            mirrored["logit_scale_after_clamp"], [math.log(100)] * 2, atol=1e-6
        )


def test_training_two_towers_lowers_the_loss_and_retrieves_pairs():
    # Text features are a fixed linear view of the image features plus
    # noise: the towers can learn to align them.
    rng = np.random.default_rng(0)
    image_features = rng.normal(size=(32, 8)).astype("float32")
    text_features = (
        image_features @ rng.normal(size=(8, 10)) + 0.1 * rng.normal(size=(32, 10))
    ).astype("float32")
    keras.utils.set_random_seed(0)
    image_tower, text_tower = keras.layers.Dense(16), keras.layers.Dense(16)
    image_tower.build((None, 8))
    text_tower.build((None, 10))
    logit_scale = keras.Variable(INITIAL_LOGIT_SCALE)
    variables = [*image_tower.trainable_variables, *text_tower.trainable_variables,
                 logit_scale]
    optimizer = keras.optimizers.Adam(0.05)

    def evaluate():
        images, texts = image_tower(image_features), text_tower(text_features)
        return float(contrastive_loss(images, texts, logit_scale)), retrieval_recall(
            images.numpy(), texts.numpy(), ks=(1,)
        )

    initial_loss, initial_recall = evaluate()
    for _ in range(40):
        with tf.GradientTape() as tape:
            loss = contrastive_loss(
                image_tower(image_features), text_tower(text_features), logit_scale
            )
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        clamp_logit_scale(logit_scale)
    final_loss, final_recall = evaluate()
    assert final_loss < 0.2 * initial_loss, (initial_loss, final_loss)
    assert initial_recall["image_to_text_recall@1"] < 0.3
    assert final_recall["image_to_text_recall@1"] > 0.9
    assert final_recall["text_to_image_recall@1"] > 0.9
