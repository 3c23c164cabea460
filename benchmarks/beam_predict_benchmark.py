"""Catalogue scoring on Apache Beam against `serving.predict`: rows/s and memory.

Exports an untrained tiny model (`--model-config tiny`) and runs, on the
same manifest (`--rows` rows of JPEG and PNG files with distinct texts) and
the same export, batch 64 each:

- `python -m serving.predict` (one process);
- `python -m serving.beam_predict` on the DirectRunner in multi-processing
  mode with 1 and with 2 worker processes (`--direct_num_workers`).

Each command runs as a subprocess, so its wall time includes starting up
(imports, loading the model in every worker); each also runs on a 1-row
manifest, and `steady rows/s = (N - 1) / (t_N - t_1)`. `model rows/s per
worker` is what `serving.beam_predict` reports of its model calls (rows over
their summed time; start-up, reading and checking left out): the per-core
rate to size a cluster with. With `--repeats`, the paths take turns and
medians are reported. Memory: the resident set of every process of the
command is sampled every 0.2 s; `peak MiB per worker` is the largest peak
among the processes that predict (Beam's SDK workers; `serving.predict`
itself), `launcher MiB` the command's own process.
The Beam outputs must agree with `serving.predict`'s (labels equal, scores
within 1e-5).

```
python -m benchmarks.beam_predict_benchmark [--rows 2000] [--workers 1,2] \
    [--repeats 1] [--json-out results.json]
```

Prints a table, then the figures as JSON. Exits 1 if the outputs disagree.
"""

import argparse
import csv
import glob
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psutil

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.predict_benchmark import predict_command  # noqa: E402
from benchmarks.predict_benchmark import row_mismatches  # noqa: E402
from benchmarks.predict_benchmark import write_manifest  # noqa: E402
from benchmarks.result_table import print_json  # noqa: E402
from benchmarks.result_table import print_table  # noqa: E402
from benchmarks.serving_load_benchmark import TASKS  # noqa: E402
from benchmarks.serving_load_benchmark import export_tiny_model  # noqa: E402
from benchmarks.serving_load_benchmark import sample_images  # noqa: E402

MiB = 2**20
BATCH_SIZE = 64
WORKER_MARK = "sdk_worker_main"


def beam_command(model, manifest, prefix, workers):
    return [sys.executable, "-m", "serving.beam_predict", "--model", model,
            "--input", manifest, "--output", prefix,
            "--max-batch-size", str(BATCH_SIZE),
            "--direct_running_mode=multi_processing",
            f"--direct_num_workers={workers}"]


def run_sampled(argv):
    """`(wall s, launcher peak MiB, worker peak MiB, stdout)` of a command and its
    children."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    peaks, workers = {}, set()
    done = threading.Event()

    def sample():
        root = psutil.Process(process.pid)
        while not done.is_set():
            try:
                family = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for member in family:
                try:
                    rss = member.memory_info().rss
                    if member.pid not in workers and WORKER_MARK in " ".join(
                        member.cmdline()
                    ):
                        workers.add(member.pid)
                except psutil.Error:
                    continue
                peaks[member.pid] = max(peaks.get(member.pid, 0), rss)
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{stderr[-3000:]}{stdout[-2000:]}")
    launcher = peaks.get(process.pid, 0) / MiB
    worker = max((peaks[pid] for pid in workers), default=peaks.get(process.pid, 0))
    return elapsed, launcher, worker / MiB, stdout


def model_rate(stdout):
    """The per-worker rate of the model calls `serving.beam_predict` prints."""
    match = re.search(r"model calls: .*, ([0-9.]+) rows/s per worker process", stdout)
    return float(match.group(1)) if match else float("nan")


def read_rows(paths):
    rows = {}
    for path in paths:
        with open(path, newline="", encoding="utf-8") as f:
            rows.update((row["id"], row) for row in csv.DictReader(f))
    return rows


def compare(reference, other, tasks):
    """`(mismatching rows, largest score difference)`."""
    if sorted(reference) != sorted(other):
        return abs(len(reference) - len(other)) or len(reference), float("nan")
    return row_mismatches(((a, other[key]) for key, a in reference.items()), tasks)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--workers", default="1,2",
                        help="Comma-separated DirectRunner worker counts.")
    parser.add_argument("--model-config", default="tiny")
    parser.add_argument("--repeats", type=int, default=1,
                        help="Rounds, the paths taking turns; medians reported.")
    parser.add_argument("--json-out")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="beam_predict_benchmark_")
    model_dir = os.path.join(*export_tiny_model(workdir, args.model_config))
    image_paths = []
    for i, data in enumerate(sample_images()):
        extension = "jpg" if i == 0 else "png"
        image_paths.append(os.path.join(workdir, f"image{i}.{extension}"))
        with open(image_paths[-1], "wb") as f:
            f.write(data)
    one_row = write_manifest(os.path.join(workdir, "one.csv"), 1, image_paths)
    many_rows = write_manifest(os.path.join(workdir, "many.csv"), args.rows,
                               image_paths)

    commands = {"serving.predict": lambda manifest, out: predict_command(
        model_dir, manifest, out + ".csv", BATCH_SIZE)}
    for workers in [int(w) for w in args.workers.split(",")]:
        commands[f"beam DirectRunner x{workers}"] = (
            lambda manifest, out, workers=workers: beam_command(
                model_dir, manifest, out, workers))

    # The paths take turns within each round, so that load from elsewhere on
    # the machine falls on all alike; medians over the rounds.
    measured = {name: [] for name in commands}
    outputs = {}
    for round_ in range(args.repeats):
        for number, (name, command_for) in enumerate(commands.items()):
            prefix = os.path.join(workdir, f"path{number}_round{round_}")
            t_one = run_sampled(command_for(one_row, prefix + "_1"))[0]
            t_many, launcher, worker, stdout = run_sampled(
                command_for(many_rows, prefix + "_n"))
            outputs[name] = sorted(glob.glob(prefix + "_n*.csv"))
            measured[name].append((t_one, t_many, launcher, worker, model_rate(stdout)))
            print(f"round {round_}, {name}: {t_many:.1f} s", file=sys.stderr, flush=True)
    results = []
    for name, runs in measured.items():
        t_one, t_many, _, _, rate = (statistics.median(r[i] for r in runs)
                                     for i in range(5))
        results.append({
            "path": name,
            "rows": args.rows,
            "wall_s": t_many,
            "start_s": t_one,
            "rows_per_s": args.rows / t_many,
            # Undefined (nan) when noise outweighs the work: too few rows.
            "steady_rows_per_s": (
                (args.rows - 1) / (t_many - t_one) if t_many > t_one else float("nan")
            ),
            "model_rows_per_s_per_worker": rate,
            "launcher_mib": max(r[2] for r in runs),
            "peak_mib_per_worker": max(r[3] for r in runs),
            "wall_s_each": [r[1] for r in runs],
        })

    reference = read_rows(outputs["serving.predict"])
    failed = False
    for result in results[1:]:
        mismatches, largest = compare(reference, read_rows(outputs[result["path"]]),
                                      list(TASKS))
        result["mismatching_rows"] = mismatches
        result["largest_score_difference"] = largest
        failed |= mismatches > 0

    print_table(results, ["path", "rows", "wall_s", "start_s", "rows_per_s",
                          "steady_rows_per_s", "model_rows_per_s_per_worker",
                          "launcher_mib", "peak_mib_per_worker"], width=16, decimals=1)
    print_json({"batch_size": BATCH_SIZE, "model_config": args.model_config,
                "cpu_count": os.cpu_count(), "results": results}, args.json_out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
