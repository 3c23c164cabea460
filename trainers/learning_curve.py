"""Learning curves: every method at several training-set sizes, over seeds.

    python trainers/learning_curve.py --sizes 300,1000,3000 --seeds 3 \
        --workdir runs/learning_curve [--methods ...] [--run-args "..."]

For each size (`--num-examples` of `trainers/run.py`: training rows, with
validation and test 15% of it each), each seed and each method of the
ablation suite (`trainers/experiments.py`'s runs, default recipe and flags
unless `--run-args` adds some), trains into
`WORKDIR/rows_<size>/<method>/seed_<s>/`; finished runs are skipped, so a
re-run resumes. Then `WORKDIR/report.md`, `report.csv` and `curve.png` hold
the test recall at 90% precision and accuracy per method and size (mean and
sample standard deviation over seeds, averaged over tasks, and per task),
and the curve of recall against training rows with a ±1 s.d. band.
The report also sets full CMA-CLIP against each other method seed by seed
(same seed, same data: the paired difference and its spread) and lists every
(seed, task) whose test accuracy is under zero-shot CLIP's.
`--report-only` rewrites the report from the runs on disk.

`--generated-files` reads the data as a user's catalogue is read: each size
and seed's generated products are written to disk first (PNG files and CSV
manifests, `WORKDIR/rows_<size>/catalogue_seed_<s>/`, validation and test
15% of the rows each) and every method trains with `--dataset manifest` on
them. `--title-mention` sets the share of titles that name each attribute
(0: titles never name one), for either source.
"""

import csv
import dataclasses
import datetime
import json
import os
import platform
import shlex
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cmaclip_tf.datasets.synthetic.products import SyntheticProducts  # noqa: E402
from cmaclip_tf.datasets.synthetic.products import SyntheticProductsConfig  # noqa: E402
from trainers import command_line  # noqa: E402
from trainers import experiments  # noqa: E402
from trainers.suites.experiment_report import aggregate  # noqa: E402
from trainers.suites.experiment_report import collect_runs  # noqa: E402
from trainers.suites.experiment_report import mean_std  # noqa: E402
from trainers.suites.experiment_suites import METHOD_LABELS  # noqa: E402

DEFAULT_METHODS = "zero_shot,clip_linear,no_ma_sa,no_ma,full"
METRICS = (("recall_at_90_precision", "Recall (%) at 90% precision"),
           ("accuracy", "Accuracy (%)"))
SUITE_FILE = "learning_curve.json"
# The method the report sets against every other, seed by seed.
REFERENCE = "full"


def build_parser():
    parser = experiments.build_parser()
    parser.description = __doc__
    parser.set_defaults(methods=DEFAULT_METHODS, workdir="runs/learning_curve",
                        skip_noise=True)
    parser.add_argument("--sizes", default="300,1000,3000",
                        help="Comma-separated training-set sizes.")
    parser.add_argument("--generated-files", action="store_true",
                        help="Write each size's generated catalogue to disk "
                        "(images and CSV manifests) and train on the files "
                        "with --dataset manifest.")
    parser.add_argument("--title-mention", type=float,
                        help="Share of titles that name each attribute "
                        "(0: never; default: the generator's 0.67 color, "
                        "0.25 pattern, 0.15 style).")
    return parser


def write_catalogue(folder, size, seed, title_mention=None, image_size=64):
    """The generated products of `seed` as files: `size` training rows,
    validation and test 15% of it each; returns `{split: manifest path}`
    (written once: an existing catalogue is reused)."""
    splits = {"train": size, "validation": max(1, round(0.15 * size)),
              "test": max(1, round(0.15 * size))}
    manifests = {split: os.path.join(folder, f"{split}.csv") for split in splits}
    done = os.path.join(folder, "written.json")
    if os.path.isfile(done):
        return manifests
    config = dataclasses.replace(SyntheticProductsConfig(), seed=seed,
                                 image_size=image_size)
    if title_mention is not None:
        config = config.with_rate("mention", title_mention)
    SyntheticProducts(config).write(folder, splits)
    with open(done, "w") as f:
        json.dump({"splits": splits, "seed": seed,
                   "title_mention": title_mention}, f)
    return manifests


def data_args(args, size, seed):
    """Sets `args`' data flags for one size and seed (the suite's runs read
    them): generated rows, or the catalogue written for them."""
    if not args.generated_files:
        args.num_examples = size
        if args.title_mention is not None and "--title-mention" not in args.run_args:
            args.run_args = f"{args.run_args} --title-mention {args.title_mention}"
        return
    manifests = write_catalogue(
        os.path.join(size_dir(args.workdir, size), f"catalogue_seed_{seed}"),
        size, seed, args.title_mention)
    args.dataset, args.num_examples = "manifest", None
    args.manifest = manifests["train"]
    args.val_manifest = manifests["validation"]
    args.test_manifest = manifests["test"]


def size_dir(workdir, size):
    return os.path.join(workdir, f"rows_{size}")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    command_line.quiet_tensorflow()
    methods = experiments.methods_of(args)
    sizes = [int(s) for s in args.sizes.split(",")]
    os.makedirs(args.workdir, exist_ok=True)
    command = "python trainers/learning_curve.py " + " ".join(
        shlex.quote(a) for a in argv)
    suite_path = os.path.join(args.workdir, SUITE_FILE)
    commands = []
    if os.path.isfile(suite_path):
        with open(suite_path) as f:
            suite = json.load(f)
        commands = suite.get("commands") or [suite["command"]]
    if not args.report_only:
        # Every command that trained into this workdir, in order: a report
        # that adds seeds or methods to earlier runs names them all.
        commands = [c for c in commands if c != command] + [command]
        with open(suite_path, "w") as f:
            json.dump({"commands": commands, "methods": list(methods),
                       "sizes": sizes}, f, indent=2)
        for seed in range(args.seeds):
            for size in sizes:
                data_args(args, size, seed)
                for method in methods:
                    experiments.run_method(
                        args, method, seed, noise=False,
                        workdir=os.path.join(size_dir(args.workdir, size),
                                             method, f"seed_{seed}"))
    commands = commands or [command]
    runs = {size: collect_runs(size_dir(args.workdir, size), methods)
            for size in sizes}
    results = {size: aggregate(runs[size], methods) for size in sizes}
    for size in sizes:
        results[size]["paired"] = paired_differences(runs[size], methods)
        results[size]["under_zero_shot"] = under_zero_shot(runs[size])
    write_report(args.workdir, methods, sizes, results, commands)
    print(f"[learning curve] Report: {os.path.join(args.workdir, 'report.md')}")
    return 0


def _task_average(test, metric):
    return sum(m[metric] for m in test.values()) / len(test)


def paired_differences(runs, methods, reference=REFERENCE):
    """`{method: {metric: (mean, std, seeds)}}`: the reference's task-average
    test score minus the method's, over the seeds both finished.

    Seeds share their data, split and start, so the paired difference's
    spread is the comparison's own noise, narrower than the two methods'
    spreads side by side.
    """
    ours = runs.get(reference, {})
    paired = {}
    for method in methods:
        theirs = runs.get(method, {})
        seeds = sorted(set(ours) & set(theirs))
        if method == reference or not seeds:
            continue
        paired[method] = {}
        for metric, _ in METRICS:
            mean, std = mean_std([
                _task_average(ours[s]["test"], metric)
                - _task_average(theirs[s]["test"], metric) for s in seeds])
            paired[method][metric] = (mean, std, len(seeds))
    return paired


def under_zero_shot(runs, reference=REFERENCE):
    """`(pairs, misses)`: the (seed, task) pairs where both the reference and
    zero-shot CLIP finished, and those where the reference's test accuracy is
    under zero-shot's, as `(seed, task, ours, zero_shot)`."""
    ours, zero_shot = runs.get(reference, {}), runs.get("zero_shot", {})
    pairs, misses = 0, []
    for seed in sorted(set(ours) & set(zero_shot)):
        for task, metrics in ours[seed]["test"].items():
            if task not in zero_shot[seed]["test"]:
                continue
            pairs += 1
            theirs = zero_shot[seed]["test"][task]["accuracy"]
            if metrics["accuracy"] < theirs:
                misses.append((seed, task, metrics["accuracy"], theirs))
    return pairs, misses


def _paired_section(methods, sizes, results, rows):
    """The report's lines comparing the reference with every method."""
    if not any(results[s]["paired"] for s in sizes):
        return []
    label = METHOD_LABELS[REFERENCE]
    lines = [f"## {label} against each method, paired by seed", "",
             f"{label}'s task-average test score minus the method's, same "
             "seed (same data, split and start), in points: mean ± sample "
             "s.d. over seeds.", ""]
    header = ["Method"] + [f"{name}, {s:,} rows" for name in ("R@P90", "accuracy")
                           for s in sizes]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        cells = []
        for metric, _ in METRICS:
            for size in sizes:
                value = results[size]["paired"].get(method, {}).get(metric)
                if value is None:
                    cells.append("-")
                    continue
                mean, std, seeds = value
                cells.append(f"{100 * mean:+.1f}"
                             + (f" ± {100 * std:.1f}" if seeds > 1 else ""))
                rows.append([f"{metric}_minus", size, method, "average",
                             f"{mean:.4f}", f"{std:.4f}", seeds])
        if any(c != "-" for c in cells):
            lines.append(f"| {METHOD_LABELS[method]} | " + " | ".join(cells) + " |")
    lines.append("")
    checked = [(s, results[s]["under_zero_shot"]) for s in sizes
               if results[s]["under_zero_shot"][0]]
    if checked:
        lines += [f"Per task, {label}'s test accuracy against zero-shot CLIP's "
                  "(same seed):", ""]
        for size, (pairs, misses) in checked:
            line = (f"- {size:,} rows: at or above in {pairs - len(misses)} of "
                    f"{pairs} (seed, task) pairs")
            if misses:
                line += "; under: " + ", ".join(
                    f"seed {seed} {task} {100 * ours:.1f} against {100 * theirs:.1f}"
                    for seed, task, ours, theirs in misses)
            lines.append(line + ".")
        lines.append("")
    return lines


def write_report(workdir, methods, sizes, results, commands):
    """`report.md`, `report.csv` and `curve.png` from `aggregate` per size,
    with `paired_differences` and `under_zero_shot` added as `paired` and
    `under_zero_shot`."""
    lines = [
        "# Learning curve", "", "Produced by:", "", "```", *commands, "```", "",
        f"Written {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} "
        f"UTC on {platform.node() or 'this machine'} ({os.cpu_count()} CPUs). "
        "Test split; mean ± sample standard deviation over seeds (no spread "
        "with one seed), in percent; the final model of a run is the "
        "best-on-validation checkpoint of its last stage.", "",
    ]
    rows = []
    for metric, title in METRICS:
        lines += [f"## {title}, averaged over tasks", ""]
        header = ["Method"] + [f"{s:,} rows" for s in sizes]
        lines += ["| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]
        for method in methods:
            cells = []
            for size in sizes:
                summary = results[size]["main"].get(metric, {}).get(method)
                cells.append(_cell(summary["average"], summary["seeds"])
                             if summary else "-")
                if summary:
                    for task in results[size]["tasks"] + ["average"]:
                        mean, std = summary[task]
                        rows.append([metric, size, method, task,
                                     f"{mean:.4f}", f"{std:.4f}", summary["seeds"]])
            lines.append(f"| {METHOD_LABELS[method]} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += _paired_section(methods, sizes, results, rows)
    lines += ["## Per task (recall at 90% precision / accuracy, %)", ""]
    for size in sizes:
        tasks = results[size]["tasks"]
        if not tasks:
            continue
        lines += [f"### {size:,} training rows", "",
                  "| Method | " + " | ".join(tasks) + " |",
                  "|" + "---|" * (len(tasks) + 1)]
        main = results[size]["main"]
        for method in methods:
            if method not in main.get("accuracy", {}):
                continue
            recall, accuracy = (main["recall_at_90_precision"][method],
                                main["accuracy"][method])
            lines.append(f"| {METHOD_LABELS[method]} | " + " | ".join(
                f"{100 * recall[t][0]:.1f} / {100 * accuracy[t][0]:.1f}"
                for t in tasks) + " |")
        lines.append("")
    if _plot(os.path.join(workdir, "curve.png"), methods, sizes, results):
        lines += ["![recall against training rows](curve.png)", ""]
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(workdir, "report.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["metric", "rows", "method", "task", "mean", "std", "seeds"])
        writer.writerows(rows)


def _cell(pair, seeds):
    mean, std = pair
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if seeds > 1 else "")


def _plot(path, methods, sizes, results):
    """Recall at 90% precision against training rows, ±1 s.d.; False if
    there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6.4, 4.2))
    plotted = False
    for method in methods:
        points = [(size, results[size]["main"]["recall_at_90_precision"][method])
                  for size in sizes
                  if method in results[size]["main"].get("recall_at_90_precision", {})]
        if not points:
            continue
        x = [size for size, _ in points]
        mean = [100 * s["average"][0] for _, s in points]
        std = [100 * s["average"][1] for _, s in points]
        line, = axes.plot(x, mean, marker="o", label=METHOD_LABELS[method])
        axes.fill_between(x, [m - s for m, s in zip(mean, std)],
                          [m + s for m, s in zip(mean, std)],
                          color=line.get_color(), alpha=0.15)
        plotted = True
    if not plotted:
        pyplot.close(figure)
        return False
    axes.set_xscale("log")
    axes.set_xticks(sizes, [f"{s:,}" for s in sizes])
    axes.minorticks_off()
    axes.set_xlabel("training rows")
    axes.set_ylabel("test recall at 90% precision (%), task average")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    return True


if __name__ == "__main__":
    sys.exit(main())
