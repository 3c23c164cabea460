"""Training throughput and peak memory of CMA-CLIP, as a table and JSON.

    python benchmarks/train_benchmark.py [--models tiny,vit_b32] [--batch-size 8]

Each configuration runs in its own process (so peak RSS is its own): the
train step of a stage on random inputs, with and without `--cache-features`
(warm-up on cached CLIP features) and `--jit-compile`. Also measures this
machine's float32 matmul peak for comparison. `vit_b32` uses random weights
(no download); speed does not depend on them.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.result_table import print_table  # noqa: E402


def matmul_peak_gflops(size=2048, repeats=10):
    import tensorflow as tf

    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    matmul = tf.function(lambda: tf.matmul(a, b))
    matmul().numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        result = matmul()
    result.numpy()
    seconds = (time.perf_counter() - start) / repeats
    return 2 * size**3 / seconds / 1e9


def measure(model_name, stage, batch_size, cache, jit, steps):
    """Runs in a child process; returns one result row."""
    import tensorflow as tf

    from benchmarks.random_batch import RETAIL_TASKS
    from benchmarks.random_batch import random_batch
    from cmaclip_tf.models import create_cma_clip
    from trainers.stage_schedule import STAGES
    from trainers.stage_trainer import StageTrainer

    model, _, config = create_cma_clip(
        model_name, RETAIL_TASKS, pretrained=(model_name == "tiny")
    )
    strategy = tf.distribute.get_strategy()
    trainer = StageTrainer(model, STAGES[stage], strategy, 1e-5, 1e-4,
                           jit_compile=jit)
    features, labels = random_batch(config, batch_size)
    if cache:
        features = {k: v.numpy() for k, v in
                    tf.function(trainer.features_at_depth)(features).items()}
    dataset = tf.data.Dataset.from_tensors((features, labels)).repeat()
    distributed = strategy.experimental_distribute_dataset(dataset)
    trainer.train_steps(distributed, 2)  # Trace, compile and warm up.
    start = time.perf_counter()
    trainer.train_steps(distributed, steps)
    seconds = time.perf_counter() - start
    return {
        "model": model_name, "stage": stage, "batch_size": batch_size,
        "cache_features": cache, "jit_compile": jit,
        "examples_per_second": steps * batch_size / seconds,
        "step_seconds": seconds / steps,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


CONFIGS = [
    # (stage, cache_features, jit_compile)
    ("warmup", False, False),
    ("warmup", True, False),
    ("warmup", False, True),
    ("warmup", True, True),
    ("end2end", False, False),
    ("end2end", False, True),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="tiny,vit_b32")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=0,
                        help="Timed steps (default: 20 for tiny, 3 otherwise).")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, stage, cache, jit, steps = json.loads(args.child)
        print(json.dumps(measure(model, stage, args.batch_size, cache, jit, steps)))
        return
    rows = []
    for model in args.models.split(","):
        steps = args.steps or (20 if model == "tiny" else 3)
        for stage, cache, jit in CONFIGS:
            child = json.dumps([model, stage, cache, jit, steps])
            out = subprocess.run(
                [sys.executable, __file__, "--batch-size", str(args.batch_size),
                 "--child", child],
                capture_output=True, text=True,
                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
            )
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    peak = matmul_peak_gflops()
    header = ("model", "stage", "cache_features", "jit_compile",
              "examples_per_second", "step_seconds", "peak_rss_mib")
    print_table(rows, header, width=19, decimals=2)
    print(f"float32 matmul peak (2048x2048, TensorFlow): {peak:.1f} GFLOP/s")
    print(json.dumps({"cpus": os.cpu_count(), "matmul_peak_gflops": peak,
                      "results": rows}, indent=2))


if __name__ == "__main__":
    main()
