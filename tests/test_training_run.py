"""trainers/run.py end to end: stages chain, resume after SIGKILL, strategies."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from micro_model import micro_model_config
from micro_model import micro_model_path
from trainer_processes import assert_same_weights
from trainer_processes import h5_weights
from trainer_processes import kill_mid_epoch
from trainer_processes import latest_weights
from trainer_processes import run_on_two_cpus
from trainer_processes import run_trainer
from trainer_processes import run_two_workers
from trainer_processes import trainer_error

# The micro model: these runs pin mechanics (stages, resume, strategies).
QUICK = ["--dataset", "synthetic", "--num-examples", "48", "--batch-size", "8",
         "--quiet", "--seed", "1", "--model", micro_model_path()]


def _run(args, check=True, **kwargs):
    return run_trainer("run", args, check=check, **kwargs)


def test_help_explains_every_flag():
    out = _run(["--help"])
    for flag in ("--dataset", "--data-dir", "--manifest", "--val-manifest",
                 "--tasks", "--stage", "--model", "--clip-preset", "--variant",
                 "--epochs", "--warmup-epochs", "--batch-size", "--workdir",
                 "--strategy", "--mixed-precision", "--jit-compile", "--seed",
                 "--cache-features", "--learning-rate", "--weight-decay",
                 "--recipe", "--recipe-set", "--lr-schedule", "--warmup-steps",
                 "--clip-norm", "--early-stopping-patience", "--accumulate-steps",
                 "--steps-per-execution"):
        assert flag in out


@pytest.mark.large
def test_stages_chain_and_write_metrics(tmp_path):
    workdir = str(tmp_path / "run")
    out = _run([*QUICK, "--stage", "warmup", "--epochs", "1", "--workdir", workdir])
    assert "[warmup] Starting from the pretrained CLIP." in out
    out = _run([*QUICK, "--stage", "end2end", "--epochs", "0", "--workdir", workdir])
    assert "Starting from the best warmup checkpoint" in out
    # An end2end stage of 0 epochs leaves no checkpoint: tuning builds on
    # warm-up's, not on a fresh model.
    out = _run([*QUICK, "--stage", "tuning", "--epochs", "0", "--workdir", workdir])
    assert "No end2end checkpoint; Starting from the best warmup checkpoint" in out
    # With no end2end epochs, what it leaves is exactly warm-up's best model.
    import keras

    import cmaclip_tf.models  # noqa: F401  (registers the model classes)
    model = keras.models.load_model(os.path.join(workdir, "inference", "model.keras"))
    reference = keras.models.load_model(os.path.join(workdir, "inference", "model.keras"))
    reference.load_weights(os.path.join(workdir, "warmup", "best.weights.h5"))
    for a, b in zip(model.weights, reference.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with open(os.path.join(workdir, "metrics.json")) as f:
        metrics = json.load(f)
    for stage in ("warmup", "end2end"):
        for split in ("validation", "test"):
            for task in ("color", "pattern", "style"):
                values = metrics["stages"][stage][split][task]
                assert 0.0 <= values["accuracy"] <= 1.0
                assert 0.0 <= values["recall_at_90_precision"] <= values["accuracy"] + 1e-9
    assert "bad_records" in metrics
    tags = set()
    for path in glob.glob(os.path.join(workdir, "tensorboard", "warmup", "*", "*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags |= {value.tag for value in event.summary.value}
    for tag in ("loss/color", "learning_rate/fusion", "accuracy/style",
                "recall_at_90_precision/pattern", "image_weight/color",
                "attention_maps", "_hparams_/session_start_info"):
        assert tag in tags, tag


@pytest.mark.large  # A training run end to end.
def test_end2end_without_warmup_says_it_starts_from_clip(tmp_path):
    out = _run([*QUICK, "--stage", "end2end", "--epochs", "0",
                "--workdir", str(tmp_path / "run")])
    assert "No warmup checkpoint" in out and "pretrained CLIP" in out


def _dropout_config(tmp_path):
    """The micro model with dropout in the fusion transformer and the heads."""
    config = micro_model_config()
    config["fusion"]["dropout"] = 0.2
    config["head"]["dropout"] = 0.2
    path = str(tmp_path / "micro_dropout.json")
    with open(path, "w") as f:
        json.dump(config, f)
    return path


@pytest.mark.large
def test_sigkill_mid_epoch_resumes_without_repeating_epochs(tmp_path):
    # Dropout: the resumed run must draw the masks the uninterrupted one
    # draws (the random states are in the checkpoint). 2 steps per execution
    # and a checkpoint every 3 steps: executions of 2, 1, 2, 1 steps.
    args = [*QUICK, "--stage", "warmup", "--epochs", "3",
            "--model", _dropout_config(tmp_path),
            "--steps-per-execution", "2", "--checkpoint-every", "3"]
    killed = str(tmp_path / "killed")
    epoch, step = kill_mid_epoch("run", [*args, "--workdir", killed],
                                 os.path.join(killed, "warmup"))

    out = _run([*args, "--workdir", killed])
    assert "Resuming from" in out
    for finished in range(1, epoch + 1):
        assert f"Epoch {finished}/3" not in out
    assert f"Epoch {epoch + 1}/3" in out

    uninterrupted = str(tmp_path / "uninterrupted")
    _run([*args, "--workdir", uninterrupted])
    # CPU kernels and tf.data here are deterministic: the same result, at
    # the end (the best checkpoint may predate the kill) and at the best.
    assert_same_weights(latest_weights(os.path.join(killed, "warmup")),
                        latest_weights(os.path.join(uninterrupted, "warmup")),
                        atol=1e-6)
    assert_same_weights(
        h5_weights(os.path.join(killed, "warmup", "best.weights.h5")),
        h5_weights(os.path.join(uninterrupted, "warmup", "best.weights.h5")),
        atol=1e-6,
    )


@pytest.mark.large
def test_mirrored_over_two_cpu_devices_matches_one_device(tmp_path):
    args = [*QUICK, "--stage", "warmup", "--epochs", "1", "--steps-per-epoch", "3",
            "--steps-per-execution", "2", "--accumulate-steps", "2",
            "--clip-norm", "0.5", "--lr-schedule", "cosine", "--warmup-steps", "1"]
    mirrored = str(tmp_path / "mirrored")
    run_on_two_cpus("run", [*args, "--strategy", "mirrored",
                            "--workdir", mirrored])
    single = str(tmp_path / "single")
    _run([*args, "--strategy", "one_device", "--workdir", single])
    # Two replicas of 4 see the same global batch of 8 as one replica.
    assert_same_weights(latest_weights(os.path.join(mirrored, "warmup")),
                        latest_weights(os.path.join(single, "warmup")), atol=1e-5)
    # The best is the start (epoch 0) or the one epoch, the same on both.
    best = [json.load(open(os.path.join(w, "warmup", "best.json")))
            for w in (mirrored, single)]
    assert best[0]["epoch"] == best[1]["epoch"] in (0, 1)


def _scalars(workdir, stage, split, tag):
    """`{step: value}` of one TensorBoard scalar."""
    values = {}
    for path in glob.glob(os.path.join(workdir, "tensorboard", stage, split, "*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = float(tf.make_ndarray(value.tensor))
    return values


@pytest.mark.large
def test_float16_dropout_recipe_and_early_stopping_on_two_replicas(tmp_path):
    # A rate too small to move a float32 weight: no epoch beats the start,
    # so patience 2 stops the stage before its third epoch, and the run
    # says that it did not learn.
    workdir = str(tmp_path / "run")
    argv = [*QUICK, "--stage", "warmup", "--epochs", "4", "--steps-per-epoch", "3",
            "--model", _dropout_config(tmp_path), "--strategy", "mirrored",
            "--mixed-precision", "float16", "--steps-per-execution", "3",
            "--accumulate-steps", "2", "--learning-rate", "1e-12",
            "--warmup-steps", "2", "--early-stopping-patience", "2",
            "--recipe", "synthetic",
            "--recipe-set", "stages.warmup.learning_rate_multipliers.heads=0.5",
            "--workdir", workdir]
    out = run_on_two_cpus("run", argv)
    assert "Epoch 2/4" in out and "Epoch 3/4" not in out
    assert ("Early stop after epoch 2: no better validation score in 2 epochs "
            "(best: the start)") in out
    assert ("[warmup] Did not learn: no epoch beat the start on validation "
            "(score ") in out
    assert "in 12 steps at peak rates fusion 1e-12, modality_attention 1e-12, " \
        "heads 5e-13" in out
    training = json.load(open(os.path.join(workdir, "metrics.json")))[
        "stages"]["warmup"]["training"]
    assert training["learned"] is False and training["best_epoch"] == 0
    assert training["best_score"] == training["start_score"] >= 0
    recipe = json.load(open(os.path.join(workdir, "recipe.json")))
    warmup = recipe["stages"]["warmup"]
    assert recipe["name"] == "synthetic" and recipe["batch_size"] == 8
    assert warmup["epochs"] == 4 and warmup["early_stopping_patience"] == 2
    assert warmup["learning_rate_multipliers"] == {
        "clip": None, "fusion": 1.0, "modality_attention": 1.0, "heads": 0.5}
    # Logged once per execution (3 steps), at the next step's rate: linear
    # warm-up over 2 steps, then cosine over the remaining 10 of 12.
    for group, peak in (("fusion", 1e-12), ("heads", 0.5e-12)):
        rates = _scalars(workdir, "warmup", "train", f"learning_rate/{group}")
        assert sorted(rates) == [3, 6]
        for step, rate in rates.items():
            expected = peak * 0.5 * (1 + np.cos(np.pi * (step - 2) / 10))
            assert rate == pytest.approx(expected, rel=1e-5), (group, step)


@pytest.mark.large  # trainers/run.py in fresh processes.
def test_a_bad_recipe_value_is_one_line_and_leaves_no_workdir(tmp_path):
    workdir = tmp_path / "run"
    stderr = trainer_error("run", [
        *QUICK, "--recipe-set", "stages.end2end.schedule=linear",
        "--workdir", str(workdir)])
    assert stderr.startswith("error: Recipe: stages.end2end.schedule must be "
                                    "one of ('cosine', 'constant'); got 'linear'.")
    assert not workdir.exists()


@pytest.mark.large
def test_multi_worker_keeps_both_workers_identical(tmp_path):
    workdir = str(tmp_path / "mw")
    outputs = run_two_workers("run", [
        *QUICK, "--stage", "warmup", "--epochs", "1", "--steps-per-epoch", "2",
        "--strategy", "multi_worker", "--workdir", workdir])
    chief = latest_weights(os.path.join(workdir, "warmup"))
    worker = latest_weights(os.path.join(workdir, "warmup"), worker=1)
    assert_same_weights(chief, worker, atol=0.0)
    assert "[warmup] validation at the start" in outputs[0]
