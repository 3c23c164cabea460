"""The paper's experiments as one command: baselines, ablations, noise robustness.

    python trainers/experiments.py --suite ablation --dataset synthetic \
        --seeds 3 --workdir runs/ablation [--num-examples N] [--epochs E]
    python trainers/experiments.py --suite ablation --dataset manifest \
        --manifest train.csv [--val-manifest val.csv] --test-manifest test.csv

Trains and evaluates every method of the ablation suite with `trainers/run.py`
(same trainer, same splits), one seed per run, into `WORKDIR/<method>/seed_<s>/`:

- `zero_shot`: raw CLIP with class prompts, no training (Table 2, "Raw CLIP");
- `finetuned_clip`: CLIP fine-tuned contrastively on the training split's
  image-title pairs (the end2end epochs), then classifying with class
  prompts as `zero_shot` does (Table 2, "Fine-tuned CLIP");
- `clip_linear`: CLIP + linear heads, CLIP's pooled image and text embeddings into
  a linear head per task; a warmup stage (CLIP frozen: a linear probe) then an
  end2end stage (CLIP trained), the same warmup and end2end epochs as
  CMA-CLIP but no tuning stage, which is part of CMA-CLIP's recipe;
- `no_ma_sa`, `no_ma`, `full`: CMA-CLIP without modality and sequence-wise
  attention, without modality attention, and whole, all three stages
  (`--stage all`; Table 6);
- `full_contrastive`: full CMA-CLIP plus α = 0.1 times CLIP's image-title
  InfoNCE in the end2end stage (`--contrastive-weight`; the paper's future
  work, section 5).

Seeds run in the outer loop, so an interrupted suite already has whole seeds;
finished runs are skipped, so re-running the command resumes. After each run,
`trainers/suites/noise_robustness.py`'s four test conditions are evaluated. Then
`WORKDIR/report.md` and `WORKDIR/report.csv` hold, per method, the test
recall at 90% precision (as Tables 2 and 6) and accuracy (as Tables 3 and 4)
per task and on average, as mean ± standard deviation over seeds (one seed:
the value alone, and no claim that a difference is beyond noise), and the
noise-robustness table with mean λ per task and condition.
`--report-only` rewrites the report from the runs on disk.
"""

import argparse
import json
import math
import os
import shlex
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainers import command_line  # noqa: E402
from trainers.suites.experiment_report import write_report  # noqa: E402
from trainers.suites.experiment_suites import DIALS  # noqa: E402
from trainers.suites.experiment_suites import DONE_FILE  # noqa: E402
from trainers.suites.experiment_suites import METHOD_RUNS  # noqa: E402
from trainers.suites.experiment_suites import SUITES  # noqa: E402
from trainers.suites.experiment_suites import SUITE_FILE  # noqa: E402
from trainers.suites.experiment_suites import sweep_config_name  # noqa: E402
from trainers.suites.experiment_suites import sweep_point_name  # noqa: E402
from trainers.suites.sweep_report import write_sweep_report  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suite", default="ablation", choices=sorted(SUITES))
    parser.add_argument("--methods", help="Comma-separated subset of the suite's "
                        f"methods ({', '.join(SUITES['ablation'])}).")
    command_line.add_data_arguments(
        parser, "As for trainers/run.py: synthetic (generated), manifest "
        "(--manifest, --val-manifest and --test-manifest: the report is on "
        "the test split), food101, fashion_gen, tfds:<builder>.")
    parser.add_argument("--seeds", type=int, default=3,
                        help="Runs per method, seeds 0..N-1.")
    parser.add_argument("--workdir", default="runs/ablation")
    parser.add_argument("--model", default="tiny")
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
    sweep = parser.add_argument_group("noise_sweep")
    sweep.add_argument("--dial", choices=sorted(DIALS),
                       help="The noise the sweep turns: the generator's "
                       "misleading titles or irrelevant images (synthetic), "
                       "or training label noise (any dataset).")
    sweep.add_argument("--rates", help="Comma-separated rates of the dial, "
                       "e.g. 0,0.1,0.2,0.4.")
    sweep.add_argument("--losses", default="ce",
                       help="Comma-separated losses every method runs with "
                       "(ce, gce, sce): one line each in the plots.")
    parser.add_argument("--run-args", default="",
                        help="More trainers/run.py flags for every run, quoted.")
    parser.add_argument("--report-only", action="store_true",
                        help="Rewrite the report from the runs on disk.")
    parser.add_argument("--debug", action="store_true",
                        help="TensorFlow's own log lines, and the full "
                        "traceback of an error.")
    return parser


# The data flags a suite passes on to trainers/run.py, where given.
DATA_FLAGS = ("data_dir", "manifest", "val_manifest", "test_manifest", "tasks",
              "num_examples", "val_size", "val_fraction")


def shared_run_argv(args, seed, workdir):
    """The trainers/run.py flags every method's runs share."""
    argv = ["--dataset", args.dataset, "--model", args.model, "--seed", str(seed),
            "--workdir", workdir, "--quiet"]
    for flag in (*DATA_FLAGS, "epochs", "warmup_epochs", "end2end_epochs",
                 "tuning_epochs", "batch_size", "learning_rate"):
        value = getattr(args, flag)
        if value is not None:
            argv += [f"--{flag.replace('_', '-')}", str(value)]
    if args.on_bad_record != "skip":
        argv += ["--on-bad-record", args.on_bad_record]
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


def run_method(args, method, seed, workdir=None, extra=(), noise=True):
    """Trains (or evaluates) one method for one seed, then its noise robustness.

    Args:
        workdir: the run's folder (default `WORKDIR/<method>/seed_<seed>`).
        extra: more trainers/run.py flags (a sweep's dial and loss).
        noise: evaluate the noise-robustness conditions afterwards.
    """
    import keras

    from trainers import run as run_cli
    from trainers.suites import noise_robustness

    workdir = workdir or os.path.join(args.workdir, method, f"seed_{seed}")
    done_path = os.path.join(workdir, DONE_FILE)
    if os.path.isfile(done_path):
        print(f"[suite] {workdir}: finished earlier; skipping.", flush=True)
        return
    print(f"[suite] {method} seed {seed} -> {workdir}", flush=True)
    started = time.time()
    argv = shared_run_argv(args, seed, workdir) + list(extra)
    commands = []
    for stage_flags in METHOD_RUNS[method]:
        keras.backend.clear_session()
        commands.append(argv + stage_flags)
        status = run_cli.main(argv + stage_flags)
        if status:
            # trainers/run.py said why, in its own line above.
            raise ValueError(
                f"trainers/run.py {shlex.join(argv + stage_flags)} failed "
                f"(exit {status}); the suite stops.")
    trained = time.time() - started
    if noise and not args.skip_noise:
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


def run_sweep(args, methods):
    """Every method and loss at every rate of the dial, seeds outermost."""
    rates = sweep_rates(args)
    losses = args.losses.split(",")
    for seed in range(args.seeds):
        for rate in rates:
            for method in methods:
                for loss in losses:
                    workdir = os.path.join(
                        args.workdir, sweep_point_name(args.dial, rate),
                        sweep_config_name(method, loss, losses), f"seed_{seed}",
                    )
                    run_method(args, method, seed, workdir, noise=False, extra=[
                        DIALS[args.dial], str(rate), "--loss", loss])


def sweep_rates(args):
    if not args.dial or not args.rates:
        raise ValueError("--suite noise_sweep needs --dial and --rates (e.g. "
                         "--dial misleading_title --rates 0,0.1,0.2,0.4).")
    return [float(r) for r in args.rates.split(",")]


def effective_settings(args):
    """What the runs used, defaults filled in from the dataset's recipe."""
    from trainers.training.recipe import default_recipe
    from trainers.training.recipe import recipe_overrides
    from trainers.training.recipe import resolve_recipe

    recipe = resolve_recipe(default_recipe(args.dataset), recipe_overrides(args))
    epochs = {stage: recipe["stages"][stage]["epochs"]
              for stage in ("warmup", "end2end", "tuning")}
    examples = args.num_examples
    if examples is not None and args.dataset == "synthetic":
        # As `load_dataset`: validation and test are 15% of train each.
        held_out = math.ceil(0.15 * examples)
        examples = f"{examples}/{held_out}/{held_out}"
    elif examples is not None:
        examples = f"the first {examples} of each split"
    elif args.dataset == "synthetic":
        from cmaclip_tf.datasets.synthetic.products import DEFAULT_NUM_EXAMPLES

        examples = "/".join(str(n) for n in DEFAULT_NUM_EXAMPLES.values())
    return {
        "dataset": args.dataset,
        "data": data_source(run_data_flags(args)),
        "model": args.model,
        "seeds": ", ".join(str(s) for s in range(args.seeds)),
        "examples (train/validation/test)": examples or "all",
        "epochs (warmup/end2end/tuning)": "/".join(str(e) for e in epochs.values()),
        "recipe": recipe["name"],
        "batch size": recipe["batch_size"],
        "learning rate": recipe["learning_rate"],
        "weight decay": "{rate} ({kind})".format(
            **recipe["stages"]["warmup"]["weight_decay"]),
    }


def run_data_flags(args):
    """The data flags trainers/run.py gets, the suite's and --run-args'."""
    from trainers.run import build_parser as run_parser

    return run_parser().parse_args(shared_run_argv(args, 0, args.workdir))


def data_source(args):
    """The suite's data as the user named it: generated, files or a folder.

    Args:
        args: trainers/run.py's flags (`run_data_flags`).
    """
    if args.dataset == "synthetic":
        return "generated (synthetic products)"
    files = [f"{flag.replace('_', ' ')} {getattr(args, flag)}"
             for flag in ("manifest", "val_manifest", "test_manifest")
             if getattr(args, flag)]
    if args.data_dir:
        files.insert(0, f"data dir {args.data_dir}")
    return f"{args.dataset}: {', '.join(files)}" if files else args.dataset


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    command_line.quiet_tensorflow(args.debug)
    command_line.check_dataset_name(parser, args.dataset)
    data = run_data_flags(args)
    if data.dataset == "manifest" and not args.report_only and not (
            data.manifest and data.test_manifest):
        parser.error("--dataset manifest needs --manifest and --test-manifest "
                     "(the report is on the test split); --val-manifest is "
                     "optional, as for trainers/run.py.")
    return command_line.run_reporting_errors(
        lambda: run_suite(args, argv), args.debug)


def run_suite(args, argv):
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
        if args.suite == "noise_sweep":
            run_sweep(args, methods)
        else:
            for seed in range(args.seeds):
                for method in methods:
                    run_method(args, method, seed)
    if args.suite == "noise_sweep":
        write_sweep_report(args.workdir, args.dial, command, settings)
    else:
        write_report(args.workdir, methods, command, settings)
    print(f"[suite] Report: {os.path.join(args.workdir, 'report.md')} "
          f"({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
