"""The project's training loop against `keras.Model.fit`, paired run by run
in one process, as a table and JSON.

    python benchmarks/loop_vs_fit_benchmark.py [--model tiny] [--rounds 10] \
        [--steps 128] [--steps-per-execution 8] [--json-out FILE]

The same end-to-end step both ways: the same model config and random batch,
all of CMA-CLIP's used weights training, `FusedAdamW`, float32, the same
`steps_per_execution`; the loop (`StageTrainer`, one optimizer per module
group) and `fit` (one optimizer) are built and warmed up (traced) once, then
timed in alternation, `--rounds` rounds of `--steps` steps each. On a machine
whose speed drifts by tens of percent within minutes, the runs of a round
are neighbours in time, so their ratio is what the comparison reads: the
median over rounds of the loop's examples per second over `fit`'s.
`train_benchmark.py`'s `keras_fit` rows time each in its own process.
"""

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.result_table import print_json  # noqa: E402
from benchmarks.result_table import print_table  # noqa: E402


def loop_runner(model_name, batch_size, per_execution, steps):
    """A callable running `steps` steps of the project's loop."""
    from benchmarks.train_benchmark import stage_trainer_and_data

    trainer, distributed, _ = stage_trainer_and_data(
        model_name, "end2end", batch_size, False, False, "float32", per_execution)
    trainer.train_steps(distributed, 2 * per_execution)  # Trace and warm up.
    return lambda: trainer.train_steps(distributed, steps)


def fit_runner(model_name, batch_size, per_execution, steps):
    """A callable running `steps` steps of `fit` on the same step."""
    from benchmarks.train_benchmark import compiled_fit_model

    model, dataset, _ = compiled_fit_model(model_name, batch_size, False,
                                           "float32", per_execution)
    model.fit(dataset, epochs=1, steps_per_epoch=2 * per_execution, verbose=0)
    return lambda: model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--steps-per-execution", type=int, default=8)
    parser.add_argument("--json-out", help="Also write the JSON to this file.")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    setup = (args.model, args.batch_size, args.steps_per_execution, args.steps)
    runners = {"stage_trainer": loop_runner(*setup), "keras_fit": fit_runner(*setup)}
    speeds = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            speeds[name].append(args.steps * args.batch_size
                                / (time.perf_counter() - start))
    ratios = [a / b for a, b in zip(speeds["stage_trainer"], speeds["keras_fit"])]

    def median(values):
        return sorted(values)[(len(values) - 1) // 2]

    rows = [{"loop": name, "median_examples_per_second": median(values),
             "min": min(values), "max": max(values)} for name, values in speeds.items()]
    print_table(rows, ("loop", "median_examples_per_second", "min", "max"),
                width=13, decimals=1)
    print(f"loop / fit, round by round: median {median(ratios):.2f} "
          f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    print_json({
        "model": args.model, "stage": "end2end", "dtype": "float32",
        "batch_size": args.batch_size, "steps_per_execution": args.steps_per_execution,
        "steps_per_round": args.steps, "cpus": os.cpu_count(),
        "examples_per_second": speeds, "loop_over_fit": ratios,
        "loop_over_fit_median": median(ratios),
    }, args.json_out)


if __name__ == "__main__":
    main()
