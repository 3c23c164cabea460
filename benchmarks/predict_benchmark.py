"""Offline predictions: `serving.predict` against the gRPC path, and its memory.

Exports an untrained tiny model (`--model-config tiny`) and measures:

1. Throughput on the same 2,000 rows (a CSV of JPEG and PNG files with
   distinct texts), batch 64 both ways:
   - `python -m serving.predict` (the export's `serving_default`, in process);
   - `python -m serving.client --manifest` against `python -m serving.server`
     (already started; 8 worker threads).
   Each command runs as a subprocess, so its wall time includes starting up
   (imports, loading the model; the server has loaded it before, and its
   start is reported apart); each also runs on a 1-row manifest, and
   `steady rows/s = (N - 1) / (t_N - t_1)`.
   The two take turns, `--repeats` rounds; the medians are reported. The two outputs must agree
   (labels equal, scores within 1e-5: the client writes 6 decimals).
2. Memory: `serving.predict` over a 100,000-row manifest (the image files are
   reused, the texts all distinct); its resident memory is sampled against
   the rows written so far. RSS at 10,000 rows and at the end must stay
   within `--max-rss-growth-mib`.

```
python -m benchmarks.predict_benchmark [--rows 2000] [--memory-rows 100000] \
    [--json-out results.json]
```

Prints a table, then the figures as JSON. Exits 1 if the outputs disagree or
memory grows.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.result_table import print_table  # noqa: E402
from benchmarks.serving_load_benchmark import DevServer  # noqa: E402
from benchmarks.serving_load_benchmark import distinct_text  # noqa: E402
from benchmarks.serving_load_benchmark import export_tiny_model  # noqa: E402
from benchmarks.serving_load_benchmark import sample_images  # noqa: E402

MiB = 2**20


def write_manifest(path, rows, image_paths):
    """`id,image,text` rows cycling over `image_paths`, texts all distinct."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "image", "text"])
        for i in range(rows):
            writer.writerow([f"item-{i}", image_paths[i % len(image_paths)],
                             distinct_text(i)])
    return path


def timed(argv):
    """Wall seconds of a command (run from the repository root)."""
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stderr[-3000:]}")
    return elapsed


def predict_command(model, manifest, output, batch_size):
    return [sys.executable, "-m", "serving.predict", "--model", model,
            "--manifest", manifest, "--output", output, "--overwrite",
            "--batch-size", str(batch_size), "--no-progress"]


def client_command(address, model_name, manifest, output, batch_size):
    return [sys.executable, "-m", "serving.client", "--server", address,
            "--model-name", model_name, "--manifest", manifest,
            "--output", output, "--batch-size", str(batch_size)]


def throughput(commands, one_row, many_rows, rows, workdir, repeats):
    """Wall time on 1 and on `rows` rows per path; medians over `repeats`.

    The paths take turns within each round, so that load from elsewhere on
    the machine falls on both alike.

    Args:
        commands: dict of path name to `(manifest, output) -> argv`.

    Returns:
        `(outputs, figures)`: per path, the last `rows`-row output file and
        a dict of figures.
    """
    times = {name: {"one": [], "many": []} for name in commands}
    outputs = {}
    for round_ in range(repeats):
        for number, (name, command_for) in enumerate(commands.items()):
            prefix = os.path.join(workdir, f"path{number}_round{round_}")
            times[name]["one"].append(timed(command_for(one_row, prefix + "_1.csv")))
            outputs[name] = prefix + f"_{rows}.csv"
            times[name]["many"].append(timed(command_for(many_rows, outputs[name])))
    figures = {}
    for name, measured in times.items():
        t_one = float(np.median(measured["one"]))
        t_many = float(np.median(measured["many"]))
        figures[name] = {
            "path": name,
            "rows": rows,
            "wall_s": t_many,
            "start_s": t_one,
            "rows_per_s": rows / t_many,
            # Undefined (nan) when noise outweighs the work: too few rows.
            "steady_rows_per_s": (
                (rows - 1) / (t_many - t_one) if t_many > t_one else float("nan")
            ),
            "wall_s_each": measured["many"],
        }
    return outputs, figures


def compare_outputs(predict_csv, client_csv, tasks):
    """Rows where labels differ or scores differ by more than 1e-5."""
    with open(predict_csv, newline="", encoding="utf-8") as f:
        offline = list(csv.DictReader(f))
    with open(client_csv, newline="", encoding="utf-8") as f:
        online = list(csv.DictReader(f))
    if len(offline) != len(online):
        return len(offline) + len(online), 0.0
    return row_mismatches(zip(offline, online), tasks)


def row_mismatches(pairs, tasks):
    """`(mismatching rows, largest score difference)` of `(a, b)` output
    rows: labels differ, or a score by more than 1e-5."""
    mismatches, largest = 0, 0.0
    for a, b in pairs:
        for task in tasks:
            difference = abs(float(a[f"{task}_score"]) - float(b[f"{task}_score"]))
            largest = max(largest, difference)
            if a[f"{task}_label"] != b[f"{task}_label"] or difference > 1e-5:
                mismatches += 1
                break
    return mismatches, largest


def memory_profile(command, output, interval=0.5):
    """Runs `command`, sampling its RSS against the rows in `output`.

    Returns:
        list of `(rows written, RSS bytes)`, one per `interval` seconds.
    """
    import psutil

    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    watched = psutil.Process(process.pid)
    samples, newlines, offset = [], 0, 0
    while process.poll() is None:
        try:
            rss = watched.memory_info().rss
        except psutil.NoSuchProcess:
            break
        if os.path.exists(output):
            with open(output, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk)
            newlines += chunk.count(b"\n")  # Texts hold no newlines.
        samples.append((max(newlines - 1, 0), rss))
        time.sleep(interval)
    process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{process.stderr.read()[-3000:]}")
    process.stderr.close()
    return samples


def rss_at(samples, rows):
    """RSS of the first sample with at least `rows` rows written."""
    return next(rss for done, rss in samples if done >= rows)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.predict_benchmark")
    parser.add_argument("--model-config", default="tiny")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--memory-rows", type=int, default=100_000)
    parser.add_argument("--memory-early-rows", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--repeats", type=int, default=3, help="Rounds of the throughput runs."
    )
    parser.add_argument("--workers", type=int, default=8, help="Server threads.")
    parser.add_argument(
        "--max-rss-growth-mib",
        type=float,
        default=64.0,
        help="Fail if RSS grows more than this from --memory-early-rows to the end.",
    )
    parser.add_argument("--json-out", help="Also write the figures here.")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    workspace = tempfile.TemporaryDirectory(prefix="cmaclip_predict_bench_")
    root = workspace.name
    base, name = export_tiny_model(root, args.model_config)
    model = os.path.join(base, name)
    image_paths = []
    for i, data in enumerate(sample_images()):
        image_paths.append(os.path.join(root, f"image{i}.{['jpg', 'png'][i]}"))
        with open(image_paths[-1], "wb") as f:
            f.write(data)
    one_row = write_manifest(os.path.join(root, "one.csv"), 1, image_paths)
    many_rows = write_manifest(os.path.join(root, "rows.csv"), args.rows, image_paths)

    start = time.perf_counter()
    server = DevServer(base, name, args.workers)
    server_start = time.perf_counter() - start
    try:
        outputs, figures_by_path = throughput(
            {
                "serving.predict": lambda manifest, output: predict_command(
                    model, manifest, output, args.batch_size
                ),
                "gRPC (serving.client)": lambda manifest, output: client_command(
                    server.address, name, manifest, output, args.batch_size
                ),
            },
            one_row, many_rows, args.rows, root, args.repeats,
        )
    finally:
        server.stop()
    offline, online = figures_by_path.values()
    # What a one-off backfill over gRPC waits for: the server's start too.
    online["server_start_s"] = server_start
    online["wall_with_server_start_s"] = online["wall_s"] + server_start
    offline_csv, online_csv = outputs.values()
    mismatches, largest_difference = compare_outputs(
        offline_csv, online_csv, ["color", "pattern"]
    )

    memory_manifest = write_manifest(
        os.path.join(root, "memory.csv"), args.memory_rows, image_paths
    )
    memory_output = os.path.join(root, "memory_predictions.csv")
    start = time.perf_counter()
    samples = memory_profile(
        predict_command(model, memory_manifest, memory_output, args.batch_size),
        memory_output,
    )
    memory_wall = time.perf_counter() - start
    early = rss_at(samples, args.memory_early_rows)
    # The last sample before every row is written: later ones may catch the
    # process tearing TensorFlow down.
    late_rows, late = max(
        (sample for sample in samples if sample[0] < args.memory_rows), default=(0, 0)
    )
    steady_peak = max(rss for done, rss in samples if done >= args.memory_early_rows)
    growth = (steady_peak - early) / MiB
    workspace.cleanup()

    figures = {
        "throughput": [offline, online],
        "speedup_wall": online["wall_s"] / offline["wall_s"],
        "speedup_steady": offline["steady_rows_per_s"] / online["steady_rows_per_s"],
        "outputs_agree": mismatches == 0,
        "rows_disagreeing": mismatches,
        "largest_score_difference": largest_difference,
        "memory": {
            "rows": args.memory_rows,
            "wall_s": memory_wall,
            "rows_per_s": args.memory_rows / memory_wall,
            f"rss_at_{args.memory_early_rows}_rows_mib": early / MiB,
            "rss_near_end_mib": late / MiB,
            "rss_near_end_rows": late_rows,
            "peak_rss_mib": max(rss for _, rss in samples) / MiB,
            "growth_after_early_rows_mib": growth,
            "flat": growth <= args.max_rss_growth_mib,
            "samples": [(done, round(rss / MiB, 1)) for done, rss in samples[::10]],
        },
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
    }
    print_table(
        [offline, online],
        ("path", "rows", "wall_s", "start_s", "rows_per_s", "steady_rows_per_s"),
        width=21,
    )
    memory = figures["memory"]
    print(f"gRPC server start (load, warm-up): {server_start:.1f} s; with it the "
          f"gRPC path takes {online['wall_with_server_start_s']:.1f} s for "
          f"{args.rows} rows")
    print(f"outputs agree: {mismatches == 0} (largest score difference "
          f"{largest_difference:.2e})")
    print(
        f"serving.predict RSS over {args.memory_rows} rows: "
        f"{early / MiB:.1f} MiB at {args.memory_early_rows} rows, "
        f"{late / MiB:.1f} MiB at {late_rows} rows, peak "
        f"{memory['peak_rss_mib']:.1f} MiB "
        f"({memory['rows_per_s']:.1f} rows/s)"
    )
    print(json.dumps(figures, indent=2))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(figures, f, indent=2)
    return 0 if mismatches == 0 and memory["flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
