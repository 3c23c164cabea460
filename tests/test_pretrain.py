"""trainers/pretrain.py end to end: one device, two replicas, two workers,
resume after SIGKILL, the shipped command at CI size, and zero-shot
classification by a CLIP pretrained on a manifest of someone else's pairs."""

import json
import os

import numpy as np
import pytest
from fixtures_data import write_shape_captions
from trainer_processes import assert_same_weights
from trainer_processes import h5_weights
from trainer_processes import kill_mid_epoch
from trainer_processes import latest_weights
from trainer_processes import run_on_two_cpus
from trainer_processes import run_trainer
from trainer_processes import run_two_workers
from trainer_processes import trainer_error

# The generated caption corpus, from the random tiny CLIP, in a few steps.
QUICK = ["--dataset", "caption_corpus", "--num-examples", "48", "--batch-size",
         "8", "--clip-preset", "tiny_clip", "--quiet", "--seed", "1"]


def _pretrain(args, **kwargs):
    return run_trainer("pretrain", args, **kwargs)


def _stage(workdir):
    return os.path.join(workdir, "contrastive")


def _metrics(workdir):
    with open(os.path.join(workdir, "metrics.json")) as f:
        return json.load(f)["stages"]["contrastive"]


def test_help_explains_every_flag():
    out = _pretrain(["--help"])
    for flag in ("--dataset", "--manifest", "--val-manifest", "--num-examples",
                 "--clip-preset", "--workdir", "--epochs", "--batch-size",
                 "--learning-rate", "--weight-decay", "--seed", "--strategy",
                 "--checkpoint-every"):
        assert flag in out


def test_a_missing_manifest_is_one_line_and_writes_nothing(tmp_path):
    error = trainer_error("pretrain", ["--manifest", str(tmp_path / "none.csv"),
                                       "--workdir", str(tmp_path / "w")])
    assert error.startswith("error: Manifest ") and "none.csv not found" in error
    assert "Traceback" not in error
    assert not os.path.exists(tmp_path / "w")


@pytest.mark.large
def test_one_device_writes_a_preset_load_clip_reads(tmp_path):
    import keras

    from cmaclip_tf.models import load_clip

    workdir = str(tmp_path / "run")
    out = _pretrain([*QUICK, "--epochs", "2", "--workdir", workdir])
    assert "validation at the start" in out and "Epoch 2/2" in out
    preset = os.path.join(workdir, "preset")
    clip = load_clip(preset)
    # The preset holds the best epoch's weights.
    best = h5_weights(os.path.join(_stage(workdir), "best.weights.h5"))
    reference = load_clip("tiny_clip").backbone
    reference.load_weights(os.path.join(_stage(workdir), "best.weights.h5"))
    for a, b in zip(clip.backbone.weights, reference.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b))
    assert best  # A real weights file.
    with open(os.path.join(preset, "training.json")) as f:
        training = json.load(f)
    assert training["command"].startswith("python trainers/pretrain.py ")
    assert training["flags"]["seed"] == 1
    assert training["validation"] == _metrics(workdir)
    import tensorflow as tf

    tags = set()
    for path in tf.io.gfile.glob(os.path.join(workdir, "tensorboard",
                                              "contrastive", "*", "*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags |= {value.tag for value in event.summary.value}
    for tag in ("loss/contrastive", "logit_scale", "learning_rate/clip",
                "image_to_text_recall@1", "text_to_image_recall@5"):
        assert tag in tags, tag


@pytest.mark.large
def test_mirrored_over_two_cpus_is_one_device_on_the_global_batch(tmp_path):
    args = [*QUICK, "--epochs", "1", "--steps-per-epoch", "2"]
    mirrored, single = str(tmp_path / "mirrored"), str(tmp_path / "single")
    run_on_two_cpus("pretrain", [*args, "--strategy", "mirrored",
                                 "--workdir", mirrored])
    _pretrain([*args, "--strategy", "one_device", "--workdir", single])
    # Two replicas of 4 contrast every image with all 8 texts, as one device
    # does; a per-replica loss (4 x 4 logits) would give other weights.
    assert_same_weights(latest_weights(_stage(mirrored)),
                        latest_weights(_stage(single)), atol=1e-5)


@pytest.mark.large
def test_two_workers_are_one_device_on_the_global_batch(tmp_path):
    args = [*QUICK, "--epochs", "1", "--steps-per-epoch", "2"]
    workdir, single = str(tmp_path / "mw"), str(tmp_path / "single")
    outputs = run_two_workers("pretrain", [*args, "--strategy", "multi_worker",
                                           "--workdir", workdir])
    _pretrain([*args, "--strategy", "one_device", "--workdir", single])
    chief = latest_weights(_stage(workdir))
    assert_same_weights(chief, latest_weights(_stage(workdir), worker=1))
    assert_same_weights(chief, latest_weights(_stage(single)), atol=1e-5)
    assert "preset:" in outputs[0] and "preset:" not in outputs[1]
    assert os.path.isfile(os.path.join(workdir, "preset", "model.weights.h5"))


@pytest.mark.large
def test_sigkill_mid_epoch_resumes_to_the_same_preset(tmp_path):
    args = [*QUICK, "--epochs", "3", "--checkpoint-every", "2"]
    killed = str(tmp_path / "killed")
    epoch, _ = kill_mid_epoch("pretrain", [*args, "--workdir", killed],
                              _stage(killed))
    out = _pretrain([*args, "--workdir", killed])
    assert "Resuming from" in out
    for finished in range(1, epoch + 1):
        assert f"Epoch {finished}/3" not in out
    uninterrupted = str(tmp_path / "uninterrupted")
    _pretrain([*args, "--workdir", uninterrupted])
    # CPU kernels and tf.data here are deterministic: the same result.
    assert_same_weights(
        h5_weights(os.path.join(killed, "preset", "model.weights.h5")),
        h5_weights(os.path.join(uninterrupted, "preset", "model.weights.h5")),
        atol=1e-6,
    )
    assert _metrics(killed)["start"] == _metrics(uninterrupted)["start"]


def _shipped_command():
    """The shipped preset's command, as its README and training.json give it."""
    from cmaclip_tf.models.clip_loader import resolve_preset

    with open(os.path.join(resolve_preset("tiny_clip_pretrained"),
                           "training.json")) as f:
        return json.load(f)["command"].split()[2:]


def _with_flags(args, **flags):
    """`args` with each `--flag value` replaced (or added)."""
    args = list(args)
    for name, value in flags.items():
        flag = "--" + name.replace("_", "-")
        if flag in args:
            args[args.index(flag) + 1] = str(value)
        else:
            args += [flag, str(value)]
    return args


@pytest.mark.large
def test_ci_sized_shipped_command_improves_recall_at_1(tmp_path):
    workdir = str(tmp_path / "ci")
    args = _with_flags(_shipped_command(), num_examples=640, epochs=3,
                       workdir=workdir)
    _pretrain([*args, "--quiet"])
    result = _metrics(workdir)
    start, best = result["start"], result["best"]
    assert result["best_epoch"] >= 1
    for direction in ("image_to_text", "text_to_image"):
        key = f"{direction}_recall@1"
        # 96 validation pairs: the random start is near 1/96.
        assert start[key] < 0.05, (key, start[key])
        assert best[key] >= start[key] + 0.05, (key, start[key], best[key])


@pytest.mark.large
def test_clip_pretrained_on_a_users_pairs_classifies_them_zero_shot(tmp_path):
    paths = write_shape_captions(str(tmp_path / "data"))
    workdir = str(tmp_path / "pretrain")
    # Only image and text: the manifest has no task columns.
    _pretrain(["--manifest", paths["pairs"], "--clip-preset", "tiny_clip",
               "--epochs", "6", "--batch-size", "32", "--quiet",
               "--workdir", workdir])
    accuracy = {}
    for name, preset in (("random", "tiny_clip"),
                         ("pretrained", os.path.join(workdir, "preset"))):
        run_dir = str(tmp_path / name)
        run_trainer("run", [
            "--dataset", "manifest", "--manifest", paths["labelled"],
            "--val-manifest", paths["labelled"], "--test-manifest",
            paths["labelled"], "--variant", "zero_shot", "--clip-preset",
            preset, "--quiet", "--workdir", run_dir])
        with open(os.path.join(run_dir, "metrics.json")) as f:
            test = json.load(f)["stages"]["zero_shot"]["test"]
        accuracy[name] = {task: test[task]["accuracy"] for task in test}
    # Chance: 1/4 for color, 1/3 for shape.
    assert accuracy["pretrained"]["color"] >= 0.7, accuracy
    assert accuracy["pretrained"]["shape"] >= 0.6, accuracy
    assert accuracy["random"]["color"] < 0.5, accuracy
