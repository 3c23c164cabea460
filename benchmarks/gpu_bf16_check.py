"""bfloat16 on a GPU, checked and timed: Keras on JAX (TensorFlow does not go
to the lent GPU machines).

    KERAS_BACKEND=jax python benchmarks/gpu_bf16_check.py \
        --model vit_b32 --batch-size 64,128,256

Under `mixed_bfloat16`, with random weights built from the architecture (no
download, tokenizer or TensorFlow needed):

1. Every layer of CLIP's towers (and of the fusion) is under the policy
   (`cmaclip_tf.models.dtype_policy.layers_off_policy`), also for a CLIP
   loaded from a preset (`--preset`: its `config.json` pins float32, which
   `load_clip` overrides), and every matmul of the towers' forward
   pass takes bfloat16 operands (the jaxpr's `dot_general`s), the model's
   outputs aside. A failure prints the offenders and exits 1.
2. A jitted forward pass and a jitted end-to-end train step (the paper's
   loss, AdamW; `jax_train_step_benchmark.py`) per batch size: examples/s,
   XLA's FLOPs, and their share of the chip's bf16 peak (the data sheet's
   dense figure where the device is known, `--peak-tflops` otherwise) and of
   the bf16 matmul peak measured here.

On a CPU (`--model tiny --batch-size 2`) it runs the same code, to check the
script; its shares mean nothing there. Prints a table and JSON.
"""

import argparse
import collections
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402

from benchmarks.jax_train_step_benchmark import matmul_peak_flops  # noqa: E402
from benchmarks.jax_train_step_benchmark import measure  # noqa: E402
from benchmarks.jax_train_step_benchmark import measure_forward  # noqa: E402
from benchmarks.random_batch import RETAIL_TASKS  # noqa: E402
from benchmarks.random_batch import random_batch  # noqa: E402
from benchmarks.result_table import print_table  # noqa: E402
from cmaclip_tf.models import create_cma_clip  # noqa: E402
from cmaclip_tf.models import load_clip  # noqa: E402
from cmaclip_tf.models.dtype_policy import layers_off_policy  # noqa: E402

POLICY = "mixed_bfloat16"
# Dense bf16 tensor-core peaks from NVIDIA's data sheets, TFLOP/s, by the
# start of `jax.devices()[0].device_kind` (most specific first).
BF16_PEAK_TFLOPS = (("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100", 989.4),
                    ("NVIDIA H200", 989.4), ("NVIDIA A100", 312.0),
                    ("NVIDIA L4", 121.0))


def chip_peak_flops(override_tflops=None):
    """The device's bf16 peak (FLOP/s) and where it came from."""
    if override_tflops:
        return override_tflops * 1e12, "--peak-tflops"
    kind = jax.devices()[0].device_kind
    for prefix, tflops in BF16_PEAK_TFLOPS:
        if kind.startswith(prefix):
            return tflops * 1e12, f"data sheet ({prefix})"
    return None, f"unknown device {kind!r}: pass --peak-tflops"


def matmul_operand_dtypes(jaxpr):
    """Counter of the operand dtypes of every `dot_general` and convolution
    in a closed jaxpr, sub-jaxprs (jit, custom gradients, loops) included."""
    counts = collections.Counter()

    def visit(inner):
        for equation in inner.eqns:
            if equation.primitive.name in ("dot_general", "conv_general_dilated"):
                counts[tuple(str(v.aval.dtype) for v in equation.invars)] += 1
            for value in equation.params.values():
                for sub in value if isinstance(value, (list, tuple)) else [value]:
                    if hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):
                        visit(sub.jaxpr)
                    elif hasattr(sub, "eqns"):
                        visit(sub)

    visit(jaxpr.jaxpr)
    return counts


def check_preset(preset):
    """Problems with bf16 in a CLIP loaded from a preset folder, whose
    `config.json` pins its encoders' policy (empty: none)."""
    try:
        backbone = load_clip(preset).backbone
    except ImportError as error:  # A tokenizer that needs TensorFlow.
        return [], f"skipped ({error})"
    return [f"{preset}: layer off {POLICY}: {p}"
            for p in layers_off_policy(backbone, POLICY)], "checked"


def check_bfloat16(name):
    """Problems with bf16 in CLIP's towers and the fusion (empty: none)."""
    model, _, config = create_cma_clip(name, RETAIL_TASKS, pretrained=False)
    problems = [f"layer off {POLICY}: {p}" for p in layers_off_policy(model, POLICY)
                if not p.split(": ")[0].endswith("/logits")]  # float32 on purpose
    x, _ = random_batch(config, 2, RETAIL_TASKS)
    backbone = model.clip_backbone
    for tower, inputs in (
        (backbone.vision_encoder, {"images": x["images"]}),
        (backbone.text_encoder, {"token_ids": x["token_ids"]}),
    ):
        def forward(trainable, non_trainable, inputs, tower=tower):
            return tower.stateless_call(trainable, non_trainable, inputs)[0]

        jaxpr = jax.make_jaxpr(forward)(
            [v.value for v in tower.trainable_variables],
            [v.value for v in tower.non_trainable_variables], inputs)
        counts = matmul_operand_dtypes(jaxpr)
        if not counts:
            problems.append(f"{tower.name}: no matmul found")
        for dtypes, count in counts.items():
            if set(dtypes) != {"bfloat16"}:
                problems.append(f"{tower.name}: {count} matmul(s) on {dtypes}")
    return model, config, problems


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_b32")
    parser.add_argument("--batch-size", default="64,128,256",
                        help="Comma-separated batch sizes.")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--preset", default="tiny_clip_pretrained",
                        help="A CLIP preset whose towers must load in bf16 too.")
    parser.add_argument("--peak-tflops", type=float,
                        help="The chip's dense bf16 peak, TFLOP/s (default: "
                        "from the device name, for known GPUs).")
    args = parser.parse_args(argv)
    keras.mixed_precision.set_global_policy(POLICY)
    model, config, problems = check_bfloat16(args.model)
    preset_problems, preset_check = check_preset(args.preset)
    problems += preset_problems
    for problem in problems:
        print(f"NOT bfloat16: {problem}")
    peak, peak_source = chip_peak_flops(args.peak_tflops)
    measured_peak = matmul_peak_flops(jnp.bfloat16)
    rows = []
    for batch_size in (int(b) for b in args.batch_size.split(",")):
        rows.append(measure_forward(args.model, batch_size, args.steps,
                                    model=(model, config)))
        rows.append(measure(args.model, batch_size, args.steps))
    for row in rows:
        achieved = row["achieved_tflops"] * 1e12
        row["share_of_chip_peak"] = achieved / peak if peak else float("nan")
        row["share_of_measured_matmul_peak"] = achieved / measured_peak
    print_table(rows, ("model", "part", "batch_size", "examples_per_second",
                       "achieved_tflops", "share_of_chip_peak",
                       "share_of_measured_matmul_peak"), width=16, decimals=4)
    print(json.dumps({
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        "dtype_policy": POLICY,
        "every_clip_layer_bfloat16": not problems,
        "problems": problems,
        "preset_check": f"{args.preset}: {preset_check}",
        "chip_bf16_peak_tflops": peak / 1e12 if peak else None,
        "chip_peak_source": peak_source,
        "measured_bf16_matmul_peak_tflops": measured_peak / 1e12,
        "results": rows,
    }, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
