"""The fine-tuning tools (issue 21, item 4): label smoothing, EMA of the
weights, training-only image augmentation, WiSE-FT, LoRA on CLIP, each
against a hand computation; and all of them through `trainers/run.py`."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from micro_model import micro_model_config
from micro_model import micro_model_path
from trainer_processes import latest_weights
from trainer_processes import run_on_two_cpus
from trainer_processes import run_trainer

from cmaclip_tf.datasets import load_dataset
from cmaclip_tf.inference.inference_bundle import load_inference_bundle
from cmaclip_tf.inference.inference_bundle import save_inference_bundle
from cmaclip_tf.losses import masked_cross_entropy_sum
from cmaclip_tf.losses import task_losses
from cmaclip_tf.models import create_cma_clip
from cmaclip_tf.models import load_clip
from cmaclip_tf.models.lora import enable_clip_lora
from cmaclip_tf.preprocessing.image_augmentation import ImageAugmentation
from trainers.training.input_data import RunData
from trainers.training.recipe import resolve_recipe
from trainers.training.stage_schedule import STAGES
from trainers.training.stage_trainer import StageTrainer
from trainers.training.wise_ft import DEFAULT_ALPHAS
from trainers.training.wise_ft import choose_alpha
from trainers.training.wise_ft import clip_weights

BATCH = 8
MODEL = micro_model_config()
QUICK = ["--dataset", "synthetic", "--num-examples", "48", "--batch-size", "8",
         "--quiet", "--seed", "1", "--model", micro_model_path()]


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic", num_examples=32, seed=0)


def _model(synthetic):
    return create_cma_clip(MODEL, synthetic.tasks.num_classes)


def _data(synthetic, clip, config, augmentation=None, seed=0):
    data = RunData(synthetic, seed=seed, augmentation=augmentation)
    data.prepare(clip, config)
    return data


def _values(variables):
    return [np.array(v.numpy()) for v in variables]


# --- Label smoothing. ---

def test_label_smoothing_is_the_cross_entropy_to_the_smoothed_target():
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [3.0, 0.0, 0.0]],
                      np.float32)
    labels = np.array([0, 2, -1])  # The last row has no label.
    eps = 0.2
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    target = (1 - eps) * np.eye(3)[[0, 2]] + eps / 3
    expected = -(target * log_p[:2]).sum()
    loss_sum, count = masked_cross_entropy_sum(logits, labels, label_smoothing=eps)
    np.testing.assert_allclose(float(loss_sum), expected, rtol=1e-6)
    assert float(count) == 2.0
    # The recipe's value reaches every task's ce; a robust loss refuses it.
    loss = task_losses("ce", ["color"], label_smoothing=eps)["color"]
    np.testing.assert_allclose(float(loss(logits, labels)[0]), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="ce loss only"):
        task_losses("gce", ["color"], label_smoothing=eps)


# --- EMA. ---

def test_ema_is_the_hand_computed_average_and_swaps_in_and_out(synthetic):
    model, clip, config = _model(synthetic)
    strategy = tf.distribute.get_strategy()
    trainer = StageTrainer(model, STAGES["tuning"], strategy, 1e-2, 0.0,
                           ema_decay=0.5)
    data = _data(synthetic, clip, config)
    variables = trainer._variables
    snapshots = [_values(variables)]
    iterator = iter(strategy.experimental_distribute_dataset(
        data.train_batches(0, BATCH)))
    for _ in range(2):
        trainer.run_steps(iterator, 1)
        snapshots.append(_values(variables))
    # Decay min(0.5, (1 + t) / (10 + t)): 0.1, then 2/11.
    average = snapshots[0]
    for t, weights in enumerate(snapshots[1:]):
        decay = min(0.5, (1 + t) / (10 + t))
        average = [decay * a + (1 - decay) * w for a, w in zip(average, weights)]
    ema = trainer.weight_average
    assert int(ema.num_updates) == 2
    with ema.swapped():
        for value, variable in zip(average, variables):
            np.testing.assert_allclose(variable.numpy(), value, rtol=1e-5,
                                       atol=1e-7)
    for value, variable in zip(snapshots[-1], variables):
        np.testing.assert_array_equal(variable.numpy(), value)
    assert not np.allclose(average[-1], snapshots[-1][-1])


# --- Augmentation. ---

def _images(dataset, batches=2):
    return np.concatenate([f["images"].numpy() for f, _ in dataset.take(batches)])


def test_augmentation_draws_per_example_epoch_and_seed():
    pixels = np.random.default_rng(0).uniform(0, 255, (32, 32, 3)).astype("float32")

    def draw(seed, epoch, position):
        augment = ImageAugmentation("crop", seed).for_epoch(epoch)
        return augment(tf.constant(pixels), tf.constant(position, tf.int64)).numpy()

    first = draw(0, 0, 5)
    assert 0.0 <= first.min() and first.max() <= 255.0
    assert np.abs(first - pixels).mean() > 1.0
    np.testing.assert_array_equal(first, draw(0, 0, 5))
    for other in (draw(1, 0, 5), draw(0, 1, 5), draw(0, 0, 6)):
        assert np.abs(other - first).mean() > 1.0


@pytest.mark.large
@pytest.mark.parametrize("kind", ["crop", "crop+randaugment"])
def test_augmentation_changes_training_images_only_and_replays_from_the_seed(
        synthetic, kind):
    clip, config = load_clip(MODEL["clip_preset"]), MODEL  # No model needed.
    plain = _data(synthetic, clip, config)
    augmented = _data(synthetic, clip, config, kind)
    train = _images(augmented.train_batches(0, BATCH))
    clean = _images(plain.train_batches(0, BATCH))
    # Every image changed, in CLIP's normalized range (-1.8 to 2.2).
    assert (np.abs(train - clean).reshape(len(train), -1).mean(-1) > 0.01).all()
    assert -2.0 < train.min() and train.max() < 2.3
    # The same seed draws the same, another epoch otherwise.
    again = _data(synthetic, clip, config, kind)
    np.testing.assert_array_equal(train, _images(again.train_batches(0, BATCH)))
    epoch_1 = _images(augmented.train_batches(1, BATCH), 1)
    assert not np.allclose(epoch_1, _images(plain.train_batches(1, BATCH), 1))
    # A resumed epoch draws what the whole one drew for the same examples.
    resumed = _images(augmented.train_batches(0, BATCH, skip_batches=1), 1)
    np.testing.assert_array_equal(resumed, train[BATCH:])
    # Evaluation is never augmented.
    np.testing.assert_array_equal(_images(augmented.eval_batches("validation", 4), 1),
                                  _images(plain.eval_batches("validation", 4), 1))


# --- WiSE-FT. ---

def test_wise_ft_interpolates_clip_only_and_keeps_the_best_alpha(synthetic, tmp_path):
    model, _, _ = _model(synthetic)
    start_path = str(tmp_path / "start.weights.h5")
    model.save_weights(start_path)
    clip = clip_weights(model)
    start = _values(clip)
    rng = np.random.default_rng(0)
    for variable in model.weights:  # "Fine-tuning" moves everything.
        if "float" in str(variable.dtype):
            variable.assign(variable.numpy() + rng.normal(0, 0.1, variable.shape))
    tuned_path = str(tmp_path / "best.weights.h5")
    model.save_weights(tuned_path)
    tuned = _values(clip)
    others = [v for v in model.weights if all(v is not c for c in clip)]
    tuned_others = _values(others)

    def distance_to(alpha):
        target = (1 - alpha) * start[0] + alpha * tuned[0]
        return lambda: -float(np.abs(clip[0].numpy() - target).sum())

    seen = {}
    for alpha in (0.0, 1.0):
        chosen, scores = choose_alpha(model, start_path, tuned_path,
                                      DEFAULT_ALPHAS, distance_to(alpha))
        assert chosen == alpha and scores[alpha] == pytest.approx(0.0, abs=1e-3)
        seen[alpha] = _values(clip)
        for value, variable in zip(tuned_others, others):  # Fusion, heads.
            np.testing.assert_array_equal(variable.numpy(), value)
    for a, b in zip(seen[0.0], start):
        np.testing.assert_allclose(a, b, atol=1e-6)
    for a, b in zip(seen[1.0], tuned):
        np.testing.assert_allclose(a, b, atol=1e-6)
    chosen, scores = choose_alpha(model, start_path, tuned_path, DEFAULT_ALPHAS,
                                  distance_to(0.25))
    assert chosen == 0.25 and max(scores, key=scores.get) == 0.25
    np.testing.assert_allclose(clip[0].numpy(), 0.75 * start[0] + 0.25 * tuned[0],
                               atol=1e-6)


# --- LoRA. ---

@pytest.mark.large  # A training run end to end.
def test_lora_trains_only_its_factors_and_the_bundle_carries_them(synthetic,
                                                                  tmp_path):
    model, clip, config = _model(synthetic)
    layers = enable_clip_lora(model, 2)
    # Query and value of every attention layer of both towers.
    vision, text = (MODEL["clip_architecture"][t]["num_layers"]
                    for t in ("vision", "text"))
    assert len(layers) == 2 * (vision + text)
    clip_group = model.module_groups()["clip"]
    assert sorted(v.path.split("/")[-1] for v in clip_group) == sorted(
        ["lora_kernel_a", "lora_kernel_b"] * len(layers))
    frozen = [v for v in clip_weights(model) if "lora" not in v.path]
    before = _values(frozen)
    trainer = StageTrainer(model, STAGES["end2end"], tf.distribute.get_strategy(),
                           1e-2, 0.0)
    assert trainer._variables[:len(clip_group)] == clip_group
    data = _data(synthetic, clip, config)
    b_before = layers[0].lora_kernel_b.numpy().copy()
    strategy = tf.distribute.get_strategy()
    trainer.train_steps(
        strategy.experimental_distribute_dataset(data.train_batches(0, BATCH)), 2)
    for value, variable in zip(before, frozen):
        np.testing.assert_array_equal(variable.numpy(), value)
    assert not np.array_equal(layers[0].lora_kernel_b.numpy(), b_before)
    # Saved merged: the reloaded model (no LoRA) computes the same outputs.
    save_inference_bundle(str(tmp_path / "bundle"), model, clip.tokenizer,
                          clip.image_converter, data.tasks,
                          config["sequence_length"])
    bundle = load_inference_bundle(str(tmp_path / "bundle"))
    features, _ = next(iter(data.eval_batches("validation", 4)))
    expected = model(features, training=False)
    actual = bundle.model(features, training=False)
    assert not any(getattr(layer, "lora_enabled", False)
                   for layer in bundle.model._flatten_layers())
    for key, value in expected.items():
        np.testing.assert_allclose(actual[key].numpy(), value.numpy(), atol=1e-5)


# --- Recipe and command line. ---

def test_tools_are_off_by_default_and_checked():
    recipe = resolve_recipe("synthetic")
    assert recipe["augmentation"] is None and recipe["label_smoothing"] == 0.0
    for stage in recipe["stages"].values():
        assert (stage["ema_decay"], stage["wise_ft"], stage["lora_rank"]) == (
            None, False, None)
    with pytest.raises(ValueError, match="warmup.lora_rank acts on CLIP"):
        resolve_recipe("synthetic", {"stages.warmup.lora_rank": 4})
    with pytest.raises(ValueError, match="ema_decay must be a number in"):
        resolve_recipe("synthetic", {"stages.*.ema_decay": 1.0})
    with pytest.raises(ValueError, match="augmentation must be"):
        resolve_recipe("synthetic", {"augmentation": "flip"})
    with pytest.raises(ValueError, match="label_smoothing 0.1 applies to the "
                       "ce loss only"):
        resolve_recipe("synthetic", {"loss": "gce", "label_smoothing": 0.1})


@pytest.mark.large
def test_run_with_every_tool_exports_the_average_and_the_chosen_alpha(tmp_path):
    workdir = str(tmp_path / "run")
    out = run_trainer("run", [
        *QUICK, "--warmup-epochs", "0", "--end2end-epochs", "1",
        "--tuning-epochs", "1", "--workdir", workdir, "--ema-decay", "0.9",
        "--augment", "crop", "--label-smoothing", "0.1",
        "--wise-ft", "--lora-rank", "2", "--cache-features"])
    assert "[warmup] No feature cache: it would hold un-augmented" in out
    assert "[end2end] LoRA rank 2 on CLIP's query and value projections" in out
    assert "[end2end] validation (EMA)" in out
    assert "WiSE-FT, validation score by α" in out
    recipe = json.load(open(os.path.join(workdir, "recipe.json")))
    assert recipe["stages"]["end2end"]["lora_rank"] == 2
    assert recipe["stages"]["warmup"]["lora_rank"] is None
    metrics = json.load(open(os.path.join(workdir, "metrics.json")))
    wise = metrics["stages"]["end2end"]["wise_ft"]
    scores = wise["validation_scores"]
    assert sorted(scores) == ["0", "0.25", "0.5", "0.75", "1"]
    assert scores[f"{wise['alpha']:g}"] == max(scores.values())
    # The exported tuning model is its best checkpoint: the EMA (what
    # validation scored), not its last raw weights, when its epoch beat the
    # stage's start; otherwise the start itself, and the run says so.
    if metrics["stages"]["tuning"]["training"]["best_epoch"] == 0:
        assert "[tuning] Did not learn" in out
        return
    import keras

    import cmaclip_tf.models  # noqa: F401  (registers the model classes)
    exported = keras.models.load_model(os.path.join(workdir, "inference",
                                                    "model.keras"))
    checkpoint = tf.train.load_checkpoint(os.path.join(workdir, "tuning", "latest"))
    names = checkpoint.get_variable_to_shape_map()
    shadows = [checkpoint.get_tensor(n) for n in names
               if n.startswith("weight_average/shadows/")]
    assert shadows
    weights = [w.numpy() for w in exported.weights]
    raw = latest_weights(os.path.join(workdir, "tuning"))
    for shadow in shadows:
        assert any(w.shape == shadow.shape and np.allclose(w, shadow, atol=1e-6)
                   for w in weights)
    assert not all(any(r.shape == s.shape and np.allclose(r, s, atol=1e-6)
                       for r in raw.values()) for s in shadows)


@pytest.mark.large
def test_ema_on_two_mirrored_replicas_matches_one_device(tmp_path):
    args = [*QUICK, "--stage", "warmup", "--epochs", "1", "--steps-per-epoch", "3",
            "--ema-decay", "0.5"]
    mirrored, single = str(tmp_path / "mirrored"), str(tmp_path / "single")
    run_on_two_cpus("run", [*args, "--strategy", "mirrored", "--workdir", mirrored])
    run_trainer("run", [*args, "--strategy", "one_device", "--workdir", single])
    readers = [tf.train.load_checkpoint(os.path.join(w, "warmup", "latest"))
               for w in (mirrored, single)]
    names = [n for n in readers[0].get_variable_to_shape_map()
             if n.startswith("weight_average/")]
    assert len(names) > 10
    for name in names:
        np.testing.assert_allclose(readers[0].get_tensor(name),
                                   readers[1].get_tensor(name), atol=1e-5)
