"""A noise sweep's report: metrics against the noise rate, per method, with plots.

`write_sweep_report(workdir, dial, command)` reads every
`<dial>_<rate>/<method>[-<loss>]/seed_<s>/metrics.json` under `workdir` and
writes `report.md`, `report.csv` and `sweep.png`: test recall at 90%
precision and accuracy (averaged over tasks), and mean λ per task, against
the rate, one line per method (and loss) with a band of ±1 standard
deviation over seeds; and, rate by rate, whether full CMA-CLIP separates
from each other method beyond the seed noise.
"""

import csv
import datetime
import json
import os

import numpy as np

from trainers.suites.experiment_report import final_stage_metrics
from trainers.suites.experiment_report import mean_std
from trainers.suites.experiment_suites import DIAL_LABELS
from trainers.suites.experiment_suites import LEARNED_IMAGE_WEIGHT
from trainers.suites.experiment_suites import LOSS_LABELS
from trainers.suites.experiment_suites import METHOD_LABELS

METRICS = {"recall_at_90_precision": "recall at 90% precision",
           "accuracy": "accuracy"}


def config_label(config):
    """`full-gce` -> `CMA-CLIP (GCE)`."""
    method, _, loss = config.partition("-")
    label = METHOD_LABELS.get(method, method)
    return f"{label} ({LOSS_LABELS.get(loss, loss)})" if loss else label


def collect_sweep(workdir, dial):
    """`{config: {rate: [{task: test metrics}, ...one per seed]}}`."""
    runs = {}
    prefix = f"{dial}_"
    for point in sorted(os.listdir(workdir)):
        point_dir = os.path.join(workdir, point)
        if not point.startswith(prefix) or not os.path.isdir(point_dir):
            continue
        rate = float(point[len(prefix):])
        for config in sorted(os.listdir(point_dir)):
            config_dir = os.path.join(point_dir, config)
            for seed in sorted(os.listdir(config_dir)):
                path = os.path.join(config_dir, seed, "metrics.json")
                if not seed.startswith("seed_") or not os.path.isfile(path):
                    continue
                with open(path) as f:
                    _, test = final_stage_metrics(json.load(f))
                runs.setdefault(config, {}).setdefault(rate, []).append(test)
    return runs


def summarize_sweep(runs):
    """Rows `{config, rate, seeds, <metric>: (mean, std), lambda: {task: (mean,
    std)}}`; a metric is the mean over tasks, per seed, then over seeds."""
    rows = []
    for config, by_rate in runs.items():
        for rate in sorted(by_rate):
            seeds = by_rate[rate]
            tasks = sorted(seeds[0])
            row = {"config": config, "rate": rate, "seeds": len(seeds)}
            for metric in METRICS:
                row[metric] = mean_std(
                    [np.mean([m[t].get(metric, 0.0) for t in tasks]) for m in seeds]
                )
            row["lambda"] = {
                t: mean_std([m[t].get("image_weight_mean", 0.5) for m in seeds])
                for t in tasks
            }
            rows.append(row)
    return rows


def separation(rows, config, other, metric):
    """Per rate: `(rate, difference of means, its standard error, beyond)`.

    `beyond` is true where the difference exceeds twice its standard error
    (the seeds' standard deviations over the square roots of their counts):
    the methods separate beyond the seed noise.
    """
    by_key = {(r["config"], r["rate"]): r for r in rows}
    result = []
    for rate in sorted({r["rate"] for r in rows}):
        a, b = by_key.get((config, rate)), by_key.get((other, rate))
        if a is None or b is None:
            continue
        difference = a[metric][0] - b[metric][0]
        error = float(np.sqrt(a[metric][1] ** 2 / max(a["seeds"], 1)
                              + b[metric][1] ** 2 / max(b["seeds"], 1)))
        beyond = a["seeds"] > 1 and b["seeds"] > 1 and abs(difference) > 2 * error
        result.append((rate, difference, error, bool(beyond)))
    return result


def plot_sweep(rows, path, dial):
    """Saves the sweep's plot: one panel per metric and one for λ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = list(dict.fromkeys(r["config"] for r in rows))
    tasks = sorted(rows[0]["lambda"]) if rows else []
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for axis, metric in zip(axes, METRICS):
        for config in configs:
            points = [r for r in rows if r["config"] == config]
            rates = np.array([r["rate"] for r in points])
            mean = 100 * np.array([r[metric][0] for r in points])
            std = 100 * np.array([r[metric][1] for r in points])
            axis.plot(rates, mean, marker="o", label=config_label(config))
            axis.fill_between(rates, mean - std, mean + std, alpha=0.2)
        axis.set_title(f"Test {METRICS[metric]} (mean over tasks)")
        axis.set_xlabel(DIAL_LABELS.get(dial, dial))
        axis.set_ylabel("%")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    axis = axes[2]
    for config in configs:
        if config.partition("-")[0] not in LEARNED_IMAGE_WEIGHT:
            continue  # λ is a constant 0.5 without modality attention.
        points = [r for r in rows if r["config"] == config]
        rates = np.array([r["rate"] for r in points])
        for task in tasks:
            mean = np.array([r["lambda"][task][0] for r in points])
            std = np.array([r["lambda"][task][1] for r in points])
            axis.plot(rates, mean, marker="o",
                      label=f"{task}, {config_label(config)}")
            axis.fill_between(rates, mean - std, mean + std, alpha=0.15)
    axis.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    axis.set_title("Mean λ (weight of the image), test")
    axis.set_xlabel(DIAL_LABELS.get(dial, dial))
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _cell(pair):
    mean, std = pair
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def write_sweep_report(workdir, dial, command, settings=None):
    """Writes `report.md`, `report.csv` and `sweep.png`; returns the rows."""
    rows = summarize_sweep(collect_sweep(workdir, dial))
    if not rows:
        raise ValueError(f"No finished runs of the {dial} sweep in {workdir}.")
    plot_sweep(rows, os.path.join(workdir, "sweep.png"), dial)
    configs = list(dict.fromkeys(r["config"] for r in rows))
    tasks = sorted(rows[0]["lambda"])
    lines = [
        f"# Noise sweep: {DIAL_LABELS.get(dial, dial)}", "", "Produced by:", "",
        "```", command, "```", "",
        f"Written {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} "
        "UTC.", "",
    ]
    if settings:
        lines += ["Settings: " + "; ".join(f"{k} {v}" for k, v in settings.items())
                  + ".", ""]
    lines += ["![sweep](sweep.png)", ""]
    for metric, name in METRICS.items():
        lines += [f"## Test {name} (mean over tasks, %, mean ± std over seeds)", "",
                  "| rate | " + " | ".join(config_label(c) for c in configs) + " |",
                  "| --- |" + " --- |" * len(configs)]
        for rate in sorted({r["rate"] for r in rows}):
            cells = []
            for config in configs:
                row = next((r for r in rows if r["config"] == config
                            and r["rate"] == rate), None)
                cells.append(_cell(row[metric]) if row else "")
            lines.append(f"| {rate:g} | " + " | ".join(cells) + " |")
        lines.append("")
    learned = [c for c in configs if c.partition("-")[0] in LEARNED_IMAGE_WEIGHT]
    if learned:
        lines += ["## Mean λ per task (test)", "",
                  "| rate | line | " + " | ".join(tasks) + " |",
                  "| --- | --- |" + " --- |" * len(tasks)]
        for row in rows:
            if row["config"] in learned:
                lines.append(
                    f"| {row['rate']:g} | {config_label(row['config'])} | "
                    + " | ".join(f"{row['lambda'][t][0]:.2f} ± "
                                 f"{row['lambda'][t][1]:.2f}" for t in tasks)
                    + " |")
        lines.append("")
    reference = next((c for c in configs if c == "full"), configs[0])
    others = [c for c in configs if c != reference]
    if others:
        lines += [f"## {config_label(reference)} against the others", "",
                  "Difference of the means (points); *beyond noise* where it "
                  "exceeds twice its standard error over seeds.", "",
                  "| other | metric | " + " | ".join(
                      f"rate {r:g}" for r in sorted({r['rate'] for r in rows}))
                  + " |", "| --- | --- |" + " --- |" * len(
                      {r["rate"] for r in rows})]
        for other in others:
            for metric, name in METRICS.items():
                cells = [
                    f"{100 * d:+.1f} ± {100 * e:.1f}" + (" *beyond noise*" if b else "")
                    for _, d, e, b in separation(rows, reference, other, metric)
                ]
                lines.append(f"| {config_label(other)} | {name} | "
                             + " | ".join(cells) + " |")
        lines.append("")
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(workdir, "report.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["dial", "rate", "line", "seeds", "metric", "mean", "std"])
        for row in rows:
            for metric in METRICS:
                writer.writerow([dial, row["rate"], row["config"], row["seeds"],
                                 metric, *row[metric]])
            for task, pair in row["lambda"].items():
                writer.writerow([dial, row["rate"], row["config"], row["seeds"],
                                 f"lambda_{task}", *pair])
    return rows
