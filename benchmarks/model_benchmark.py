"""Parameter counts and forward time of CMA-CLIP, printed as a table and JSON.

    python benchmarks/model_benchmark.py [--models tiny,vit_b32] [--batch-size 8]

`tiny` loads the generated `tiny_clip` preset; `vit_b32` is built from its
architecture with random weights (no download): parameter counts and speed do
not depend on the weights.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.random_batch import RETAIL_TASKS  # noqa: E402
from benchmarks.result_table import print_table  # noqa: E402
from cmaclip_tf.models import create_cma_clip  # noqa: E402


def count(variables):
    return int(sum(np.prod(v.shape) for v in variables))


def measure(name, batch_size, repeats):
    # The generated tiny preset is local; other presets may need a download.
    pretrained = name == "tiny"
    model, _, config = create_cma_clip(name, RETAIL_TASKS, pretrained=pretrained)
    groups = model.module_groups()
    size, length = config["image_size"], config["sequence_length"]
    rng = np.random.default_rng(0)
    inputs = {
        "images": rng.normal(size=(batch_size, size, size, 3)).astype("float32"),
        "token_ids": rng.integers(1, 400, size=(batch_size, length)).astype("int32"),
        "padding_mask": np.ones((batch_size, length), bool),
    }
    forward = tf.function(lambda x: model(x, training=False))
    forward(inputs)  # Trace and warm up.
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        outputs = forward(inputs)
        _ = [v.numpy() for v in outputs.values()]
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return {
        "model": name,
        "batch_size": batch_size,
        "params_clip": count(groups["clip"]),
        "params_fusion": count(groups["fusion"]),
        "params_modality_attention": count(groups["modality_attention"]),
        "params_heads": count(groups["heads"]),
        "params_total": count(model.trainable_variables),
        "forward_ms_per_batch": 1e3 * median,
        "forward_ms_per_example": 1e3 * median / batch_size,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="tiny,vit_b32")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    rows = [measure(m, args.batch_size, args.repeats) for m in args.models.split(",")]
    header = ("model", "params_clip", "params_fusion", "params_modality_attention",
              "params_heads", "params_total", "forward_ms_per_example")
    print_table(rows, header, width=14, decimals=2)
    print(json.dumps({"backend": keras.backend.backend(), "threads": os.cpu_count(),
                      "results": rows}, indent=2))


if __name__ == "__main__":
    main()
