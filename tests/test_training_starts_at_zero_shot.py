"""Training starts where zero-shot CLIP stands: before its first step, the
model classifies the held-out split at least as well as zero-shot CLIP
(within a point), with the shipped pretrained tiny CLIP."""

import json
import os

import pytest
from trainer_processes import run_trainer

DATA = ["--dataset", "synthetic", "--num-examples", "2000", "--quiet",
        "--seed", "3"]


def _accuracy(workdir, stage, split="test"):
    with open(os.path.join(workdir, "metrics.json")) as f:
        metrics = json.load(f)["stages"][stage][split]
    return {task: m["accuracy"] for task, m in metrics.items()}


@pytest.mark.large
def test_the_untrained_model_is_as_good_as_zero_shot(tmp_path):
    # The other variants' starts are pinned against numpy in
    # test_zero_shot_start.py; one end-to-end run checks the whole path.
    variant = "full"
    zero_shot = str(tmp_path / "zero_shot")
    run_trainer("run", [*DATA, "--variant", "zero_shot", "--workdir", zero_shot])
    start = str(tmp_path / variant)
    out = run_trainer("run", [*DATA, "--variant", variant, "--stage", "warmup",
                              "--epochs", "0", "--workdir", start])
    for task in ("color", "pattern", "style"):
        assert f"[start] {task}: zero-shot start, λ " in out
    reference = _accuracy(zero_shot, "zero_shot")
    started = _accuracy(start, "warmup")
    assert reference["color"] > 0.8  # CLIP knows colors; prompts work.
    for task, accuracy in reference.items():
        assert started[task] >= accuracy - 0.01, (task, started, reference)
    with open(os.path.join(start, "metrics.json")) as f:
        recorded = json.load(f)["start"]["warmup"]
    assert {t: r["zero_shot"] for t, r in recorded.items()} == {
        "color": True, "pattern": True, "style": True}


@pytest.mark.large
def test_no_task_ends_below_its_start_on_validation(tmp_path):
    """The default recipe's `every_task` selection: every stage keeps each
    task at or above the stage's start on validation; chained, no task ends
    below where training began (zero-shot CLIP's classifier); the stages
    that train only heads (clip_linear's warm-up and tuning) keep each
    task's best epoch."""
    trained = str(tmp_path / "clip_linear")
    run_trainer("run", ["--dataset", "synthetic", "--num-examples", "400",
                        "--quiet", "--seed", "5", "--variant", "clip_linear",
                        "--stage", "all", "--epochs", "2", "--workdir", trained])
    with open(os.path.join(trained, "metrics.json")) as f:
        stages = json.load(f)["stages"]
    floor = None
    for stage in ("warmup", "end2end", "tuning"):
        record = stages[stage]["training"]
        start = {t: m["accuracy"] for t, m in record["start_validation"].items()}
        if floor is not None:  # A stage starts from the one before's best.
            assert start == floor, (stage, start, floor)
        accuracy = _accuracy(trained, stage, "validation")
        assert set(accuracy) == {"color", "pattern", "style"}
        for task, value in start.items():
            assert accuracy[task] >= value, (stage, task, accuracy, start)
        floor = accuracy
        epochs = record.get("task_epochs")
        if stage == "end2end":
            assert epochs is None  # CLIP trains: one epoch for every task.
        else:
            assert set(epochs) == {"color", "pattern", "style"}
            assert all(0 <= e <= 2 for e in epochs.values())
