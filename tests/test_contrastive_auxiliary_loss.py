"""--contrastive-weight: the loss is classification + α × the image-title
InfoNCE (checked against the library loss on CLIP's own embeddings), only in
stages where CLIP trains; and trainers/run.py logs it."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from micro_model import micro_model_config
from micro_model import micro_model_path
from trainer_processes import assert_same_weights
from trainer_processes import latest_weights
from trainer_processes import run_on_two_cpus
from trainer_processes import run_trainer
from trainer_processes import tensorboard_scalars

from cmaclip_tf.datasets import load_dataset
from cmaclip_tf.losses import contrastive_loss
from cmaclip_tf.models import create_cma_clip
from trainers.training.input_data import RunData
from trainers.training.stage_schedule import STAGES
from trainers.training.stage_trainer import StageTrainer

BATCH = 16
ALPHA = 0.5


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic", num_examples=32, seed=0)


def _trainer(synthetic, stage, variant, alpha):
    keras.utils.set_random_seed(0)  # The same initial model for every α.
    model, clip, config = create_cma_clip(
        micro_model_config(), synthetic.tasks.num_classes, variant=variant)
    data = RunData(synthetic, seed=0)
    data.prepare(clip, config)
    trainer = StageTrainer(model, STAGES[stage], tf.distribute.get_strategy(),
                           1e-3, 1e-4, contrastive_weight=alpha)
    features, labels = next(iter(data.train_batches(0, BATCH)))
    return model, trainer, features, labels


def _dense(gradient):
    """A gradient as a numpy array (the token embeddings' is sparse)."""
    return tf.convert_to_tensor(gradient).numpy()


@pytest.mark.parametrize("variant", ["full", "no_ma_sa"])
def test_total_loss_is_classification_plus_alpha_infonce(synthetic, variant):
    model, trainer, features, labels = _trainer(
        synthetic, "end2end", variant, ALPHA)
    counts = {t: tf.constant(float(BATCH)) for t in labels}  # All labelled.
    losses, gradients = trainer._loss_and_gradients(features, labels, counts)

    # Independently: the model on raw inputs, plain cross-entropy, and the
    # library InfoNCE on CLIP's `get_*_embeddings` (keras-hub's pooling).
    backbone = model.clip_backbone
    with tf.GradientTape() as tape:
        outputs = model(features, training=True)  # No dropout in tiny.
        classification = {
            task: tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels[task], outputs[f"{task}_logits"]))
            for task in labels
        }
        infonce = contrastive_loss(
            backbone.get_vision_embeddings(features["images"]),
            backbone.get_text_embeddings(features["token_ids"]),
            backbone.clip_head.logit_scale,
        )
        total = tf.add_n(list(classification.values())) + ALPHA * infonce
    expected = tape.gradient(total, trainer._variables)

    for task, value in classification.items():
        assert float(losses[task]) == pytest.approx(float(value), rel=1e-5)
    assert trainer.contrastive_loss() == pytest.approx(float(infonce), rel=1e-5)
    # The InfoNCE moves CLIP's encoders; gradients match the total's.
    assert float(infonce) > 0.1
    for variable, got, want in zip(trainer._variables, gradients, expected):
        np.testing.assert_allclose(_dense(got), _dense(want), atol=2e-5,
                                   rtol=1e-4, err_msg=variable.path)


@pytest.mark.large  # Two end2end steps on the tiny CLIP.
def test_alpha_changes_the_clip_gradients_by_alpha_times_the_infonce(
        synthetic):
    """Doubling α adds one more InfoNCE gradient, nothing else."""
    grads = {}
    for alpha in (0.0, ALPHA, 2 * ALPHA):
        model, trainer, features, labels = _trainer(
            synthetic, "end2end", "full", alpha)
        counts = {t: tf.constant(float(BATCH)) for t in labels}
        _, gradients = trainer._loss_and_gradients(features, labels, counts)
        grads[alpha] = [_dense(g) for g in gradients]
    differences = [
        (b - a, c - b) for a, b, c in
        zip(grads[0.0], grads[ALPHA], grads[2 * ALPHA])
    ]
    assert any(np.abs(first).max() > 1e-4 for first, _ in differences)
    for first, second in differences:
        np.testing.assert_allclose(first, second, atol=2e-5)


def test_no_auxiliary_loss_where_clip_is_frozen(synthetic):
    _, trainer, _, _ = _trainer(synthetic, "warmup", "full", ALPHA)
    assert trainer.contrastive_weight == 0.0
    assert trainer.contrastive_loss() is None


def _train_scalars(workdir):
    """The last value of each train scalar of the end2end stage."""
    scalars = tensorboard_scalars(
        os.path.join(workdir, "tensorboard", "end2end", "train"))
    return {tag: values[-1] for tag, values in scalars.items()}


@pytest.mark.large
def test_run_logs_it_and_two_replicas_compute_the_global_batch_s(tmp_path):
    # One step: its losses are computed before any update.
    args = ["--dataset", "synthetic", "--num-examples", "32", "--batch-size",
            "8", "--stage", "end2end", "--epochs", "1", "--steps-per-epoch",
            "1", "--contrastive-weight", "0.3", "--quiet", "--seed", "1",
            "--model", micro_model_path()]
    single, mirrored = str(tmp_path / "single"), str(tmp_path / "mirrored")
    run_trainer("run", [*args, "--strategy", "one_device", "--workdir", single])
    run_on_two_cpus("run", [*args, "--strategy", "mirrored",
                            "--workdir", mirrored])
    scalars = _train_scalars(single)
    classification = sum(scalars[f"loss/{t}"]
                         for t in ("color", "pattern", "style"))
    assert scalars["loss/contrastive"] > 0.1
    assert scalars["loss/total"] == pytest.approx(
        classification + 0.3 * scalars["loss/contrastive"], rel=1e-5)
    # Two replicas of 4: the InfoNCE of the global batch of 8, not of 4.
    two = _train_scalars(mirrored)
    for tag in ("loss/contrastive", "loss/color", "loss/total"):
        assert two[tag] == pytest.approx(scalars[tag], abs=1e-5), tag
    # After the step, the weights agree up to Adam's float noise (its first
    # step is ~lr * sign(g)); not the token embeddings, whose sparse
    # gradient Keras's Adam squares per slice, so per replica.
    weights = {k: v for k, v in latest_weights(
        os.path.join(single, "end2end")).items() if "token_embedding" not in k}
    others = latest_weights(os.path.join(mirrored, "end2end"))
    assert_same_weights(weights, {k: others[k] for k in weights}, atol=1e-4)
