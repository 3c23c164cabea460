"""Train-step throughput of CMA-CLIP under Keras's JAX backend (for GPUs).

    KERAS_BACKEND=jax python benchmarks/jax_train_step_benchmark.py \
        --models tiny,vit_b32 --batch-size 8 --dtype mixed_bfloat16

The model is built from its architecture with random weights (no
TensorFlow, tokenizer or download needed: a GPU machine with JAX, Keras and
keras-hub runs it). One jitted end-to-end step: forward, the paper's loss,
gradients, AdamW. Reports examples per second, the step's FLOPs from XLA's
cost analysis, the achieved FLOP/s and their share of this device's measured
matmul peak (same dtype). Prints a table and JSON.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402

from benchmarks.random_batch import RETAIL_TASKS  # noqa: E402
from benchmarks.random_batch import random_batch  # noqa: E402
from benchmarks.result_table import print_table  # noqa: E402
from cmaclip_tf.losses import masked_cross_entropy_sum  # noqa: E402
from cmaclip_tf.models import create_cma_clip  # noqa: E402


def matmul_peak_flops(dtype, size=8192, repeats=20):
    size = size if jax.default_backend() != "cpu" else 1024
    a = jnp.ones((size, size), dtype)
    b = jnp.ones((size, size), dtype)
    matmul = jax.jit(lambda a, b: a @ b)
    matmul(a, b).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        out = matmul(a, b)
    out.block_until_ready()
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def timed(compiled, args, steps):
    """Seconds per call of a compiled function (after one warm-up call)."""
    jax.block_until_ready(compiled(*args))
    start = time.perf_counter()
    for _ in range(steps):
        out = compiled(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / steps


def xla_flops(compiled):
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0)) if cost else 0.0


def measure_forward(name, batch_size, steps, model=None):
    """One jitted inference forward pass: examples/s and XLA's FLOPs."""
    if model is None:
        model, _, config = create_cma_clip(name, RETAIL_TASKS, pretrained=False)
    else:
        model, config = model
    x, _ = random_batch(config, batch_size, RETAIL_TASKS)

    @jax.jit
    def forward(trainable, non_trainable, x):
        outputs, _ = model.stateless_call(trainable, non_trainable, x)
        return outputs

    args = ([v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables], x)
    compiled = forward.lower(*args).compile()
    flops = xla_flops(compiled)
    seconds = timed(compiled, args, steps)
    return {
        "model": name, "part": "forward", "batch_size": batch_size,
        "examples_per_second": batch_size / seconds, "step_seconds": seconds,
        "step_flops": flops, "achieved_tflops": flops / seconds / 1e12,
    }


def multi_task_loss(outputs, labels, tasks):
    """The paper's loss (Alg. 1, l. 14): the sum over tasks of each task's
    mean cross-entropy over its labelled rows."""
    total = 0.0
    for task in tasks:
        loss_sum, count = masked_cross_entropy_sum(outputs[f"{task}_logits"], labels[task])
        total = total + loss_sum / jnp.maximum(count, 1.0)
    return total


def measure(name, batch_size, steps):
    model, _, config = create_cma_clip(name, RETAIL_TASKS, pretrained=False)
    optimizer = keras.optimizers.AdamW(learning_rate=1e-5, weight_decay=1e-4)
    optimizer.build(model.trainable_variables)
    x, y = random_batch(config, batch_size, RETAIL_TASKS)

    def loss_fn(trainable, non_trainable, x, y):
        outputs, non_trainable = model.stateless_call(
            trainable, non_trainable, x, training=True
        )
        loss = multi_task_loss(outputs, y, RETAIL_TASKS)
        return loss, non_trainable

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    @jax.jit
    def train_step(state, x, y):
        trainable, non_trainable, optimizer_variables = state
        (loss, non_trainable), grads = grad_fn(trainable, non_trainable, x, y)
        trainable, optimizer_variables = optimizer.stateless_apply(
            optimizer_variables, grads, trainable
        )
        return loss, (trainable, non_trainable, optimizer_variables)

    state = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in optimizer.variables],
    )
    compiled = train_step.lower(state, x, y).compile()
    flops = xla_flops(compiled)
    loss, state = compiled(state, x, y)
    loss.block_until_ready()
    start = time.perf_counter()
    for _ in range(steps):
        loss, state = compiled(state, x, y)
    loss.block_until_ready()
    seconds = (time.perf_counter() - start) / steps
    return {
        "model": name, "part": "train_step", "batch_size": batch_size,
        "examples_per_second": batch_size / seconds,
        "step_seconds": seconds, "step_flops": flops,
        "achieved_tflops": flops / seconds / 1e12,
        "final_loss": float(loss),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="tiny,vit_b32")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dtype", default="mixed_bfloat16",
                        help="Keras dtype policy (mixed_bfloat16 or float32).")
    args = parser.parse_args()
    keras.mixed_precision.set_global_policy(args.dtype)
    compute = "bfloat16" if "bfloat16" in args.dtype else "float32"
    peak = matmul_peak_flops(jnp.dtype(compute))
    rows = [measure(m, args.batch_size, args.steps) for m in args.models.split(",")]
    for row in rows:
        row["share_of_matmul_peak"] = row["achieved_tflops"] * 1e12 / peak
    header = ("model", "batch_size", "examples_per_second", "achieved_tflops",
              "share_of_matmul_peak")
    print_table(rows, header, width=20, decimals=4)
    print(json.dumps({
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "dtype_policy": args.dtype,
        "matmul_peak_tflops": peak / 1e12,
        "results": rows,
    }, indent=2))


if __name__ == "__main__":
    main()
