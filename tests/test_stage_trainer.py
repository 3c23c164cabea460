"""Stage semantics of the training loop: what trains, what stays bit-identical."""

import numpy as np
import pytest
import tensorflow as tf
from micro_model import micro_model_config

from cmaclip_tf.datasets import load_dataset
from cmaclip_tf.models import create_cma_clip
from trainers.training.input_data import RunData
from trainers.training.stage_schedule import STAGES
from trainers.training.stage_trainer import StageTrainer

BATCH = 16
MODEL = micro_model_config()  # Mechanics, not accuracy: one layer is enough.


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic", num_examples=64, seed=0)


def _setup(synthetic, stage, variant="full"):
    strategy = tf.distribute.get_strategy()
    model, clip, config = create_cma_clip(
        MODEL, synthetic.tasks.num_classes, variant=variant
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


@pytest.mark.parametrize("stage", [
    pytest.param(stage, marks=[pytest.mark.large] if stage == "tuning" else [])
    for stage in sorted(TRAINED_GROUPS)])
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


@pytest.mark.large  # Two stages run twice; FeatureCache itself: test_feature_cache.py.
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
    from trainers.training.evaluation import score_thresholds

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


# --- The loop's options: accumulation, clipping, weight decay, schedules,
# --- float16, and all of them on two replicas.

def _one_batch(data, size, tasks_without_labels=()):
    """`size` examples, some labels missing, as numpy."""
    features, labels = next(iter(data.train_batches(0, size)))
    labels = {t: v.numpy().copy() for t, v in labels.items()}
    labels["style"][: size // 3] = -1  # Unequal counts across micro-batches.
    for task in tasks_without_labels:
        labels[task][:] = -1
    return {k: v.numpy() for k, v in features.items()}, labels


def _trainer(model, stage="tuning", learning_rate=1.0, weight_decay=0.0, **options):
    return StageTrainer(model, STAGES[stage], tf.distribute.get_strategy(),
                        learning_rate, weight_decay, **options)


def _steps(trainer, features, labels, batch_size, steps):
    dataset = tf.data.Dataset.from_tensor_slices((features, labels)).batch(batch_size)
    strategy = trainer.strategy
    return trainer.train_steps(strategy.experimental_distribute_dataset(dataset), steps)


def _adam_first_step(weight, gradient, learning_rate, epsilon, beta_2=0.999):
    """Keras's AdamW after one step from zero moments (no weight decay)."""
    root = np.sqrt(1 - beta_2)
    return weight - learning_rate * root * gradient / (root * np.abs(gradient) + epsilon)


@pytest.mark.large  # Two batches, whole and in micro-batches, per case.
@pytest.mark.parametrize("batch,parts", [(16, 4), (7, 3)])
def test_k_micro_batches_update_as_one_batch_of_k_times_the_size(synthetic, batch, parts):
    # 2 steps of 16 examples, as 4 micro-batches of 4 or at once (or of 7,
    # which 3 does not divide: micro-batches of 2, 2 and 3, no row left out);
    # Adam with a large epsilon, so the update follows the gradient's size
    # (with the default one, a gradient off by a factor K would go unseen).
    model, data, _, _ = _setup(synthetic, "tuning")
    features, labels = _one_batch(data, 32)
    features = {k: v[:2 * batch] for k, v in features.items()}
    labels = {k: v[:2 * batch] for k, v in labels.items()}
    initial = _snapshot(model.weights)
    results = []
    for accumulate in (1, parts):
        for variable, value in zip(model.weights, initial):
            variable.assign(value)
        trainer = _trainer(model, accumulate_steps=accumulate,
                           optimizer_options={"epsilon": 1.0})
        losses = _steps(trainer, features, labels, batch, 2)
        results.append((_snapshot(model.weights), losses))
    (whole, whole_losses), (accumulated, accumulated_losses) = results
    moved = max(np.max(np.abs(w - i)) for w, i in zip(whole, initial))
    assert moved > 1e-3
    for a, b in zip(accumulated, whole):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for task in whole_losses:
        assert accumulated_losses[task] == pytest.approx(whole_losses[task], abs=1e-5)


@pytest.mark.large  # A step of every group.
def test_clipping_scales_all_groups_by_one_global_norm(synthetic):
    model, data, _, _ = _setup(synthetic, "tuning")
    features, labels = _one_batch(data, BATCH)
    counts = {t: tf.reduce_sum(tf.cast(labels[t] >= 0, tf.float32)) for t in labels}
    trainer = _trainer(model, optimizer_options={"epsilon": 1e-3})
    _, gradients = trainer._loss_and_gradients(features, labels, counts)
    gradients = [g.numpy() for g in gradients]
    norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in gradients))
    clip = norm / 4  # Binds.
    before = [v.numpy() for v in trainer._variables]
    trainer = _trainer(model, learning_rate=0.1, clip_norm=clip,
                       optimizer_options={"epsilon": 1e-3})
    _steps(trainer, features, labels, BATCH, 1)
    # Both groups (modality attention, heads) scaled by the same factor:
    # clipping per group would scale the small modality-attention gradient
    # less, or not at all.
    for weight, gradient, variable in zip(before, gradients, trainer._variables):
        expected = _adam_first_step(weight, gradient * clip / norm, 0.1, 1e-3)
        np.testing.assert_allclose(variable.numpy(), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.large  # A stage of every group; the rule itself: test_fused_adamw.py.
def test_weight_decay_skips_layer_norm_scales_biases_and_the_attention_vector(synthetic):
    model, data, _, _ = _setup(synthetic, "end2end")
    # No labels: zero gradients, so Adam moves nothing and only decay acts.
    features, labels = _one_batch(data, BATCH, tasks_without_labels=model.tasks)
    trainer = _trainer(model, stage="end2end", learning_rate=0.1, weight_decay=0.5)
    for variable in trainer._variables:
        variable.assign(variable + 0.5)  # Nothing starts at zero.
    before = {id(v): v.numpy() for v in trainer._variables}
    _steps(trainer, features, labels, BATCH, 1)
    decayed, kept = 0, 0
    for variable in trainer._variables:
        name = variable.path
        vector = len(variable.shape) < 2
        factor = 1.0 if vector else 1 - 0.1 * 0.5
        np.testing.assert_allclose(variable.numpy(), before[id(variable)] * factor,
                                   rtol=1e-6, err_msg=name)
        if vector:
            kept += 1
        else:
            decayed += 1
    # Every LayerNorm scale and bias, every bias, each task's w, CLIP's
    # class embedding; every kernel and embedding matrix decays.
    names = [v.path for v in trainer._variables if len(v.shape) < 2]
    assert any("modality_attention" in n for n in names)
    assert any("gamma" in n or "scale" in n for n in names)
    assert kept > 10 and decayed > 10


def test_each_group_follows_warmup_then_cosine_at_its_multiplier(synthetic):
    from trainers.training.learning_rate_schedule import WarmupSchedule
    from trainers.training.stage_schedule import StageSchedule

    model, data, _, _ = _setup(synthetic, "tuning")
    features, labels = _one_batch(data, 48)
    schedule = StageSchedule("tuning", {"clip": None, "fusion": None,
                                        "modality_attention": 0.1, "heads": 1.0})
    trainer = StageTrainer(
        model, schedule, tf.distribute.get_strategy(), 2e-3, 0.0,
        learning_rate_schedule=WarmupSchedule(total_steps=6, warmup_steps=2),
        steps_per_execution=4,
    )
    seen = []
    dataset = tf.data.Dataset.from_tensor_slices((features, labels)).batch(8)
    trainer.train_steps(trainer.strategy.experimental_distribute_dataset(dataset), 6,
                        on_step=lambda step, _: seen.append((step, trainer.learning_rates)))
    # Executions end after steps 4 and 6; the rate then is the next step's:
    # step 4 of 6 is cosine at (4 - 2) / 4 of its way down, step 6 is past it.
    assert [step for step, _ in seen] == [3, 5]
    for (_, rates), fraction in zip(seen, (0.5 * (1 + np.cos(np.pi * 2 / 4)), 0.0)):
        assert rates["heads"] == pytest.approx(2e-3 * fraction, abs=1e-9)
        assert rates["modality_attention"] == pytest.approx(2e-4 * fraction, abs=1e-10)


def test_an_overflow_in_one_group_skips_every_group_under_float16(synthetic):
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model, clip, config = create_cma_clip(MODEL, synthetic.tasks.num_classes)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    trainer = _trainer(model, learning_rate=1e-2)
    assert trainer.loss_scaling and sorted(trainer.optimizers) == [
        "heads", "modality_attention"]
    before = _snapshot(trainer._variables)
    gradients = [tf.ones_like(v) for v in trainer._variables]
    gradients[-1] = gradients[-1] * np.inf  # The last head's bias only.
    trainer._apply_gradients(gradients)
    assert not any(_changed(before, trainer._variables))
    scales = [float(o.dynamic_scale.numpy()) for o in trainer.optimizers.values()]
    assert scales == [2.0**14, 2.0**14]  # Both halved from 2**15.
    trainer._apply_gradients([tf.ones_like(v) for v in trainer._variables])
    assert all(_changed(before, trainer._variables))


@pytest.mark.large
def test_loop_options_on_two_replicas_match_one_device():
    import json
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, os.path.join(repo, "tests", "stage_trainer_two_replicas.py")],
        env=dict(os.environ, PYTHONPATH=repo, TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout)
    # 2 steps per execution and 2 micro-batches per step on 2 replicas,
    # clipped by the global norm: the one-device reference's update.
    run = results["mirrored_clipped_accumulate_2"]
    assert run["moved"] > 0.05
    assert run["weights_difference"] < 1e-5
    assert run["loss_difference"] < 1e-5
    assert run["steps_run"] == 3
    # Lower precision: close to float32, and float16's loss scales stay equal.
    float16 = results["mirrored_float16"]
    assert float16["weights_difference"] < 0.01 * float16["moved"]
    assert float16["loss_scales"] == [2.0**15] * 3
    # bfloat16, asked for 3 steps in one execution on 2 batches: 2 ran.
    bfloat16 = results["mirrored_bfloat16_data_ends"]
    assert bfloat16["steps_run"] == 2
    assert bfloat16["weights_difference"] < 0.05 * bfloat16["moved"]
