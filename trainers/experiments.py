"""The paper's experiments as one command: baselines, ablations, noise robustness.

    python trainers/experiments.py --suite ablation --dataset synthetic \
        --seeds 3 --workdir runs/ablation [--num-examples N] [--epochs E]

Trains and evaluates every method of the ablation suite with `trainers/run.py`
(same trainer, same splits), one seed per run, into `WORKDIR/<method>/seed_<s>/`:

- `zero_shot`: raw CLIP with class prompts, no training (Table 2, "Raw CLIP");
- `clip_linear`: fine-tuned CLIP, CLIP's pooled image and text embeddings into
  a linear head per task; a warmup stage (CLIP frozen: a linear probe) then an
  end2end stage (CLIP trained), the same warmup and end2end epochs as
  CMA-CLIP but no tuning stage, which is part of CMA-CLIP's recipe
  (Table 2, "Fine-tuned CLIP");
- `no_ma_sa`, `no_ma`, `full`: CMA-CLIP without modality and sequence-wise
  attention, without modality attention, and whole, all three stages
  (`--stage all`; Table 6).

Seeds run in the outer loop, so an interrupted suite already has whole seeds;
finished runs are skipped, so re-running the command resumes. After each run,
`trainers/noise_robustness.py`'s four test conditions are evaluated. Then
`WORKDIR/report.md` and `WORKDIR/report.csv` hold, per method, the test
recall at 90% precision (as Tables 2 and 6) and accuracy (as Tables 3 and 4)
per task and on average, as mean ± standard deviation over seeds, and the
noise-robustness table with mean λ per task and condition.
`--report-only` rewrites the report from the runs on disk.
"""

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

SUITES = {"ablation": ("zero_shot", "clip_linear", "no_ma_sa", "no_ma", "full")}
METHOD_LABELS = {
    "zero_shot": "Zero-shot CLIP",
    "clip_linear": "Fine-tuned CLIP",
    "no_ma_sa": "CMA-CLIP w/o (MA + SA)",
    "no_ma": "CMA-CLIP w/o MA",
    "full": "CMA-CLIP",
}
# Per method, the trainers/run.py calls in order (after the shared flags).
METHOD_RUNS = {
    "zero_shot": [["--variant", "zero_shot"]],
    "clip_linear": [
        ["--variant", "clip_linear", "--stage", "warmup"],
        ["--variant", "clip_linear", "--stage", "end2end"],
    ],
    "no_ma_sa": [["--variant", "no_ma_sa", "--stage", "all"]],
    "no_ma": [["--variant", "no_ma", "--stage", "all"]],
    "full": [["--variant", "full", "--stage", "all"]],
}
# Methods whose λ is learned (the others' is a constant).
LEARNED_IMAGE_WEIGHT = ("full",)
# The stage whose best checkpoint is a run's final model: the last one run.
FINAL_STAGE_ORDER = ("zero_shot", "tuning", "end2end", "warmup")
DONE_FILE = "suite_run.json"
SUITE_FILE = "suite.json"
CONDITION_LABELS = {
    "as_is": "as is",
    "no_attribute_words": "attribute words removed",
    "correct_attribute_words": "correct attribute words",
    "noise_image": "noise image",
}


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suite", default="ablation", choices=sorted(SUITES))
    parser.add_argument("--methods", help="Comma-separated subset of the suite's "
                        f"methods ({', '.join(SUITES['ablation'])}).")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--data-dir", help="As for trainers/run.py.")
    parser.add_argument("--seeds", type=int, default=3,
                        help="Runs per method, seeds 0..N-1.")
    parser.add_argument("--workdir", default="runs/ablation")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--num-examples", type=int)
    parser.add_argument("--epochs", type=int, help="Epochs for every stage.")
    parser.add_argument("--warmup-epochs", type=int)
    parser.add_argument("--end2end-epochs", type=int)
    parser.add_argument("--tuning-epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--no-cache-features", action="store_true",
                        help="Recompute frozen features every epoch (slower; "
                        "the results are the same).")
    parser.add_argument("--skip-noise", action="store_true",
                        help="No noise-robustness evaluation.")
    parser.add_argument("--run-args", default="",
                        help="More trainers/run.py flags for every run, quoted.")
    parser.add_argument("--report-only", action="store_true",
                        help="Rewrite the report from the runs on disk.")
    return parser


def shared_run_argv(args, seed, workdir):
    """The trainers/run.py flags every method's runs share."""
    argv = ["--dataset", args.dataset, "--model", args.model, "--seed", str(seed),
            "--workdir", workdir, "--quiet"]
    for flag in ("data_dir", "num_examples", "epochs", "warmup_epochs",
                 "end2end_epochs", "tuning_epochs", "batch_size", "learning_rate"):
        value = getattr(args, flag)
        if value is not None:
            argv += [f"--{flag.replace('_', '-')}", str(value)]
    if not args.no_cache_features:
        argv.append("--cache-features")
    return argv + shlex.split(args.run_args)


def methods_of(args):
    methods = SUITES[args.suite]
    if args.methods:
        wanted = args.methods.split(",")
        unknown = [m for m in wanted if m not in methods]
        if unknown:
            raise ValueError(f"Unknown methods {unknown}; the {args.suite} suite "
                             f"has {list(methods)}.")
        methods = tuple(m for m in methods if m in wanted)
    return methods


def run_method(args, method, seed):
    """Trains (or evaluates) one method for one seed, then its noise robustness."""
    import keras

    from trainers import noise_robustness
    from trainers import run as run_cli

    workdir = os.path.join(args.workdir, method, f"seed_{seed}")
    done_path = os.path.join(workdir, DONE_FILE)
    if os.path.isfile(done_path):
        print(f"[suite] {method} seed {seed}: finished earlier; skipping.", flush=True)
        return
    print(f"[suite] {method} seed {seed} -> {workdir}", flush=True)
    started = time.time()
    argv = shared_run_argv(args, seed, workdir)
    commands = []
    for extra in METHOD_RUNS[method]:
        keras.backend.clear_session()
        commands.append(argv + extra)
        status = run_cli.main(argv + extra)
        if status:
            raise RuntimeError(f"trainers/run.py {' '.join(argv + extra)} failed.")
    trained = time.time() - started
    if not args.skip_noise:
        keras.backend.clear_session()
        # The run's own data flags (WORKDIR/run.json) pick the test split.
        noise_robustness.main(["--workdir", workdir])
    record = {
        "method": method, "seed": seed, "commands": commands,
        "train_seconds": trained, "total_seconds": time.time() - started,
    }
    with open(done_path, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")


# --- Aggregation. ---


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


def _cell(pair, scale=100.0, digits=1):
    mean, std = pair
    if np.isnan(mean):
        return "–"
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


def write_report(workdir, methods, command, settings=None):
    """Writes `report.md` and `report.csv` into `workdir`; returns the numbers."""
    runs = collect_runs(workdir, methods)
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
    lines += [
        "Test split; each cell is the mean ± sample standard deviation over "
        "seeds (one run per seed: generated data, initialization and shuffle "
        "all follow the seed), in percent. The final model of a run is the "
        "best-on-validation checkpoint of its last stage.",
        "",
    ]
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
                        + [_cell(summary[t]) for t in tasks + ["average"]]
                        + [str(summary["seeds"])])
        lines += [f"## {title}", "", _markdown_table(header, rows), ""]

    summary = result["main"]["recall_at_90_precision"]
    lines += ["## Does full CMA-CLIP beat the ablations?", ""]
    for other in ("no_ma", "no_ma_sa", "clip_linear"):
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
                                + [_cell(metrics[metric][t])
                                   for t in tasks + ["average"]])
            lines += [f"### {title}", "", _markdown_table(noise_header, rows), ""]
        rows = []
        for method, conditions in result["noise"].items():
            if method not in LEARNED_IMAGE_WEIGHT:
                continue
            for condition, metrics in conditions.items():
                rows.append([METHOD_LABELS[method],
                             CONDITION_LABELS.get(condition, condition)]
                            + [_cell(metrics["image_weight_mean"][t], 1.0, 3)
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
                rows.append([METHOD_LABELS[method], task]
                            + [_cell(values[k], 100.0 if "weight" not in k else 1.0,
                                     1 if "weight" not in k else 3)
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
    import csv

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


def effective_settings(args):
    """What the runs used, defaults filled in from the model config."""
    from cmaclip_tf.models import get_model_config

    training = get_model_config(args.model)["training"]
    epochs = {
        stage: getattr(args, f"{stage}_epochs") or args.epochs
        or training["epochs"][stage]
        for stage in ("warmup", "end2end", "tuning")
    }
    examples = args.num_examples
    if examples is not None:
        # As `load_dataset`: validation and test are 15% of train each.
        held_out = math.ceil(0.15 * examples)
        examples = f"{examples}/{held_out}/{held_out}"
    elif args.dataset == "synthetic":
        from cmaclip_tf.data.synthetic_products import DEFAULT_NUM_EXAMPLES

        examples = "/".join(str(n) for n in DEFAULT_NUM_EXAMPLES.values())
    return {
        "dataset": args.dataset,
        "model": args.model,
        "seeds": ", ".join(str(s) for s in range(args.seeds)),
        "examples (train/validation/test)": examples or "all",
        "epochs (warmup/end2end/tuning)": "/".join(str(e) for e in epochs.values()),
        "batch size": args.batch_size or training["batch_size"],
        "learning rate": args.learning_rate or training["learning_rate"],
        "weight decay": training["weight_decay"],
    }


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    methods = methods_of(args)
    os.makedirs(args.workdir, exist_ok=True)
    suite_path = os.path.join(args.workdir, SUITE_FILE)
    command = "python trainers/experiments.py " + " ".join(shlex.quote(a) for a in argv)
    settings = effective_settings(args)
    if args.report_only and os.path.isfile(suite_path):
        # The report names the command and settings that produced the runs.
        with open(suite_path) as f:
            suite = json.load(f)
        command, settings = suite["command"], suite.get("settings", settings)
    started = time.time()
    if not args.report_only:
        with open(suite_path, "w") as f:
            json.dump({"command": command, "methods": list(methods),
                       "settings": settings}, f, indent=2)
            f.write("\n")
        for seed in range(args.seeds):
            for method in methods:
                run_method(args, method, seed)
    write_report(args.workdir, methods, command, settings)
    print(f"[suite] Report: {os.path.join(args.workdir, 'report.md')} "
          f"({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
