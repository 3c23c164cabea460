"""Parameter counts and forward speed of CMA-CLIP against this machine's
matmul peak, printed as a table and JSON.

    python benchmarks/model_benchmark.py [--models tiny,vit_b32] [--batch-size 8] \
        [--dtypes float32,bfloat16] [--jit 0,1] [--parts] [--json-out FILE]

`tiny` loads the generated `tiny_clip` preset; `vit_b32` is built from its
architecture with random weights (no download): parameter counts and speed do
not depend on the weights. Each row times `model(x, training=False)` in one
`tf.function` (median of `--repeats`), counts its FLOPs per example from the
architecture (`benchmarks/model_flops.py`) and divides the FLOP/s by the
matmul peak measured in the same run, before and after the rows (the better
of the two, in the row's dtype). `--parts` also times `encode` (both CLIP
towers) and `fuse` (the fusion transformer) in their own `tf.function`s.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.matmul_peak import matmul_peak_flops  # noqa: E402
from benchmarks.model_flops import forward_flops  # noqa: E402
from benchmarks.random_batch import RETAIL_TASKS  # noqa: E402
from benchmarks.random_batch import random_batch  # noqa: E402
from benchmarks.result_table import print_json  # noqa: E402
from benchmarks.result_table import print_table  # noqa: E402
from benchmarks.result_table import row_key  # noqa: E402
from cmaclip_tf.models import create_cma_clip  # noqa: E402

POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def count(variables):
    return int(sum(np.prod(v.shape) for v in variables))


def median_seconds(function, argument, repeats):
    """Median wall time of `function(argument)` to its numpy results."""
    tf.nest.map_structure(lambda t: t.numpy(), function(argument))  # Trace, warm up.
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), function(argument))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(name, batch_size, repeats, dtype, jit, parts):
    # The generated tiny preset is local; other presets may need a download.
    keras.mixed_precision.set_global_policy(POLICIES[dtype])
    try:
        model, _, config = create_cma_clip(name, RETAIL_TASKS,
                                           pretrained=name == "tiny")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    groups = model.module_groups()
    features, _ = random_batch(config, batch_size)
    features = {k: tf.constant(v) for k, v in features.items()}
    forward = tf.function(lambda x: model(x, training=False), jit_compile=jit)
    seconds = median_seconds(forward, features, repeats)
    flops = forward_flops(config)
    row = {
        "model": name, "stage": "forward", "cache_features": False,
        "jit_compile": jit, "dtype": dtype, "batch_size": batch_size,
        "params_clip": count(groups["clip"]),
        "params_fusion": count(groups["fusion"]),
        "params_modality_attention": count(groups["modality_attention"]),
        "params_heads": count(groups["heads"]),
        "params_total": count(model.trainable_variables),
        "forward_ms_per_batch": 1e3 * seconds,
        "forward_ms_per_example": 1e3 * seconds / batch_size,
        "examples_per_second": batch_size / seconds,
        "flops_per_example": float(sum(flops.values())),
    }
    if parts:
        encode = tf.function(lambda x: model.encode(
            x["images"], x["token_ids"], x["padding_mask"]), jit_compile=jit)
        fuse = tf.function(lambda f: model.fuse(f, training=False), jit_compile=jit)
        encoded = encode(features)
        row["encode_seconds"] = median_seconds(encode, features, repeats)
        row["fuse_seconds"] = median_seconds(fuse, encoded, repeats)
        row["encode_share"] = (flops["vision"] + flops["text"]) * batch_size
        row["fuse_share"] = flops["fusion"] * batch_size
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,vit_b32")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--dtypes", default="float32,bfloat16",
                        help="Compute dtypes (float32, bfloat16: mixed_bfloat16).")
    parser.add_argument("--jit", default="0",
                        help="Comma-separated jit_compile settings: 0, 1 or 0,1.")
    parser.add_argument("--parts", action="store_true",
                        help="Also time encode and fuse on their own.")
    parser.add_argument("--json-out", help="Also write the JSON to this file.")
    args = parser.parse_args()
    dtypes = args.dtypes.split(",")
    peaks = {dtype: [matmul_peak_flops(dtype)] for dtype in dtypes}
    rows = [
        measure(m, args.batch_size, args.repeats, dtype, bool(int(jit)), args.parts)
        for m in args.models.split(",") for dtype in dtypes
        for jit in args.jit.split(",")
    ]
    for dtype in dtypes:
        peaks[dtype].append(matmul_peak_flops(dtype))
    for row in rows:
        peak = max(peaks[row["dtype"]])
        row["share_of_matmul_peak"] = (
            row["flops_per_example"] * row["examples_per_second"] / peak)
        if args.parts:
            for part in ("encode", "fuse"):
                row[f"{part}_share"] = row[f"{part}_share"] / row[f"{part}_seconds"] / peak
    header = ["model", "dtype", "jit_compile", "params_total",
              "forward_ms_per_example", "flops_per_example", "share_of_matmul_peak"]
    if args.parts:
        header += ["encode_seconds", "encode_share", "fuse_seconds", "fuse_share"]
    print_table(rows, header, width=14, decimals=3)
    for dtype, (before, after) in peaks.items():
        print(f"{dtype} matmul peak (2048x2048, TensorFlow): {before / 1e9:.1f} "
              f"GFLOP/s before the rows, {after / 1e9:.1f} after")
    print_json({
        "backend": keras.backend.backend(), "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "matmul_peak_gflops": {d: max(p) / 1e9 for d, p in peaks.items()},
        "rows": {row_key(row): row for row in rows},
    }, args.json_out)


if __name__ == "__main__":
    main()
