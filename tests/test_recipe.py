"""Training recipes: built-in ones resolve, overrides land where they say,
bad values are refused with the field's name; the learning-rate schedule
against hand-computed values."""

import json
import math

import pytest

from trainers import run as run_cli
from trainers.training.learning_rate_schedule import WarmupSchedule
from trainers.training.recipe import available_recipes
from trainers.training.recipe import default_recipe
from trainers.training.recipe import fitted_batch_size
from trainers.training.recipe import recipe_overrides
from trainers.training.recipe import resolve_recipe
from trainers.training.recipe import stage_epochs
from trainers.training.recipe import stage_schedule
from trainers.training.recipe import stage_warmup_steps
from trainers.training.stage_schedule import STAGES


def test_every_built_in_recipe_resolves_with_every_stage_complete():
    assert available_recipes() == ["default", "paper_fashion_gen", "paper_food101",
                                   "paper_retail", "synthetic"]
    for name in available_recipes():
        recipe = resolve_recipe(name)
        assert recipe["name"] == name and recipe["description"]
        for stage, fields in recipe["stages"].items():
            assert sorted(fields) == sorted([
                "epochs", "learning_rate_multipliers", "schedule", "warmup_steps",
                "weight_decay", "clip_norm", "early_stopping_patience",
                "min_steps", "warmup_fraction", "ema_decay", "wise_ft",
                "lora_rank"]), (name, stage)
            assert stage_schedule(recipe, stage).frozen_groups() == (
                STAGES[stage].frozen_groups())


def test_the_paper_settings_are_in_the_paper_recipes():
    # Section 4.2: batch 1024, rate 1e-5, weight decay 1e-4; 20 epochs per
    # stage for the retail attributes, 100 warm-up and 300 end-to-end for
    # Food-101 and Fashion-Gen, which report accuracy.
    for name, epochs, metric in (
        ("paper_retail", (20, 20), "recall_at_90_precision"),
        ("paper_fashion_gen", (100, 300), "accuracy"),
        ("paper_food101", (100, 300), "accuracy"),
    ):
        recipe = resolve_recipe(name)
        assert (recipe["batch_size"], recipe["learning_rate"]) == (1024, 1e-5)
        assert recipe["selection_metric"] == metric
        stages = recipe["stages"]
        assert (stages["warmup"]["epochs"], stages["end2end"]["epochs"]) == epochs
        # "Adam with weight decay": an L2 term in the gradient (PyTorch's).
        for fields in stages.values():
            assert fields["weight_decay"] == {"kind": "l2", "rate": 1e-4}


def test_every_dataset_gets_the_default_recipe():
    for dataset in ("synthetic", "manifest", "tfds:upmc_food101/val20",
                    "tfds:fashion_gen", "fashion_gen", "food101"):
        assert default_recipe(dataset) == "default"


def test_the_default_recipe_rates_each_group_by_what_it_is():
    recipe = resolve_recipe("default")
    rates = {stage: {g: (m and recipe["learning_rate"] * m) for g, m in
                     fields["learning_rate_multipliers"].items()}
             for stage, fields in recipe["stages"].items()}
    # CLIP, pretrained, at the paper's 1e-5 or less; frozen where the paper
    # freezes it; new modules faster than CLIP.
    assert rates["warmup"]["clip"] is None and rates["tuning"]["fusion"] is None
    assert rates["end2end"]["clip"] <= 1e-5 + 1e-12
    for stage in ("warmup", "end2end"):
        trained = {g: r for g, r in rates[stage].items() if r}
        assert max(trained, key=trained.get) in ("heads", "modality_attention")
    assert recipe["selection_metric"] == "auto"
    assert {f["warmup_fraction"] for f in recipe["stages"].values()} == {0.1}


@pytest.mark.parametrize("examples,given,multiple,expected", [
    (200, False, 1, 8),        # 200 // 32 = 6 -> at least 8.
    (1_200, False, 1, 32),     # 1200 // 32 = 37 -> 32.
    (100_000, False, 1, 256),  # The recipe's batch.
    (5, False, 1, 4),          # Fewer than 8: the largest power of two.
    (200, True, 1, 200),       # A given batch that fits is kept...
    (150, True, 1, 128),       # ...one over the data is fitted.
    (200, False, 3, 6),        # A multiple of replicas x micro-batches.
])
def test_fitted_batch_size(examples, given, multiple, expected):
    recipe = {"batch_size": 200 if given else 256, "min_steps_per_epoch": 32}
    assert fitted_batch_size(recipe, examples, multiple, given=given) == expected


def test_the_paper_batch_is_fitted_only_to_data_smaller_than_it():
    recipe = resolve_recipe("paper_retail")
    assert fitted_batch_size(recipe, 1_200) == 1024
    assert fitted_batch_size(recipe, 300) == 256
    with pytest.raises(ValueError, match="3 usable training examples"):
        fitted_batch_size(recipe, 3, multiple=4)


def test_stage_length_and_warmup_follow_the_steps():
    plan = {"epochs": 3, "min_steps": 150, "warmup_steps": 0, "warmup_fraction": 0.1}
    assert stage_epochs(plan, 62) == 3     # 186 steps >= 150.
    assert stage_epochs(plan, 25) == 6     # 150 steps in 6 epochs of 25.
    assert stage_epochs({**plan, "epochs": 0}, 25) == 0  # Evaluation only.
    assert stage_warmup_steps(plan, 150) == 15
    assert stage_warmup_steps({**plan, "warmup_steps": 40}, 150) == 40
    # --epochs and --warmup-steps are taken as given.
    args = run_cli.build_parser().parse_args(["--epochs", "1", "--warmup-steps", "2"])
    recipe = resolve_recipe("default", recipe_overrides(args))
    for fields in recipe["stages"].values():
        assert (fields["epochs"], fields["min_steps"]) == (1, 0)
        assert (fields["warmup_steps"], fields["warmup_fraction"]) == (2, 0.0)
    args = run_cli.build_parser().parse_args(["--end2end-epochs", "2"])
    stages = resolve_recipe("default", recipe_overrides(args))["stages"]
    assert (stages["end2end"]["min_steps"], stages["warmup"]["min_steps"]) == (0, 150)


def test_flags_override_single_values_and_a_stage_flag_wins():
    args = run_cli.build_parser().parse_args([
        "--epochs", "3", "--tuning-epochs", "1", "--batch-size", "16",
        "--clip-norm", "0", "--warmup-steps", "7",
        "--recipe-set", "stages.end2end.learning_rate_multipliers.clip=0.1",
        "--recipe-set", "stages.warmup.schedule=constant",
    ])
    recipe = resolve_recipe("paper_fashion_gen", recipe_overrides(args))
    stages = recipe["stages"]
    assert [stages[s]["epochs"] for s in ("warmup", "end2end", "tuning")] == [3, 3, 1]
    assert recipe["batch_size"] == 16 and recipe["learning_rate"] == 1e-5
    assert {s["warmup_steps"] for s in stages.values()} == {7}
    assert {s["clip_norm"] for s in stages.values()} == {0}  # 0: off.
    assert stages["end2end"]["learning_rate_multipliers"] == {
        "clip": 0.1, "fusion": 1.0, "modality_attention": 1.0, "heads": 1.0}
    assert stages["warmup"]["schedule"] == "constant"
    assert stages["end2end"]["schedule"] == "cosine"  # Untouched.
    # --weight-decay sets the rate and keeps the recipe's kind.
    args = run_cli.build_parser().parse_args(["--weight-decay", "0.01"])
    assert resolve_recipe("paper_fashion_gen", recipe_overrides(args))["stages"][
        "end2end"]["weight_decay"] == {"kind": "l2", "rate": 0.01}
    # Flags left out change nothing.
    assert resolve_recipe("paper_fashion_gen", recipe_overrides(
        run_cli.build_parser().parse_args([]))) == resolve_recipe("paper_fashion_gen")


def test_a_recipe_file_may_leave_out_the_paper_table_and_defaults(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({
        "name": "mine", "batch_size": 64, "learning_rate": 3e-4,
        "stage_defaults": {"schedule": "cosine", "warmup_steps": 10,
                           "weight_decay": 0.05},
        "stages": {"end2end": {"epochs": 5,
                               "learning_rate_multipliers": {"clip": 0.1}},
                   "warmup": {"epochs": 1}, "tuning": {"epochs": 0}},
    }))
    recipe = resolve_recipe(str(path))
    end2end = recipe["stages"]["end2end"]
    assert end2end["learning_rate_multipliers"] == {
        "clip": 0.1, "fusion": 1.0, "modality_attention": 1.0, "heads": 1.0}
    # A plain number is AdamW's decoupled decay (the older recipes' form).
    assert (end2end["warmup_steps"], end2end["weight_decay"]) == (
        10, {"kind": "decoupled", "rate": 0.05})
    assert end2end["clip_norm"] is None and end2end["early_stopping_patience"] is None
    assert recipe["selection_metric"] == "recall_at_90_precision"
    assert recipe["source"] == str(path)


@pytest.mark.parametrize("overrides,message", [
    ({"stages.warmup.schedule": "linear"},
     "stages.warmup.schedule must be one of ('cosine', 'constant'); got 'linear'"),
    ({"stages.end2end.learning_rate_multipliers.text": 0.1},
     "unknown field 'text' in stages.end2end.learning_rate_multipliers"),
    ({"stages.tuning.learning_rate_multipliers.heads": 0},
     "stages.tuning.learning_rate_multipliers.heads must be a number > 0, or null"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1; got 0"),
    ({"stages.*.epochs": 1.5}, "stages.warmup.epochs must be an integer >= 0"),
    ({"stages.*.warmup_step": 5}, "unknown field 'warmup_step' in stages.warmup"),
    ({"learnig_rate": 1.0}, "unknown field 'learnig_rate' in the recipe"),
    ({"selection_metric": "f1"}, "selection_metric must be one of"),
    ({"loss": "focal"}, "loss: Unknown loss 'focal'"),
    ({"stages.warmup.weight_decay": {"kind": "l1", "rate": 1e-4}},
     "stages.warmup.weight_decay must be a number or {\"kind\": 'decoupled' | 'l2'"),
    ({"stages.*.weight_decay": -1.0},
     "stages.warmup.weight_decay's rate must be a number >= 0; got -1.0"),
    ({"loss": {"name": "gce", "k": 1}}, "loss: Loss 'gce' has no parameter"),
    ({"loss": {"color": "ce", "style": "mae"}}, "loss.style: Unknown loss 'mae'"),
])
def test_bad_values_name_their_field(overrides, message):
    with pytest.raises(ValueError, match="Recipe: " + message.replace("(", r"\(")
                       .replace(")", r"\)")):
        resolve_recipe("synthetic", overrides)


def test_freezing_every_group_is_refused():
    with pytest.raises(ValueError, match="stages.tuning freezes every module group"):
        resolve_recipe("synthetic", {
            "stages.tuning.learning_rate_multipliers": {
                "clip": None, "fusion": None, "modality_attention": None,
                "heads": None}})


def test_unknown_recipe_lists_the_built_in_ones():
    with pytest.raises(ValueError, match="default, paper_fashion_gen, paper_food101, paper_retail, synthetic"):
        resolve_recipe("imagenet")


def _rates(schedule, peak, steps):
    learning_rate = schedule(peak)
    return [float(learning_rate(step)) for step in range(steps)]


def test_warmup_rises_linearly_then_cosine_falls_to_zero():
    # 4 warm-up steps, the first already at a quarter of the peak (open_clip's
    # (s + 1) / warmup), then a half cosine over the 8 steps left of 12.
    rates = _rates(WarmupSchedule(total_steps=12, warmup_steps=4), 2.0, 13)
    assert rates[:5] == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0])
    for step in range(4, 13):
        expected = 2.0 * 0.5 * (1 + math.cos(math.pi * (step - 4) / 8))
        assert rates[step] == pytest.approx(expected, abs=1e-6), step
    assert rates[8] == pytest.approx(1.0)  # Halfway down.
    assert rates[12] == pytest.approx(0.0, abs=1e-7)


def test_no_step_of_a_warmup_runs_at_rate_zero():
    for warmup in (1, 2, 7):
        rates = _rates(WarmupSchedule(total_steps=20, warmup_steps=warmup), 1.0, 20)
        assert rates[0] == pytest.approx(1.0 / warmup) and min(rates[:-1]) > 0


def test_constant_after_warmup_and_cosine_without_one():
    rates = _rates(WarmupSchedule(total_steps=10, warmup_steps=2, decay="constant"),
                   1e-3, 10)
    assert rates == pytest.approx([5e-4] + [1e-3] * 9)
    rates = _rates(WarmupSchedule(total_steps=4), 1.0, 5)
    assert rates == pytest.approx([1.0, 0.5 + 0.5 * math.cos(math.pi / 4), 0.5,
                                   0.5 - 0.5 * math.cos(math.pi / 4), 0.0], abs=1e-6)
    # A stage shorter than its warm-up warms up over its whole length.
    rates = _rates(WarmupSchedule(total_steps=2, warmup_steps=5), 1.0, 2)
    assert rates == pytest.approx([0.5, 1.0])


def test_the_loss_and_its_parameters_are_in_the_recipe_and_the_flag_wins(tmp_path):
    # Built-in recipes train with the paper's cross-entropy.
    for name in available_recipes():
        assert resolve_recipe(name)["loss"] == "ce"
    path = tmp_path / "noisy.json"
    gce = {"name": "gce", "q": 0.5}
    path.write_text(json.dumps({
        "name": "noisy", "batch_size": 8, "learning_rate": 1e-3,
        "loss": {"color": gce, "style": "sce"},
        "stage_defaults": {"epochs": 1, "schedule": "constant",
                           "warmup_steps": 0, "weight_decay": 0.0},
    }))
    assert resolve_recipe(str(path))["loss"] == {"color": gce, "style": "sce"}
    args = run_cli.build_parser().parse_args(
        ["--recipe", str(path), "--loss", "color=ce"])
    assert resolve_recipe(str(path), recipe_overrides(args))["loss"] == {"color": "ce"}
    args = run_cli.build_parser().parse_args(["--recipe", str(path)])
    assert resolve_recipe(str(path), recipe_overrides(args))["loss"]["color"] == gce


def test_reference_widths_scale_clip_and_fusion_rates_by_width():
    recipe = resolve_recipe("default")
    tiny = stage_schedule(recipe, "end2end", {"clip": 64, "fusion": 64})
    paper_widths = stage_schedule(recipe, "end2end", {"clip": 768, "fusion": 512})
    assert paper_widths.learning_rate_multipliers == (
        recipe["stages"]["end2end"]["learning_rate_multipliers"])
    multipliers = tiny.learning_rate_multipliers
    assert multipliers["clip"] == pytest.approx(0.01 * 768 / 64)
    assert multipliers["fusion"] == pytest.approx(0.1 * 512 / 64)
    assert multipliers["heads"] == 0.3  # Not width-scaled.
    # Frozen stays frozen; recipes without reference widths are untouched.
    assert stage_schedule(recipe, "warmup", {"clip": 64}).clip_frozen()
    paper = resolve_recipe("paper_retail")
    assert stage_schedule(paper, "end2end", {"clip": 64, "fusion": 64}) == (
        stage_schedule(paper, "end2end"))
    with pytest.raises(ValueError, match="reference_widths.clip must be an integer"):
        resolve_recipe("default", {"reference_widths": {"clip": 0}})
