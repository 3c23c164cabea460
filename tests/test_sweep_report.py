"""The noise sweep's report on hand-made runs: aggregation, separation, plot."""

import json
import os

import pytest

from trainers.suites.sweep_report import collect_sweep
from trainers.suites.sweep_report import separation
from trainers.suites.sweep_report import summarize_sweep
from trainers.suites.sweep_report import write_sweep_report


def write_run(root, rate, config, seed, recall, accuracy, image_weight):
    folder = os.path.join(root, f"misleading_title_{rate:g}", config, f"seed_{seed}")
    os.makedirs(folder)
    test = {
        task: {"count": 10, "recall_at_90_precision": r, "accuracy": a,
               "image_weight_mean": image_weight}
        for task, r, a in zip(("color", "style"), recall, accuracy)
    }
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump({"stages": {"tuning": {"test": test}}}, f)


@pytest.fixture
def sweep(tmp_path):
    # full: recall (0.8, 0.6) -> 0.7 at rate 0 for every seed; at 0.4 it
    # keeps 0.6 or 0.7 while no_ma drops to 0.2 or 0.3.
    for seed, (full, no_ma) in enumerate([(0.6, 0.2), (0.7, 0.3)]):
        write_run(tmp_path, 0, "full", seed, (0.8, 0.6), (0.9, 0.7), 0.6)
        write_run(tmp_path, 0, "no_ma", seed, (0.8, 0.6), (0.9, 0.7), 0.5)
        write_run(tmp_path, 0.4, "full", seed, (full, full), (0.8, 0.8), 0.7 + seed / 10)
        write_run(tmp_path, 0.4, "no_ma", seed, (no_ma, no_ma), (0.5, 0.5), 0.5)
    return tmp_path


def test_rows_average_over_tasks_then_over_seeds(sweep):
    rows = summarize_sweep(collect_sweep(str(sweep), "misleading_title"))
    by_key = {(r["config"], r["rate"]): r for r in rows}
    assert by_key[("full", 0.0)]["recall_at_90_precision"] == pytest.approx((0.7, 0.0))
    mean, std = by_key[("full", 0.4)]["recall_at_90_precision"]
    assert mean == pytest.approx(0.65) and std == pytest.approx(0.0707107, rel=1e-5)
    assert by_key[("full", 0.4)]["lambda"]["color"][0] == pytest.approx(0.75)
    assert by_key[("no_ma", 0.4)]["seeds"] == 2


def test_separation_beyond_twice_the_standard_error(sweep):
    rows = summarize_sweep(collect_sweep(str(sweep), "misleading_title"))
    result = separation(rows, "full", "no_ma", "recall_at_90_precision")
    (rate0, diff0, _, beyond0), (rate1, diff1, error1, beyond1) = result
    assert (rate0, diff0, beyond0) == (0.0, pytest.approx(0.0), False)
    # 0.65 - 0.25 = 0.4; both stds 0.0707 over sqrt(2) seeds: error 0.0707.
    assert diff1 == pytest.approx(0.4) and error1 == pytest.approx(0.0707107, rel=1e-5)
    assert rate1 == 0.4 and beyond1


def test_report_and_plot_are_written(sweep):
    write_sweep_report(str(sweep), "misleading_title", "python trainers/experiments.py")
    report = (sweep / "report.md").read_text()
    assert "| 0.4 | 65.0 ± 7.1 | 25.0 ± 7.1 |" in report
    assert "*beyond noise*" in report
    png = (sweep / "sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
