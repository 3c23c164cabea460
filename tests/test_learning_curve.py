"""The learning-curve report, from runs on disk (no training)."""

import csv
import json
import os

from trainers import learning_curve


def _write_run(workdir, size, method, seed, stage, values):
    run = os.path.join(workdir, f"rows_{size}", method, f"seed_{seed}")
    os.makedirs(run)
    test = {task: {"accuracy": acc, "recall_at_90_precision": recall}
            for task, (acc, recall) in values.items()}
    with open(os.path.join(run, "metrics.json"), "w") as f:
        json.dump({"stages": {stage: {"test": test}}}, f)


def test_report_averages_tasks_then_seeds(tmp_path):
    workdir = str(tmp_path)
    for seed, (color, style) in enumerate([(0.9, 0.5), (0.7, 0.3)]):
        _write_run(workdir, 300, "full", seed, "tuning",
                   {"color": (color, color), "style": (style, style)})
        _write_run(workdir, 1000, "full", seed, "tuning",
                   {"color": (1.0, 1.0), "style": (0.5, 0.5)})
    _write_run(workdir, 300, "zero_shot", 0, "zero_shot",
               {"color": (0.8, 0.6), "style": (0.2, 0.1)})
    argv = ["--sizes", "300,1000", "--seeds", "2", "--methods", "zero_shot,full",
            "--workdir", workdir, "--report-only"]
    assert learning_curve.main(argv) == 0
    report = open(os.path.join(workdir, "report.md")).read()
    # Seeds average 0.7 and 0.5: mean 60.0, sample s.d. 14.1; one seed: no spread.
    assert "| CMA-CLIP | 60.0 ± 14.1 | 75.0 ± 0.0 |" in report
    assert "| Zero-shot CLIP | 35.0 | - |" in report
    assert "| CMA-CLIP | 80.0 / 80.0 | 40.0 / 40.0 |" in report
    assert os.path.isfile(os.path.join(workdir, "curve.png"))
    with open(os.path.join(workdir, "report.csv")) as f:
        rows = list(csv.DictReader(f))
    average = [r for r in rows if r["metric"] == "accuracy" and r["rows"] == "300"
               and r["method"] == "full" and r["task"] == "average"]
    assert [(r["mean"], r["seeds"]) for r in average] == [("0.6000", "2")]


def test_generated_files_are_a_catalogue_on_disk(tmp_path):
    """--generated-files: each size and seed's products as image files and
    manifests (15% validation and test), read back with --dataset manifest."""
    args = learning_curve.build_parser().parse_args(
        ["--workdir", str(tmp_path), "--generated-files", "--title-mention", "0"])
    learning_curve.data_args(args, 20, 1)
    assert args.dataset == "manifest" and args.num_examples is None
    folder = os.path.join(str(tmp_path), "rows_20", "catalogue_seed_1")
    assert args.manifest == os.path.join(folder, "train.csv")
    with open(args.manifest) as f:
        rows = list(csv.DictReader(f))
    with open(args.test_manifest) as f:
        test_rows = list(csv.DictReader(f))
    assert (len(rows), len(test_rows)) == (20, 3)
    assert all(os.path.isfile(os.path.join(folder, r["image"])) for r in rows)
    # Titles never name an attribute: no color, pattern or style word in them.
    for row in rows:
        words = row["text"].lower().split()
        for task in ("color", "pattern", "style"):
            assert row[task] and row[task].lower() not in words
    # Written once: a second call reuses the files.
    stamp = os.path.getmtime(args.manifest)
    learning_curve.data_args(args, 20, 1)
    assert os.path.getmtime(args.manifest) == stamp


def test_title_mention_reaches_generated_rows(tmp_path):
    args = learning_curve.build_parser().parse_args(
        ["--workdir", str(tmp_path), "--title-mention", "0"])
    learning_curve.data_args(args, 300, 0)
    assert (args.dataset, args.num_examples) == ("synthetic", 300)
    assert args.run_args.split() == ["--title-mention", "0.0"]


def test_report_pairs_full_with_each_method_by_seed(tmp_path):
    """Differences are taken seed by seed (task averages), and every (seed,
    task) where full's test accuracy is under zero-shot's is named."""
    workdir = str(tmp_path)
    # Task averages (accuracy = recall here): full 0.70, 0.50; linear 0.60, 0.45.
    for seed, (full, linear, zero_shot) in enumerate([
            ((0.9, 0.5), (0.8, 0.4), (0.8, 0.6)),
            ((0.7, 0.3), (0.6, 0.3), (0.6, 0.2))]):
        for method, (color, style) in (("full", full), ("clip_linear", linear),
                                       ("zero_shot", zero_shot)):
            _write_run(workdir, 300, method, seed,
                       "zero_shot" if method == "zero_shot" else "tuning",
                       {"color": (color, color), "style": (style, style)})
    argv = ["--sizes", "300", "--seeds", "2", "--methods",
            "zero_shot,clip_linear,full", "--workdir", workdir, "--report-only"]
    assert learning_curve.main(argv) == 0
    report = open(os.path.join(workdir, "report.md")).read()
    # Linear: differences 0.10 and 0.05 -> +7.5 ± 3.5; zero-shot: 0.0 and 0.1.
    assert "| CLIP + linear heads | +7.5 ± 3.5 | +7.5 ± 3.5 |" in report
    assert "| Zero-shot CLIP | +5.0 ± 7.1 | +5.0 ± 7.1 |" in report
    assert ("- 300 rows: at or above in 3 of 4 (seed, task) pairs; under: "
            "seed 0 style 50.0 against 60.0.") in report
    with open(os.path.join(workdir, "report.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["metric"] == "accuracy_minus"]
    assert {(r["method"], r["mean"], r["seeds"]) for r in rows} == {
        ("clip_linear", "0.0750", "2"), ("zero_shot", "0.0500", "2")}


def test_report_names_every_command_that_trained_into_the_workdir(tmp_path):
    """A second command adding seeds to a workdir keeps the first in the
    report's "Produced by"; repeating a command does not list it twice."""
    workdir = str(tmp_path)
    first = "python trainers/learning_curve.py --sizes 300 --seeds 3"
    with open(os.path.join(workdir, learning_curve.SUITE_FILE), "w") as f:
        json.dump({"command": first}, f)  # As older versions wrote it.
    _write_run(workdir, 300, "full", 0, "tuning", {"color": (0.9, 0.9)})
    argv = ["--sizes", "300", "--seeds", "0", "--methods", "full",
            "--workdir", workdir]
    second = "python trainers/learning_curve.py " + " ".join(argv)
    for _ in range(2):
        assert learning_curve.main(argv) == 0
    with open(os.path.join(workdir, learning_curve.SUITE_FILE)) as f:
        assert json.load(f)["commands"] == [first, second]
    report = open(os.path.join(workdir, "report.md")).read()
    assert f"```\n{first}\n{second}\n```" in report
