"""trainers/pretrain.py end to end: one device, two replicas, two workers,
resume after SIGKILL, the shipped command at CI size, and zero-shot
classification by a CLIP pretrained on a manifest of someone else's pairs."""

import json
import os

import numpy as np
import pytest
from fixtures_data import write_shape_captions
from micro_model import micro_model_config
from trainer_processes import assert_same_weights
from trainer_processes import h5_weights
from trainer_processes import kill_mid_epoch
from trainer_processes import latest_weights
from trainer_processes import run_on_two_cpus
from trainer_processes import run_trainer
from trainer_processes import run_two_workers
from trainer_processes import tensorboard_scalars
from trainer_processes import trainer_error

from trainers import pretrain

# The generated caption corpus, from a random one-layer CLIP (the micro
# model's: these runs pin mechanics), in a few steps.
MICRO_CLIP = micro_model_config()["clip_preset"]
QUICK = ["--dataset", "caption_corpus", "--num-examples", "48", "--batch-size",
         "8", "--clip-preset", MICRO_CLIP, "--quiet", "--seed", "1"]


def _pretrain(args, **kwargs):
    return run_trainer("pretrain", args, **kwargs)


def _stage(workdir):
    return os.path.join(workdir, "contrastive")


def _metrics(workdir):
    with open(os.path.join(workdir, "metrics.json")) as f:
        return json.load(f)["stages"]["contrastive"]


def _scalars(workdir, split):
    return tensorboard_scalars(
        os.path.join(workdir, "tensorboard", "contrastive", split))


def _assert_same_training(workdir, reference):
    """The same global-batch losses, and weights up to Adam's float noise."""
    # Adam's early steps are ~lr * sign(g) (lr 1e-3): a gradient element
    # near 0 moves by up to ~2e-5 on float noise alone. The losses are the
    # global batch's: a per-replica loss would differ by far more.
    np.testing.assert_allclose(_scalars(workdir, "train")["loss/contrastive"],
                               _scalars(reference, "train")["loss/contrastive"],
                               atol=1e-5)
    assert_same_weights(latest_weights(_stage(workdir)),
                        latest_weights(_stage(reference)), atol=1e-4)


def test_help_explains_every_flag():
    out = _pretrain(["--help"])
    for flag in ("--dataset", "--manifest", "--val-manifest", "--num-examples",
                 "--clip-preset", "--workdir", "--epochs", "--batch-size",
                 "--learning-rate", "--weight-decay", "--seed", "--strategy",
                 "--checkpoint-every"):
        assert flag in out


def test_a_missing_manifest_is_one_line_and_writes_nothing(tmp_path, capsys):
    # In this process: the same main as the command's, without a new TensorFlow.
    assert pretrain.main(["--manifest", str(tmp_path / "none.csv"),
                          "--workdir", str(tmp_path / "w")]) == 2
    error = capsys.readouterr().err
    last = error.strip().splitlines()[-2:]
    assert last[0].startswith("error: Manifest ") and "none.csv not found" in last[0]
    assert last[1] == "(--debug shows the traceback)"
    assert "Traceback" not in error
    assert not os.path.exists(tmp_path / "w")


@pytest.mark.large  # trainers/pretrain.py in a fresh process.
def test_a_missing_manifest_is_one_line_from_the_command(tmp_path):
    error = trainer_error("pretrain", ["--manifest", str(tmp_path / "none.csv"),
                                       "--workdir", str(tmp_path / "w")])
    assert "none.csv not found" in error and "Traceback" not in error
    assert not os.path.exists(tmp_path / "w")


# Two steps of the global batch of 8.
TWO_STEPS = [*QUICK, "--epochs", "1", "--steps-per-epoch", "2"]


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    """The workdir of a two-step run on one device."""
    workdir = str(tmp_path_factory.mktemp("one_device") / "run")
    out = _pretrain([*TWO_STEPS, "--strategy", "one_device", "--workdir", workdir])
    assert "validation at the start" in out and "Epoch 1/1" in out
    return workdir


@pytest.mark.large
def test_one_device_writes_a_preset_load_clip_reads(one_device):
    import keras

    from cmaclip_tf.models import load_clip

    preset = os.path.join(one_device, "preset")
    clip = load_clip(preset)
    # The preset holds the best epoch's weights (over a random CLIP's).
    reference = load_clip(MICRO_CLIP).backbone
    reference.load_weights(os.path.join(_stage(one_device), "best.weights.h5"))
    for a, b in zip(clip.backbone.weights, reference.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b))
    with open(os.path.join(preset, "training.json")) as f:
        training = json.load(f)
    assert training["command"].startswith("python trainers/pretrain.py ")
    assert training["flags"]["seed"] == 1
    assert training["validation"] == _metrics(one_device)
    tags = {**_scalars(one_device, "train"), **_scalars(one_device, "validation")}
    for tag in ("loss/contrastive", "logit_scale", "learning_rate/clip",
                "image_to_text_recall@1", "text_to_image_recall@5"):
        assert tag in tags, tag
    # Validation at the start (step 0) and after the epoch.
    assert len(tags["image_to_text_recall@1"]) == 2


@pytest.mark.large
def test_mirrored_over_two_cpus_is_one_device_on_the_global_batch(
        tmp_path, one_device):
    mirrored = str(tmp_path / "mirrored")
    run_on_two_cpus("pretrain", [*TWO_STEPS, "--strategy", "mirrored",
                                 "--workdir", mirrored])
    # Two replicas of 4 contrast every image with all 8 texts, as one device
    # does; a per-replica loss (4 x 4 logits) would not.
    _assert_same_training(mirrored, one_device)


@pytest.mark.large
def test_two_workers_are_one_device_on_the_global_batch(tmp_path, one_device):
    workdir = str(tmp_path / "mw")
    outputs = run_two_workers("pretrain", [*TWO_STEPS, "--strategy",
                                           "multi_worker", "--workdir", workdir])
    assert_same_weights(latest_weights(_stage(workdir)),
                        latest_weights(_stage(workdir), worker=1))
    _assert_same_training(workdir, one_device)
    assert "preset:" in outputs[0] and "preset:" not in outputs[1]
    assert os.path.isfile(os.path.join(workdir, "preset", "model.weights.h5"))


@pytest.mark.large
def test_sigkill_mid_epoch_resumes_to_the_same_preset(tmp_path):
    args = [*QUICK, "--epochs", "2", "--checkpoint-every", "2"]
    killed = str(tmp_path / "killed")
    epoch, _ = kill_mid_epoch("pretrain", [*args, "--workdir", killed],
                              _stage(killed))
    out = _pretrain([*args, "--workdir", killed])
    assert "Resuming from" in out and "validation at the start" not in out
    for finished in range(1, epoch + 1):
        assert f"Epoch {finished}/2" not in out
    uninterrupted = str(tmp_path / "uninterrupted")
    _pretrain([*args, "--workdir", uninterrupted])
    # CPU kernels and tf.data here are deterministic: the same result (the
    # learning-rate schedule resumes at the step it stopped at).
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
def test_ci_sized_shipped_command_improves_recall(tmp_path):
    workdir = str(tmp_path / "ci")
    # 1,280 pairs, 4 epochs; batches of 16 take more steps from the pairs.
    args = _with_flags(_shipped_command(), num_examples=1280, epochs=4,
                       batch_size=16, workdir=workdir)
    _pretrain([*args, "--quiet"])
    result = _metrics(workdir)
    start, best = result["start"], result["best"]
    assert best["count"] == 192
    for direction in ("image_to_text", "text_to_image"):
        # 192 validation pairs: the random start is near 1/192 and 5/192.
        at_1, at_5 = f"{direction}_recall@1", f"{direction}_recall@5"
        assert start[at_1] < 0.02 and start[at_5] < 0.05, start
        assert best[at_1] >= start[at_1] + 0.02, (start, best)
        assert best[at_5] >= start[at_5] + 0.08, (start, best)


@pytest.mark.large
def test_clip_pretrained_on_a_users_pairs_classifies_them_zero_shot(tmp_path):
    paths = write_shape_captions(str(tmp_path / "data"))
    workdir = str(tmp_path / "pretrain")
    # Only image and text: the manifest has no task columns.
    _pretrain(["--manifest", paths["pairs"], "--clip-preset", "tiny_clip",
               "--epochs", "6", "--batch-size", "16", "--quiet",
               "--workdir", workdir])
    run_dir = str(tmp_path / "zero_shot")
    run_trainer("run", [
        "--dataset", "manifest", "--manifest", paths["labelled"],
        "--val-manifest", paths["labelled"], "--test-manifest",
        paths["labelled"], "--variant", "zero_shot", "--clip-preset",
        os.path.join(workdir, "preset"), "--quiet", "--workdir", run_dir])
    with open(os.path.join(run_dir, "metrics.json")) as f:
        test = json.load(f)["stages"]["zero_shot"]["test"]
    # Chance: 1/4 for color, 1/3 for shape (the random tiny CLIP scores
    # 0.25 and 0.33 here); only the image decides, the text is "an item".
    assert test["color"]["accuracy"] >= 0.8, test
    assert test["shape"]["accuracy"] >= 0.4, test
