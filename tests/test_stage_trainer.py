"""Stage semantics of the training loop: what trains, what stays bit-identical."""

import numpy as np
import pytest
import tensorflow as tf

from cmaclip_tf.datasets import load_dataset
from cmaclip_tf.models import create_cma_clip
from trainers.input_data import RunData
from trainers.stage_schedule import STAGES
from trainers.stage_trainer import StageTrainer

BATCH = 16


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic", num_examples=64, seed=0)


def _setup(synthetic, stage, variant="full"):
    strategy = tf.distribute.get_strategy()
    model, clip, config = create_cma_clip(
        "tiny", synthetic.tasks.num_classes, variant=variant
    )
    data = RunData(synthetic, seed=0)
    data.prepare(clip, config)
    trainer = StageTrainer(model, STAGES[stage], strategy, 1e-3, 1e-4)
    return model, data, trainer, strategy


def _snapshot(variables):
    return [np.array(v.numpy()) for v in variables]


def _changed(before, variables):
    return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables)]


def _train(data, trainer, strategy, steps=2, cached=None):
    dataset = data.train_batches(0, BATCH, cached=cached)
    return trainer.train_steps(strategy.experimental_distribute_dataset(dataset), steps)


# Paper, Algorithm 1: the groups each frozen-CLIP stage trains.
TRAINED_GROUPS = {
    "warmup": ["fusion", "heads", "modality_attention"],
    "tuning": ["heads", "modality_attention"],
}


@pytest.mark.parametrize("stage", sorted(TRAINED_GROUPS))
def test_a_stage_trains_its_groups_and_leaves_the_rest_bit_identical(synthetic, stage):
    model, data, trainer, strategy = _setup(synthetic, stage)
    groups = model.module_groups()
    before = {g: _snapshot(v) for g, v in groups.items()}
    _train(data, trainer, strategy)
    for group, variables in groups.items():
        changed = _changed(before[group], variables)
        if group not in TRAINED_GROUPS[stage]:
            assert not any(changed), group
        elif group == "modality_attention":
            assert all(changed)  # Every task's w.
        else:
            assert any(changed), group
    # Frozen means no optimizer state either.
    assert sorted(trainer.optimizers) == TRAINED_GROUPS[stage]


def test_end2end_trains_clip_too(synthetic):
    model, data, trainer, strategy = _setup(synthetic, "end2end")
    clip = model.module_groups()["clip"]
    before = _snapshot(clip)
    _train(data, trainer, strategy, steps=1)
    assert sum(_changed(before, clip)) > len(clip) // 2


@pytest.mark.parametrize("stage", ["warmup", "tuning"])
def test_cached_features_train_exactly_like_the_uncached_path(
    synthetic, stage, tmp_path
):
    model, data, trainer, strategy = _setup(synthetic, stage)
    initial = _snapshot(model.variables)
    raw_losses = _train(data, trainer, strategy, steps=3)
    raw_weights = _snapshot(model.variables)

    model_2, data_2, trainer_2, _ = _setup(synthetic, stage)
    for variable, value in zip(model_2.variables, initial):
        variable.assign(value)
    cached = data_2.cache_features(trainer_2, BATCH, str(tmp_path / "cache"))
    depth = "embeddings" if stage == "tuning" else "clip_features"
    assert trainer_2.input_depth == depth
    cached_losses = _train(data_2, trainer_2, strategy, steps=3, cached=cached)
    for task in raw_losses:
        assert cached_losses[task] == pytest.approx(raw_losses[task], abs=1e-5)
    for a, b in zip(raw_weights, model_2.variables):
        np.testing.assert_allclose(b.numpy(), a, atol=1e-5)


def test_unlabelled_examples_add_no_gradient(synthetic):
    model, data, trainer, strategy = _setup(synthetic, "tuning")
    features, labels = next(iter(data.train_batches(0, BATCH)))
    counts = {t: tf.reduce_sum(tf.cast(labels[t] >= 0, tf.float32)) for t in labels}
    # Without any style label, the style head gets zero gradient.
    unlabelled = dict(labels, style=-tf.ones_like(labels["style"]))
    counts["style"] = tf.constant(0.0)
    losses, gradients = trainer._loss_and_gradients(features, unlabelled, counts)
    assert float(losses["style"]) == 0.0
    style_head = {id(v) for v in model.heads[2].trainable_variables}
    for variable, gradient in zip(trainer._variables, gradients):
        if id(variable) in style_head:
            assert gradient is None or float(tf.reduce_max(tf.abs(gradient))) == 0.0


def test_score_thresholds_on_a_hand_made_case():
    from trainers.evaluation import score_thresholds

    # Top-1 scores 0.9 (right), 0.8 (right), 0.7 (wrong), 0.6 (right); one
    # unlabelled row that must not count.
    probabilities = np.array(
        [[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6], [0.95, 0.05]]
    )
    predictions = {
        "color_probabilities": probabilities,
        "color_label": np.array([0, 1, 1, 1, -1]),
        "color_image_weight": np.zeros(5),
        "style_probabilities": probabilities[:2],
        "style_label": np.array([1, 0]),  # Both wrong.
        "style_image_weight": np.zeros(2),
    }
    thresholds = score_thresholds(predictions, ["color", "style"], precision=0.75)
    # Emitting down to 0.6 gives 3/4 = 0.75 precision, the most recall.
    assert thresholds["color"] == pytest.approx(0.6)
    assert thresholds["style"] is None


def test_each_task_trains_with_its_own_loss(synthetic):
    from cmaclip_tf.losses import masked_cross_entropy_sum
    from cmaclip_tf.losses import masked_generalized_cross_entropy_sum
    from cmaclip_tf.losses import task_losses

    model, data, _, strategy = _setup(synthetic, "tuning")
    trainer = StageTrainer(
        model, STAGES["tuning"], strategy, 1e-3, 1e-4,
        task_losses=task_losses({"color": {"name": "gce", "q": 0.5}}, model.tasks,
                                default="ce"),
    )
    features, labels = next(iter(data.train_batches(0, BATCH)))
    counts = {t: tf.reduce_sum(tf.cast(labels[t] >= 0, tf.float32)) for t in labels}
    losses, _ = trainer._loss_and_gradients(features, labels, counts)
    outputs = trainer._forward(features, training=False)  # No dropout in tiny.
    gce, _ = masked_generalized_cross_entropy_sum(
        outputs["color_logits"], labels["color"], q=0.5)
    ce, _ = masked_cross_entropy_sum(outputs["style_logits"], labels["style"])
    assert float(losses["color"]) == pytest.approx(float(gce) / BATCH, rel=1e-5)
    assert float(losses["style"]) == pytest.approx(float(ce) / BATCH, rel=1e-5)
