"""The experiments suite: mean ± std over seeds from hand-made run folders, the
report's tables, resuming; and a tiny end-to-end suite."""

import csv
import json
import os

import numpy as np
import pytest

from trainers.experiments import build_parser
from trainers.experiments import main
from trainers.experiments import shared_run_argv
from trainers.suites.experiment_report import aggregate
from trainers.suites.experiment_report import collect_runs
from trainers.suites.experiment_report import final_stage_metrics
from trainers.suites.experiment_report import write_report
from trainers.suites.experiment_suites import METHOD_RUNS

TASKS = ("color", "pattern")
# method -> per seed, per task: (recall at 90% precision, accuracy).
RESULTS = {
    "no_ma": [{"color": (0.50, 0.80), "pattern": (0.10, 0.40)},
              {"color": (0.60, 0.82), "pattern": (0.20, 0.44)},
              {"color": (0.70, 0.84), "pattern": (0.30, 0.48)}],
    "full": [{"color": (0.55, 0.81), "pattern": (0.25, 0.50)},
             {"color": (0.65, 0.85), "pattern": (0.15, 0.46)},
             {"color": (0.60, 0.83), "pattern": (0.35, 0.52)}],
}
LAMBDAS = {"as_is": 0.6, "no_attribute_words": 0.8, "correct_attribute_words": 0.3,
           "noise_image": 0.2}


def task_metrics(values, image_weight=0.5):
    return {task: {"count": 10, "recall_at_90_precision": r, "accuracy": a,
                   "image_weight_mean": image_weight}
            for task, (r, a) in values.items()}


def write_run(root, method, seed, values, stage="tuning"):
    run_dir = os.path.join(root, method, f"seed_{seed}")
    os.makedirs(run_dir)
    # An earlier stage with other numbers: the report must read the last one.
    worse = {t: (0.0, 0.0) for t in values}
    stages = {"warmup": {"test": task_metrics(worse)},
              stage: {"validation": task_metrics(worse), "test": task_metrics(values)}}
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump({"stages": stages, "bad_records": {}}, f)
    noise = {}
    for condition, weight in LAMBDAS.items():
        # Seed s adds s/100 to every λ, so λ's mean over seeds 0-2 is +0.01.
        noise[condition] = task_metrics(values, weight + seed / 100)
    for metrics in noise["as_is"].values():
        metrics.update({"named_share": 0.5, "image_weight_mean_named": 0.4,
                        "image_weight_mean_unnamed": 0.8 + seed / 100,
                        "accuracy_named": 0.9, "accuracy_unnamed": 0.7})
    with open(os.path.join(run_dir, "noise_robustness.json"), "w") as f:
        json.dump(noise, f)
    with open(os.path.join(run_dir, "suite_run.json"), "w") as f:
        json.dump({"method": method, "seed": seed, "total_seconds": 60.0 + seed}, f)


@pytest.fixture
def suite_dir(tmp_path):
    for method, seeds in RESULTS.items():
        for seed, values in enumerate(seeds):
            write_run(str(tmp_path), method, seed, values)
    return tmp_path


def test_final_stage_is_the_last_one_run():
    metrics = {"stages": {"warmup": {"test": 1}, "end2end": {"test": 2}}}
    assert final_stage_metrics(metrics) == ("end2end", 2)
    metrics["stages"]["tuning"] = {"test": 3}
    assert final_stage_metrics(metrics) == ("tuning", 3)
    assert final_stage_metrics({"stages": {"zero_shot": {"test": 4}}}) == ("zero_shot", 4)
    with pytest.raises(ValueError):
        final_stage_metrics({"stages": {}})


def test_mean_and_sample_std_over_seeds(suite_dir):
    runs = collect_runs(str(suite_dir), ["zero_shot", "no_ma", "full"])
    assert sorted(runs) == ["full", "no_ma"] and sorted(runs["full"]) == [0, 1, 2]
    result = aggregate(runs, ["no_ma", "full"])
    assert result["tasks"] == list(TASKS)
    recall = result["main"]["recall_at_90_precision"]
    # no_ma color: 0.5, 0.6, 0.7 -> 0.6 ± 0.1 (sample std).
    assert recall["no_ma"]["color"] == pytest.approx((0.6, 0.1))
    assert recall["no_ma"]["pattern"] == pytest.approx((0.2, 0.1))
    # The average is over tasks per seed (0.3, 0.4, 0.5), then over seeds.
    assert recall["no_ma"]["average"] == pytest.approx((0.4, 0.1))
    # full: per-seed averages 0.4, 0.4, 0.475.
    per_seed = [0.4, 0.4, 0.475]
    assert recall["full"]["average"] == pytest.approx(
        (np.mean(per_seed), np.std(per_seed, ddof=1)))
    assert recall["full"]["seeds"] == 3
    accuracy = result["main"]["accuracy"]
    assert accuracy["full"]["color"] == pytest.approx((0.83, 0.02))
    # λ per condition: the hand-made 0.6 (as is) plus the seeds' mean 0.01.
    noise = result["noise"]["full"]
    assert list(noise) == list(LAMBDAS)
    for condition, weight in LAMBDAS.items():
        assert noise[condition]["image_weight_mean"]["color"] == pytest.approx(
            (weight + 0.01, 0.01))


def test_report_states_command_tables_and_verdict(suite_dir):
    command = "python trainers/experiments.py --suite ablation --seeds 3"
    write_report(str(suite_dir), ["no_ma", "full"], command)
    report = (suite_dir / "report.md").read_text()
    assert report.splitlines()[0] == "# Ablation suite report"
    assert f"```\n{command}\n```" in report
    # Percent, one decimal: no_ma color 60.0 ± 10.0, average 40.0 ± 10.0.
    assert "| CMA-CLIP w/o MA | 60.0 ± 10.0 | 20.0 ± 10.0 | 40.0 ± 10.0 | 3 |" in report
    assert "| CMA-CLIP w/o MA | 82.0 ± 2.0 | 44.0 ± 4.0 | 63.0 ± 3.0 | 3 |" in report
    # full's average 42.5 beats no_ma's 40.0, on one seed of three.
    assert "CMA-CLIP beats CMA-CLIP w/o MA on average recall at 90% precision: " \
        "42.5 ± 4.3 vs 40.0 ± 10.0 (+2.5 points" in report
    assert "Higher on 1 of 3 seeds." in report
    assert "| CMA-CLIP | noise image | 0.210 ± 0.010 | 0.210 ± 0.010 |" in report
    # Only full CMA-CLIP learns λ, so only it has λ rows.
    assert "| CMA-CLIP w/o MA | noise image | 0.210" not in report
    assert "Suite total: 6.1 minutes" in report
    assert ("| CMA-CLIP | color | 50.0 ± 0.0 | 0.400 ± 0.000 | 0.810 ± 0.010 | "
            "90.0 ± 0.0 | 70.0 ± 0.0 |") in report

    with open(suite_dir / "report.csv") as f:
        lines = f.read().splitlines()
    assert lines[0] == f"# {command}"
    rows = list(csv.DictReader(lines[1:]))
    main_rows = [r for r in rows if r["table"] == "test"]
    assert [(r["metric"], r["method"]) for r in main_rows] == [
        ("recall_at_90_precision", "no_ma"), ("recall_at_90_precision", "full"),
        ("accuracy", "no_ma"), ("accuracy", "full")]
    assert float(main_rows[0]["color_mean"]) == pytest.approx(0.6)
    assert float(main_rows[0]["color_std"]) == pytest.approx(0.1)
    assert float(main_rows[0]["average_mean"]) == pytest.approx(0.4)
    noise_rows = [r for r in rows if r["table"] == "noise_robustness"]
    assert len(noise_rows) == 2 * 4 * 3  # Methods x conditions x metrics.


def test_finished_runs_are_skipped_and_the_report_rewritten(suite_dir, capsys):
    # Every method of the subset is finished, so nothing trains.
    assert main(["--methods", "no_ma,full", "--seeds", "3",
                 "--workdir", str(suite_dir)]) == 0
    output = capsys.readouterr().out
    assert output.count("finished earlier; skipping") == 6
    report = (suite_dir / "report.md").read_text()
    assert "--methods no_ma,full --seeds 3 --workdir" in report
    # --report-only keeps the command that produced the runs.
    assert main(["--methods", "no_ma,full", "--report-only",
                 "--workdir", str(suite_dir)]) == 0
    assert "--methods no_ma,full --seeds 3 --workdir" in (
        suite_dir / "report.md").read_text()


def test_every_method_runs_the_shared_flags():
    from trainers.run import build_parser as run_parser

    args = build_parser().parse_args(
        ["--workdir", "W", "--num-examples", "32", "--end2end-epochs", "3",
         "--run-args", "--batch-size 8 --steps-per-epoch 2"])
    argv = shared_run_argv(args, 2, "W/full/seed_2")
    # What trainers/run.py reads from them: the suite's flags, the seed's
    # folder, the extra --run-args; and no flag the suite was not given.
    run = run_parser().parse_args(argv)
    defaults = run_parser().parse_args([])
    given = {"dataset": args.dataset, "model": args.model, "seed": 2,
             "workdir": "W/full/seed_2", "quiet": True, "num_examples": 32,
             "end2end_epochs": 3, "cache_features": True, "batch_size": 8,
             "steps_per_epoch": 2}
    assert {k: getattr(run, k) for k in given} == given
    for flag, value in vars(run).items():
        if flag not in given:
            assert value == getattr(defaults, flag), flag
    # CLIP + linear heads: warmup then end2end; the fine-tuned CLIP: one run
    # (contrastive, then zero-shot); CMA-CLIP and ablations: all stages.
    assert [run[-1] for run in METHOD_RUNS["clip_linear"]] == ["warmup", "end2end"]
    assert METHOD_RUNS["finetuned_clip"] == [["--variant", "finetuned_clip"]]
    for method in ("full", "no_ma", "no_ma_sa"):
        assert METHOD_RUNS[method] == [["--variant", method, "--stage", "all"]]


def test_one_seed_shows_no_spread_and_claims_no_significance(tmp_path):
    for method, seeds in RESULTS.items():
        write_run(str(tmp_path), method, 0, seeds[0])
    settings = {"dataset": "manifest",
                "data": "manifest: manifest train.csv, test manifest test.csv"}
    write_report(str(tmp_path), ["no_ma", "full"], "cmd", settings)
    report = (tmp_path / "report.md").read_text()
    # Seed 0: no_ma color 50.0, pattern 10.0, average 30.0.
    assert "| CMA-CLIP w/o MA | 50.0 | 10.0 | 30.0 | 1 |" in report
    assert "± 0.0" not in report and "standard error" not in report
    assert ("CMA-CLIP beats CMA-CLIP w/o MA on average recall at 90% "
            "precision: 40.0 vs 30.0 (+10.0 points; one seed, so no spread to "
            "tell a difference from noise: run more --seeds).") in report
    assert "one run's result (one seed: no spread)" in report
    # The data as it is: the user's manifests, not generated data.
    assert "generated data" not in report
    assert "the data is the same manifest: manifest train.csv, test manifest " \
        "test.csv in every run" in report


def test_a_report_with_no_finished_run_is_an_error(tmp_path, capsys):
    assert main(["--report-only", "--workdir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(
        f"error: No finished run under {tmp_path} to report on")


def test_manifest_suites_take_run_pys_data_flags(tmp_path, capsys):
    from trainers.experiments import effective_settings
    from trainers.run import build_parser as run_parser

    flags = ["--dataset", "manifest", "--manifest", "train.csv",
             "--val-manifest", "val.csv", "--test-manifest", "test.csv",
             "--tasks", "color", "--on-bad-record", "error"]
    args = build_parser().parse_args([*flags, "--workdir", "W", "--seeds", "1"])
    run = run_parser().parse_args(shared_run_argv(args, 0, "W/full/seed_0"))
    assert (run.dataset, run.manifest, run.val_manifest, run.test_manifest,
            run.tasks, run.on_bad_record) == (
        "manifest", "train.csv", "val.csv", "test.csv", "color", "error")
    settings = effective_settings(args)
    assert settings["data"] == ("manifest: manifest train.csv, val manifest "
                                "val.csv, test manifest test.csv")
    # The report is on the test split: a suite without one is refused.
    with pytest.raises(SystemExit) as exit_info:
        main(["--dataset", "manifest", "--manifest", "train.csv",
              "--workdir", str(tmp_path / "suite")])
    assert exit_info.value.code == 2
    assert "--test-manifest" in capsys.readouterr().err
    assert not (tmp_path / "suite").exists()
