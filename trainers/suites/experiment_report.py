"""The ablation suite's report: per-method metrics over seeds, from the runs on disk.

`write_report(workdir, methods, command)` reads every `<method>/seed_<s>/`
run (`metrics.json`, `noise_robustness.json`, `suite_run.json`) and writes
`report.md` and `report.csv`: test recall at 90% precision and accuracy per
task and on average (mean ± standard deviation over seeds), whether full
CMA-CLIP beats the ablations per seed, the noise-robustness tables with mean
λ per task and condition, and the run times.
"""

import csv
import datetime
import json
import os
import platform

import numpy as np

from trainers.suites.experiment_suites import CONDITION_LABELS
from trainers.suites.experiment_suites import DONE_FILE
from trainers.suites.experiment_suites import FINAL_STAGE_ORDER
from trainers.suites.experiment_suites import LEARNED_IMAGE_WEIGHT
from trainers.suites.experiment_suites import METHOD_LABELS
from trainers.suites.experiment_suites import METHOD_RUNS


def final_stage_metrics(metrics):
    """`(stage, {task: metrics})`: the test metrics of the run's final model."""
    stages = metrics.get("stages", {})
    for stage in FINAL_STAGE_ORDER:
        if stage in stages and "test" in stages[stage]:
            return stage, stages[stage]["test"]
    raise ValueError("The run has no finished stage with test metrics.")


def collect_runs(workdir, methods):
    """`{method: {seed: run}}` of the runs on disk; run: metrics and timings."""
    runs = {}
    for method in methods:
        method_dir = os.path.join(workdir, method)
        if not os.path.isdir(method_dir):
            continue
        for name in sorted(os.listdir(method_dir)):
            run_dir = os.path.join(method_dir, name)
            metrics_path = os.path.join(run_dir, "metrics.json")
            if not name.startswith("seed_") or not os.path.isfile(metrics_path):
                continue
            with open(metrics_path) as f:
                metrics = json.load(f)
            try:
                stage, test = final_stage_metrics(metrics)
            except ValueError:
                continue
            run = {"stage": stage, "test": test}
            for key, filename in (("noise", "noise_robustness.json"),
                                  ("timing", DONE_FILE)):
                path = os.path.join(run_dir, filename)
                if os.path.isfile(path):
                    with open(path) as f:
                        run[key] = json.load(f)
            runs.setdefault(method, {})[int(name[len("seed_"):])] = run
    return runs


def mean_std(values):
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return float(values.mean()), std


def summarize(per_seed, tasks, metric):
    """Per task and on average (over tasks, per seed), mean ± std over seeds.

    Args:
        per_seed: list of `{task: metrics}`, one per seed.

    Returns:
        `{task or "average": (mean, std)}` plus `"seeds"`: the count.
    """
    table = {}
    for task in tasks:
        table[task] = mean_std([m[task][metric] for m in per_seed if task in m])
    table["average"] = mean_std(
        [np.mean([m[task][metric] for task in tasks]) for m in per_seed]
    )
    table["seeds"] = len(per_seed)
    return table


def aggregate(runs, methods):
    """The report's numbers from `collect_runs`' output.

    Returns:
        dict with `tasks`, `main` (`{metric: {method: summary}}`), `noise`
        (`{method: {condition: {metric: summary}}}`) and `mention_split`
        (`{method: {task: {key: (mean, std)}}}`, test split as is: λ and
        accuracy where the title names the task and where it does not).
    """
    tasks = None
    for method in methods:
        for run in runs.get(method, {}).values():
            tasks = list(run["test"])
            break
        if tasks:
            break
    result = {"tasks": tasks or [], "main": {}, "noise": {}, "mention_split": {}}
    for metric in ("recall_at_90_precision", "accuracy"):
        result["main"][metric] = {
            method: summarize([r["test"] for r in runs[method].values()], tasks, metric)
            for method in methods if runs.get(method)
        }
    for method in methods:
        noisy = [r["noise"] for r in runs.get(method, {}).values() if "noise" in r]
        if not noisy:
            continue
        result["noise"][method] = {
            condition: {
                metric: summarize([n[condition] for n in noisy], tasks, metric)
                for metric in ("recall_at_90_precision", "accuracy",
                               "image_weight_mean")
            }
            for condition in noisy[0]
        }
        split = mention_split([n["as_is"] for n in noisy if "as_is" in n], tasks)
        if split:
            result["mention_split"][method] = split
    return result


MENTION_KEYS = ("named_share", "image_weight_mean_named", "image_weight_mean_unnamed",
                "accuracy_named", "accuracy_unnamed")


def mention_split(per_seed, tasks):
    """`{task: {key: (mean, std)}}` of `MENTION_KEYS` where every seed has them."""
    split = {}
    for task in tasks:
        values = {
            key: mean_std([m[task][key] for m in per_seed])
            for key in MENTION_KEYS
            if per_seed and all(key in m.get(task, {}) for m in per_seed)
        }
        if values:
            split[task] = values
    return split


# --- The report. ---


def _cell(pair, scale=100.0, digits=1, seeds=2):
    """`mean ± std`; of one seed, the value alone (there is no spread)."""
    mean, std = pair
    if np.isnan(mean):
        return "–"
    if seeds < 2:
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def _markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def comparison(summary, method, other):
    """A sentence: does `method` beat `other` on average recall at 90% precision?"""
    if method not in summary or other not in summary:
        return None
    a, b = summary[method]["average"], summary[other]["average"]
    difference = (a[0] - b[0]) * 100
    verdict = ("beats" if difference > 0 else "ties with" if difference == 0
               else "does not beat")
    seeds = min(summary[method]["seeds"], summary[other]["seeds"])
    if seeds < 2:
        return (f"{METHOD_LABELS[method]} {verdict} {METHOD_LABELS[other]} on "
                f"average recall at 90% precision: {a[0] * 100:.1f} vs "
                f"{b[0] * 100:.1f} ({difference:+.1f} points; one seed, so no "
                "spread to tell a difference from noise: run more --seeds).")
    # Noise level of a difference of two means over n seeds each.
    noise = 100 * float(np.sqrt(a[1] ** 2 / max(summary[method]["seeds"], 1)
                                + b[1] ** 2 / max(summary[other]["seeds"], 1)))
    significance = ("larger than" if abs(difference) > 2 * noise
                    else "within")
    return (f"{METHOD_LABELS[method]} {verdict} {METHOD_LABELS[other]} on average "
            f"recall at 90% precision: {a[0] * 100:.1f} ± {a[1] * 100:.1f} vs "
            f"{b[0] * 100:.1f} ± {b[1] * 100:.1f} ({difference:+.1f} points; "
            f"{significance} two standard errors of the difference, "
            f"{2 * noise:.1f} points).")


def per_seed_wins(runs, method, other, tasks):
    """How many shared seeds `method` has the higher average R@P90 on."""
    shared = sorted(set(runs.get(method, {})) & set(runs.get(other, {})))

    def average(run):
        return np.mean([run["test"][t]["recall_at_90_precision"] for t in tasks])

    wins = sum(average(runs[method][s]) > average(runs[other][s]) for s in shared)
    return wins, len(shared)


def data_source_sentence(settings, runs):
    """What a cell is, and what the seed changes, for the report's data."""
    dataset = (settings or {}).get("dataset", "synthetic")
    if dataset == "synthetic":
        follows = ("generated data, initialization and shuffle all follow "
                   "the seed")
    else:
        follows = (f"the data is the same {(settings or {}).get('data', dataset)}"
                   " in every run; initialization, shuffle and any validation "
                   "split carved out of train follow the seed")
    seeds = max((len(by_seed) for by_seed in runs.values()), default=0)
    cell = ("the mean ± sample standard deviation over seeds" if seeds > 1
            else "one run's result (one seed: no spread)")
    return (f"Test split; each cell is {cell} (one run per seed: {follows}), "
            "in percent. The final model of a run is the best-on-validation "
            "checkpoint of its last stage.")


def write_report(workdir, methods, command, settings=None):
    """Writes `report.md` and `report.csv` into `workdir`; returns the numbers."""
    runs = collect_runs(workdir, methods)
    if not runs:
        raise ValueError(
            f"No finished run under {workdir} to report on (of methods "
            f"{', '.join(methods)}).")
    result = aggregate(runs, methods)
    tasks = result["tasks"]
    header = ["Method"] + [t.capitalize() for t in tasks] + ["Avg.", "Seeds"]
    lines = [
        "# Ablation suite report",
        "",
        "Produced by:",
        "",
        "```",
        command,
        "```",
        "",
        f"Written {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"on {platform.node() or 'this machine'} ({os.cpu_count()} CPUs).",
        "",
    ]
    if settings:
        lines += ["Settings: " + "; ".join(f"{k} {v}" for k, v in settings.items())
                  + ".", ""]
    lines += ["Methods: `trainers/run.py` calls per seed, each with `--dataset`, "
              "`--model`, `--seed`, `--workdir`, `--quiet`, `--cache-features` "
              "and the suite's epoch and example flags:", ""]
    for method in methods:
        calls = "; then ".join(" ".join(extra) for extra in METHOD_RUNS[method])
        lines.append(f"- {METHOD_LABELS[method]} (`{method}`): `{calls}`")
    lines.append("")
    lines += [data_source_sentence(settings, runs), ""]
    titles = {
        "recall_at_90_precision": "Recall (%) at 90% precision (as the paper's "
                                  "Tables 2 and 6)",
        "accuracy": "Accuracy (%) (as the paper's Tables 3 and 4)",
    }
    for metric, title in titles.items():
        rows = []
        for method in methods:
            summary = result["main"][metric].get(method)
            if summary is None:
                continue
            rows.append([METHOD_LABELS[method]]
                        + [_cell(summary[t], seeds=summary["seeds"])
                           for t in tasks + ["average"]]
                        + [str(summary["seeds"])])
        lines += [f"## {title}", "", _markdown_table(header, rows), ""]

    summary = result["main"]["recall_at_90_precision"]
    lines += ["## Does full CMA-CLIP beat the ablations and baselines?", ""]
    for other in ("no_ma", "no_ma_sa", "clip_linear", "finetuned_clip",
                  "full_contrastive"):
        sentence = comparison(summary, "full", other)
        if sentence:
            wins, shared = per_seed_wins(runs, "full", other, tasks)
            lines.append(f"- {sentence} Higher on {wins} of {shared} seeds.")
    lines.append("")

    if result["noise"]:
        lines += [
            "## Noise robustness (the paper's Table 5 as a measurement)",
            "",
            "The test split under four conditions: as is; every attribute word "
            "(class names and the generator's synonyms, of every task) removed "
            "from the titles; the titles' attribute words replaced by the "
            "correct ones of every task; the image replaced by uniform noise. "
            "Modality attention should move λ (the image's weight) up when the "
            "title carries nothing and down when the image is noise.",
            "",
        ]
        noise_header = ["Method", "Condition"] + [t.capitalize() for t in tasks] + ["Avg."]
        for metric, title in (
            ("recall_at_90_precision", "Recall (%) at 90% precision"),
            ("accuracy", "Accuracy (%)"),
        ):
            rows = []
            for method, conditions in result["noise"].items():
                for condition, metrics in conditions.items():
                    rows.append([METHOD_LABELS[method],
                                 CONDITION_LABELS.get(condition, condition)]
                                + [_cell(metrics[metric][t],
                                         seeds=metrics[metric]["seeds"])
                                   for t in tasks + ["average"]])
            lines += [f"### {title}", "", _markdown_table(noise_header, rows), ""]
        rows = []
        for method, conditions in result["noise"].items():
            if method not in LEARNED_IMAGE_WEIGHT:
                continue
            for condition, metrics in conditions.items():
                rows.append([METHOD_LABELS[method],
                             CONDITION_LABELS.get(condition, condition)]
                            + [_cell(metrics["image_weight_mean"][t], 1.0, 3,
                                     metrics["image_weight_mean"]["seeds"])
                               for t in tasks + ["average"]])
        lines += [
            "### Mean λ (weight of the image embedding, eq. 6)",
            "",
            "Only full CMA-CLIP learns λ; the ablations average the two "
            "modalities (λ = 0.5 by construction), fine-tuned CLIP "
            "concatenates them (reported as 0.5) and zero-shot CLIP reads "
            "the image only (1.0), so only CMA-CLIP is listed.",
            "",
            _markdown_table(noise_header, rows),
            "",
        ]
        rows = []
        for method, split in result["mention_split"].items():
            if method not in LEARNED_IMAGE_WEIGHT:
                continue
            for task, values in split.items():
                seeds = len(runs.get(method, {}))
                rows.append([METHOD_LABELS[method], task]
                            + [_cell(values[k], 100.0 if "weight" not in k else 1.0,
                                     1 if "weight" not in k else 3, seeds)
                               if k in values else "–" for k in MENTION_KEYS])
        if rows:
            lines += [
                "### λ where the title names the attribute and where it is silent",
                "",
                "Test split as is. A title names a task when it holds any of "
                "the task's words (right or wrong). If modality attention "
                "filtered irrelevant text, λ would be higher where the title "
                "is silent.",
                "",
                _markdown_table(["Method", "Task", "Titles naming it (%)",
                                 "λ, named", "λ, silent", "Accuracy, named (%)",
                                 "Accuracy, silent (%)"], rows),
                "",
            ]

    timing_rows = []
    for method in methods:
        seconds = [r["timing"]["total_seconds"] for r in runs.get(method, {}).values()
                   if "timing" in r]
        if seconds:
            timing_rows.append([METHOD_LABELS[method], f"{np.mean(seconds):.0f}",
                                f"{np.sum(seconds):.0f}", str(len(seconds))])
    if timing_rows:
        total = sum(float(r[2]) for r in timing_rows)
        lines += ["## Run time", "",
                  _markdown_table(["Method", "Seconds per seed", "Seconds in all",
                                   "Seeds"], timing_rows),
                  "", f"Suite total: {total / 60:.1f} minutes (training and "
                  "noise-robustness evaluation).", ""]
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write("\n".join(lines))
    write_csv(os.path.join(workdir, "report.csv"), result, methods, command)
    return result


def write_csv(path, result, methods, command):
    """The report's tables as CSV: one row per method (and condition) and metric."""
    tasks = result["tasks"]
    columns = ["table", "method", "condition", "metric"]
    for name in tasks + ["average"]:
        columns += [f"{name}_mean", f"{name}_std"]
    columns.append("seeds")

    def row(table, method, condition, metric, summary):
        values = [table, method, condition, metric]
        for name in tasks + ["average"]:
            values += [f"{summary[name][0]:.4f}", f"{summary[name][1]:.4f}"]
        return values + [summary["seeds"]]

    with open(path, "w", newline="") as f:
        f.write(f"# {command}\n")
        writer = csv.writer(f)
        writer.writerow(columns)
        for metric, by_method in result["main"].items():
            for method in methods:
                if method in by_method:
                    writer.writerow(row("test", method, "", metric, by_method[method]))
        for method, conditions in result["noise"].items():
            for condition, metrics in conditions.items():
                for metric, summary in metrics.items():
                    writer.writerow(row("noise_robustness", method, condition,
                                        metric, summary))
