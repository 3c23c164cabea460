"""Peak memory of `--cache-features` as the training split grows.

    python benchmarks/feature_cache_benchmark.py [--sizes 10000,50000] \
        [--json-out FILE]

For each size, in its own process: the tiny model's warm-up caches its CLIP
features for that many generated training examples (drawn on the fly, not
held in memory) to disk, exactly as `trainers/run.py --cache-features` does,
then reads one epoch of batches back in the epoch's shuffled order. Reports
the peak RSS of the process and the cache's size on disk (what a cache held
in memory, the previous design, would have added to RSS). Flat peak RSS
across sizes means memory does not grow with the dataset.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.result_table import print_table  # noqa: E402

BATCH_SIZE = 64


def measure(num_examples):
    """Runs in a child process; returns one result row."""
    import tensorflow as tf

    from cmaclip_tf.datasets import load_dataset
    from cmaclip_tf.models import create_cma_clip
    from trainers.training.input_data import RunData
    from trainers.training.stage_schedule import STAGES
    from trainers.training.stage_trainer import StageTrainer

    dataset = load_dataset(
        "synthetic", num_examples={"train": num_examples, "validation": 8,
                                   "test": 8},
        cache=False,
    )
    model, clip, config = create_cma_clip("tiny", dataset.num_classes)
    trainer = StageTrainer(model, STAGES["warmup"], tf.distribute.get_strategy(),
                           1e-5, 1e-4)
    data = RunData(dataset, seed=0)
    data.prepare(clip, config)
    directory = tempfile.mkdtemp(prefix="feature_cache_")
    try:
        started = time.perf_counter()
        cache = data.cache_features(trainer, BATCH_SIZE, directory)
        build_seconds = time.perf_counter() - started
        rss_after_build = _peak_rss_mib()
        started = time.perf_counter()
        batches = 0
        for _ in data.train_batches(0, BATCH_SIZE, cached=cache):
            batches += 1
        epoch_seconds = time.perf_counter() - started
        disk = sum(
            os.path.getsize(os.path.join(directory, name))
            for name in os.listdir(directory)
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return {
        "examples": num_examples,
        "cache_mib_on_disk": disk / 2**20,
        "peak_rss_mib_after_build": rss_after_build,
        "peak_rss_mib": _peak_rss_mib(),
        "build_seconds": build_seconds,
        "epoch_read_seconds": epoch_seconds,
        "batches_read": batches,
    }


def _peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--json-out")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(measure(args.child)))
        return 0
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
        result = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", str(size)],
            env=env, capture_output=True, text=True, check=True,
        )
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    print_table(rows, ["examples", "cache_mib_on_disk", "peak_rss_mib_after_build",
                       "peak_rss_mib", "build_seconds", "epoch_read_seconds"])
    if len(rows) > 1:
        growth = rows[-1]["peak_rss_mib"] - rows[0]["peak_rss_mib"]
        cache_growth = rows[-1]["cache_mib_on_disk"] - rows[0]["cache_mib_on_disk"]
        print(f"Peak RSS grew {growth:.0f} MiB while the cache grew "
              f"{cache_growth:.0f} MiB.")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
