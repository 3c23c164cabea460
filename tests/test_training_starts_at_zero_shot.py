"""Training starts where zero-shot CLIP stands: before its first step, the
model classifies the held-out split at least as well as zero-shot CLIP
(within a point), with the shipped pretrained tiny CLIP."""

import json
import os

import pytest
from trainer_processes import run_trainer

DATA = ["--dataset", "synthetic", "--num-examples", "2000", "--quiet",
        "--seed", "3"]


def _test_accuracy(workdir, stage):
    with open(os.path.join(workdir, "metrics.json")) as f:
        test = json.load(f)["stages"][stage]["test"]
    return {task: m["accuracy"] for task, m in test.items()}


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
    reference = _test_accuracy(zero_shot, "zero_shot")
    started = _test_accuracy(start, "warmup")
    assert reference["color"] > 0.8  # CLIP knows colors; prompts work.
    for task, accuracy in reference.items():
        assert started[task] >= accuracy - 0.01, (task, started, reference)
    with open(os.path.join(start, "metrics.json")) as f:
        recorded = json.load(f)["start"]["warmup"]
    assert {t: r["zero_shot"] for t, r in recorded.items()} == {
        "color": True, "pattern": True, "style": True}
