"""Training throughput, FLOPs per example, share of the matmul peak and peak
memory of CMA-CLIP's train step, as a table and JSON.

    python benchmarks/train_benchmark.py [--models tiny,vit_b32] [--batch-size 8] \
        [--steps N] [--repeats R] [--only ROW,...] [--json-out FILE]

Each configuration runs in its own process (so peak RSS is its own): the
train step of a stage (`StageTrainer`) on one random batch, repeated, with
and without `--cache-features` (warm-up on cached CLIP features) and
`--jit-compile`, in float32 and bfloat16 (`mixed_bfloat16`), one step or
several per execution (`--steps-per-execution`). For the tiny model, the
same end-to-end step under `keras.Model.fit` (same model, data, optimizer
(`FusedAdamW`) and `steps_per_execution`) for comparison: the custom loop
exists for multi-worker training and per-group optimizers and must not cost
speed. With `--repeats`, each `fit` row is also paired with its loop row run
for run (the runs of one repeat; with `--only` on the two rows they are
neighbours in time, so the machine's drift mostly cancels): the table's
footer gives the median of the loop's speed over `fit`'s.
`loop_vs_fit_benchmark.py` pairs them in one process.

Throughput is timed from the end of the first execution to the end of the
last, so tracing, compiling and the iterator's start stay out. FLOPs per
example are counted from the architecture (`benchmarks/model_flops.py`: 3×
the forward of what trains, 1× the frozen front it runs); the share of the
peak divides the achieved FLOP/s by this machine's matmul peak in the row's
dtype, measured in the same run before and after the rows (the better of the
two). `vit_b32` uses random weights (no download); speed does not depend on
them. On a shared machine, where speed drifts by tens of percent over
minutes, `--repeats 3` runs every row three times round-robin and reports
each row's median run (the JSON keeps every run's examples per second).
`benchmarks/train_step_profile.py` shows where a step's time goes.
"""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.result_table import print_json  # noqa: E402
from benchmarks.result_table import print_table  # noqa: E402
from benchmarks.result_table import row_key  # noqa: E402

POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def build(model_name, dtype):
    import keras

    from benchmarks.random_batch import RETAIL_TASKS
    from cmaclip_tf.models import create_cma_clip

    keras.mixed_precision.set_global_policy(POLICIES[dtype])
    try:
        return create_cma_clip(model_name, RETAIL_TASKS,
                               pretrained=(model_name == "tiny"))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def steps_per_second(marks, steps_per_mark):
    """Steps per second between the first and the last of `marks`."""
    return (len(marks) - 1) * steps_per_mark / (marks[-1] - marks[0])


def stage_trainer_and_data(model_name, stage, batch_size, cache, jit, dtype,
                           per_execution):
    """`(StageTrainer, distributed dataset repeating one random batch,
    model config)`: what the rows (and `train_step_profile.py`) time."""
    import tensorflow as tf

    from benchmarks.random_batch import random_batch
    from trainers.training.stage_schedule import STAGES
    from trainers.training.stage_trainer import StageTrainer

    model, _, config = build(model_name, dtype)
    strategy = tf.distribute.get_strategy()
    trainer = StageTrainer(model, STAGES[stage], strategy, 1e-5, 1e-4,
                           jit_compile=jit, steps_per_execution=per_execution)
    features, labels = random_batch(config, batch_size)
    if cache:
        features = {k: v.numpy() for k, v in
                    tf.function(trainer.features_at_depth)(features).items()}
    dataset = tf.data.Dataset.from_tensors((features, labels)).repeat()
    return trainer, strategy.experimental_distribute_dataset(dataset), config


def measure_stage_trainer(model_name, stage, batch_size, cache, jit, dtype,
                          per_execution, executions):
    trainer, distributed, config = stage_trainer_and_data(
        model_name, stage, batch_size, cache, jit, dtype, per_execution)
    marks = []
    trainer.train_steps(distributed, per_execution * (executions + 1),
                        on_step=lambda *_: marks.append(time.perf_counter()))
    return config, steps_per_second(marks, per_execution)


def compiled_fit_model(model_name, batch_size, jit, dtype, per_execution):
    """`(model compiled for fit, dataset repeating one random batch, model
    config)`: the end-to-end step under `fit`, all used weights training, one
    AdamW (`FusedAdamW`, as each of the loop's module groups has)."""
    import keras
    import tensorflow as tf

    from benchmarks.random_batch import RETAIL_TASKS
    from benchmarks.random_batch import random_batch
    from trainers.training.fused_adamw import FusedAdamW

    model, _, config = build(model_name, dtype)
    # CLIP's projections and temperature: unused, as in StageTrainer.
    used = {id(v) for group in model.module_groups().values() for v in group}
    for variable in model.trainable_variables:
        variable.trainable = id(variable) in used
    features, labels = random_batch(config, batch_size)
    targets = {f"{task}_logits": labels[task] for task in RETAIL_TASKS}
    dataset = tf.data.Dataset.from_tensors((features, targets)).repeat()
    model.compile(
        optimizer=FusedAdamW(learning_rate=1e-5, weight_decay=1e-4),
        loss={f"{task}_logits": keras.losses.SparseCategoricalCrossentropy(
            from_logits=True) for task in RETAIL_TASKS},
        steps_per_execution=per_execution, jit_compile=jit,
    )
    return model, dataset, config


def measure_keras_fit(model_name, stage, batch_size, jit, dtype, per_execution,
                      executions):
    """The same end-to-end step under `fit` (`compiled_fit_model`)."""
    import keras

    assert stage == "end2end", "fit trains every weight: compare end2end"
    model, dataset, config = compiled_fit_model(model_name, batch_size, jit,
                                                dtype, per_execution)
    marks = []
    timer = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda *_, **__: marks.append(time.perf_counter()))
    model.fit(dataset, epochs=1, steps_per_epoch=per_execution * (executions + 1),
              callbacks=[timer], verbose=0)
    return config, steps_per_second(marks, per_execution)


def measure(model_name, stage, batch_size, cache, jit, dtype, per_execution,
            loop, steps):
    """Runs in a child process; returns one result row."""
    from benchmarks.model_flops import train_step_flops
    from trainers.training.stage_schedule import STAGES

    executions = max(2, math.ceil(steps / per_execution))
    if loop == "keras_fit":
        config, rate = measure_keras_fit(model_name, stage, batch_size, jit,
                                         dtype, per_execution, executions)
    else:
        config, rate = measure_stage_trainer(model_name, stage, batch_size, cache,
                                             jit, dtype, per_execution, executions)
    return {
        "model": model_name, "stage": stage, "cache_features": cache,
        "jit_compile": jit, "dtype": dtype, "steps_per_execution": per_execution,
        "loop": loop, "batch_size": batch_size,
        "examples_per_second": rate * batch_size,
        "step_seconds": 1 / rate,
        "flops_per_example": float(train_step_flops(
            config, STAGES[stage].learning_rate_multipliers, cache)),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# (stage, cache_features, jit_compile, dtype, steps_per_execution, loop)
CONFIGS = [
    ("warmup", False, False, "float32", 1, "stage_trainer"),
    ("warmup", True, False, "float32", 1, "stage_trainer"),
    ("warmup", False, True, "float32", 1, "stage_trainer"),
    ("warmup", True, True, "float32", 1, "stage_trainer"),
    ("end2end", False, False, "float32", 1, "stage_trainer"),
    ("end2end", False, True, "float32", 1, "stage_trainer"),
    ("warmup", False, False, "bfloat16", 1, "stage_trainer"),
    ("end2end", False, False, "bfloat16", 1, "stage_trainer"),
]
# Where a step is milliseconds, the host's share shows: more steps per
# execution, and keras.Model.fit at the same settings.
TINY_CONFIGS = [
    ("warmup", True, False, "float32", 8, "stage_trainer"),
    ("end2end", False, False, "float32", 8, "stage_trainer"),
    ("end2end", False, False, "float32", 1, "keras_fit"),
    ("end2end", False, False, "float32", 8, "keras_fit"),
    ("end2end", False, True, "float32", 8, "stage_trainer"),
    ("end2end", False, True, "float32", 8, "keras_fit"),
]


def median_row(trials):
    """The trial of median speed, with every trial's examples per second."""
    ordered = sorted(trials, key=lambda row: row["examples_per_second"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["trials_examples_per_second"] = [t["examples_per_second"] for t in trials]
    return row


def loop_over_fit(trials):
    """Per `fit` row: the loop's speed over `fit`'s, run by run (pairs of
    neighbouring runs), and their median."""
    ratios = {}
    for key, fit_runs in trials.items():
        if not key.endswith("/keras_fit"):
            continue
        loop_runs = trials.get(key[: -len("/keras_fit")], [])
        pairs = [loop["examples_per_second"] / fit["examples_per_second"]
                 for loop, fit in zip(loop_runs, fit_runs)]
        if pairs:
            ratios[key] = {"runs": pairs, "median": sorted(pairs)[(len(pairs) - 1) // 2]}
    return ratios


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,vit_b32")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=0,
                        help="Timed steps (default: 256 for tiny, 3 otherwise).")
    parser.add_argument("--repeats", type=int, default=1,
                        help="Runs of each row, taken round-robin over the "
                        "rows; a row reports the median (3 for a shared "
                        "machine, where speed drifts by tens of percent).")
    parser.add_argument("--only", help="Comma-separated row keys to run "
                        "(e.g. vit_b32/end2end/cache=0/jit=0).")
    parser.add_argument("--json-out", help="Also write the JSON to this file.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*json.loads(args.child))))
        return
    from benchmarks.matmul_peak import matmul_peak_flops

    runs = []
    for model in args.models.split(","):
        steps = args.steps or (256 if model == "tiny" else 3)
        for config in CONFIGS + (TINY_CONFIGS if model == "tiny" else []):
            stage, cache, jit, dtype, per_execution, loop = config
            child = [model, stage, args.batch_size, cache, jit, dtype,
                     per_execution, loop, steps]
            key = row_key(dict(zip(
                ("model", "stage", "batch_size", "cache_features", "jit_compile",
                 "dtype", "steps_per_execution", "loop"), child)))
            if not args.only or key in args.only.split(","):
                runs.append(child)
    dtypes = sorted({run[5] for run in runs})
    peaks = {dtype: [matmul_peak_flops(dtype)] for dtype in dtypes}
    trials = {}  # Row key: its runs, in order.
    for _ in range(args.repeats):
        for child in runs:
            out = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(child)],
                capture_output=True, text=True,
                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
            )
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            trials.setdefault(row_key(row), []).append(row)
            print(f"[{row_key(row)}] {row['examples_per_second']:.2f} ex/s",
                  file=sys.stderr, flush=True)
    rows = [median_row(rows) for rows in trials.values()]
    for dtype in dtypes:
        peaks[dtype].append(matmul_peak_flops(dtype))
    for row in rows:
        row["share_of_matmul_peak"] = (row["flops_per_example"]
                                       * row["examples_per_second"]
                                       / max(peaks[row["dtype"]]))
    header = ("model", "stage", "cache_features", "jit_compile", "dtype",
              "steps_per_execution", "loop", "examples_per_second",
              "flops_per_example", "share_of_matmul_peak", "peak_rss_mib")
    print_table(rows, header, width=13, decimals=3)
    for dtype, (before, after) in peaks.items():
        print(f"{dtype} matmul peak (2048x2048, TensorFlow): {before / 1e9:.1f} "
              f"GFLOP/s before the rows, {after / 1e9:.1f} after")
    ratios = loop_over_fit(trials)
    for key, ratio in ratios.items():
        runs = ", ".join(f"{r:.2f}" for r in ratio["runs"])
        print(f"loop / fit, {key}: median {ratio['median']:.2f} (runs: {runs})")
    print_json({
        "cpus": os.cpu_count(), "load_average": os.getloadavg(),
        "batch_size": args.batch_size,
        "matmul_peak_gflops": {d: max(p) / 1e9 for d, p in peaks.items()},
        "rows": {row_key(row): row for row in rows},
        "loop_over_fit": ratios,
    }, args.json_out)


if __name__ == "__main__":
    main()
