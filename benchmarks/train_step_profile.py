"""Where a train step's time goes: TensorFlow's profiler over a few steps of
`StageTrainer`, op time summed by kind of op and by module, as a table and
JSON.

    python benchmarks/train_step_profile.py [--model vit_b32] [--stage end2end] \
        [--batch-size 8] [--steps 2] [--jit 0] [--logdir DIR] [--json-out FILE]

The step runs once untimed (tracing, first execution), then `--steps` steps
run under `tf.profiler.experimental`; the trace (`--logdir`, readable in
TensorBoard's profile tab) is read back and every TensorFlow op event of the
executor threads is summed by the op's type and by the module its name
belongs to (CLIP's vision or text tower, the fusion transformer, heads, the
optimizer), forward and backward apart. Kinds: `matmul` (MatMul,
BatchMatMul, Einsum, convolutions: the FLOPs), `elementwise` (activations,
LayerNorm's arithmetic, softmax, casts, bias adds), `reduction`, `layout`
(transposes, reshapes, concatenations, slices, gathers), `optimizer` (the
fused AdamW kernels and variable updates) and `other`.

Op time is summed over the executor's threads, so op time can exceed the
wall clock where independent ops overlap; the `share_of_op_time` column is
what the profile says to optimize. With `--jit 1` XLA fuses the step into a
few clusters and op types are no longer visible: profile without it.
"""

import argparse
import collections
import glob
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.result_table import print_json  # noqa: E402
from benchmarks.result_table import print_table  # noqa: E402

MATMUL = ("MatMul", "BatchMatMul", "Einsum", "Conv2D", "Conv2DBackpropFilter",
          "Conv2DBackpropInput", "_FusedMatMul", "_FusedConv2D", "BatchMatMulV2",
          "BatchMatMulV3", "_MklMatMul", "_MklBatchMatMulV2")
REDUCTION = ("Sum", "Mean", "Max", "Min", "Prod", "ArgMax", "All", "Any",
             "BiasAddGrad")
LAYOUT = ("Transpose", "Reshape", "ConcatV2", "Slice", "StridedSlice",
          "StridedSliceGrad", "GatherV2", "GatherNd", "Pack", "Unpack", "Split",
          "SplitV", "Tile", "Pad", "ScatterNd", "TensorScatterUpdate",
          "ExpandDims", "Squeeze", "Identity", "Fill", "ZerosLike", "OnesLike",
          "BroadcastTo", "Select", "SelectV2", "Where")
OPTIMIZER = ("ResourceApplyAdam", "ResourceApplyAdamWithAmsgrad",
             "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp",
             "ReadVariableOp", "ResourceGather")
ELEMENTWISE = ("Add", "AddV2", "AddN", "Sub", "Mul", "RealDiv", "Div",
               "DivNoNan", "Neg", "Exp", "Log", "Sqrt", "Rsqrt", "RsqrtGrad",
               "Square", "SquaredDifference", "Pow", "Tanh", "TanhGrad",
               "Sigmoid", "SigmoidGrad", "Erf", "Maximum", "Minimum", "Cast",
               "Softmax", "LogSoftmax", "BiasAdd", "Relu", "ReluGrad", "Gelu",
               "Reciprocal", "ReciprocalGrad", "Equal", "NotEqual", "Greater",
               "GreaterEqual", "Less", "LessEqual", "LogicalAnd", "LogicalOr",
               "LogicalNot", "OnesLike", "Abs", "Sign", "Floor", "Softplus",
               "SparseSoftmaxCrossEntropyWithLogits", "IsFinite", "FloorMod",
               "Relu6", "Selu", "Elu", "SoftmaxCrossEntropyWithLogits")
MODULES = (("clip_vision_encoder", "clip_vision"), ("clip_text_encoder", "clip_text"),
           ("sequence_attention", "fusion"), ("modality_attention", "modality_attention"),
           ("_head", "heads"))


def op_kind(op_type):
    for kind, types in (("matmul", MATMUL), ("optimizer", OPTIMIZER),
                        ("reduction", REDUCTION), ("layout", LAYOUT),
                        ("elementwise", ELEMENTWISE)):
        if op_type in types:
            return kind
    return "other"


def op_module(op_name):
    """The module an op belongs to, from its name scope; `+backward` under
    the gradient tape; `optimizer` for the update."""
    lowered = op_name.lower()
    if "optimizer" in lowered or "adamw" in lowered:
        return "optimizer"
    module = "other"
    for fragment, name in MODULES:
        if fragment in op_name:
            module = name
            break
    if "gradient_tape" in op_name:
        module += "+backward"
    return module


def read_op_events(logdir):
    """`[(op name, op type, seconds)]` of every op event in the profile."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*",
                                          "*.xplane.pb")))
    if not paths:
        raise FileNotFoundError(f"No profile under {logdir}.")
    space = xplane_pb2.XSpace()
    with open(paths[-1], "rb") as f:
        space.ParseFromString(f.read())
    events = []
    for plane in space.planes:
        names = plane.event_metadata
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = names[event.metadata_id].name
                if ":" not in name or "::" in name:
                    continue  # Executor bookkeeping, not an op.
                op_name, op_type = name.rsplit(":", 1)
                events.append((op_name, op_type, event.duration_ps * 1e-12))
    return events


def summarize(events, key):
    totals = collections.Counter()
    for op_name, op_type, seconds in events:
        totals[key(op_name, op_type)] += seconds
    whole = sum(totals.values()) or 1.0
    return [{"name": name, "seconds": seconds, "share_of_op_time": seconds / whole}
            for name, seconds in totals.most_common()]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_b32")
    parser.add_argument("--stage", default="end2end")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--jit", type=int, default=0)
    parser.add_argument("--logdir", help="Where the trace goes (default: a "
                        "temporary folder).")
    parser.add_argument("--top", type=int, default=15,
                        help="Op types listed (by time).")
    parser.add_argument("--json-out", help="Also write the JSON to this file.")
    args = parser.parse_args()

    import tensorflow as tf

    from benchmarks.train_benchmark import stage_trainer_and_data

    trainer, distributed, _ = stage_trainer_and_data(
        args.model, args.stage, args.batch_size, cache=False, jit=bool(args.jit),
        dtype="float32", per_execution=1)
    trainer.train_steps(distributed, 1)  # Tracing and the first execution.
    logdir = args.logdir or tempfile.mkdtemp(prefix="train_step_profile_")
    started = time.perf_counter()
    tf.profiler.experimental.start(logdir)
    trainer.train_steps(distributed, args.steps)
    tf.profiler.experimental.stop()
    wall = time.perf_counter() - started
    events = read_op_events(logdir)

    by_kind = summarize(events, lambda name, op_type: op_kind(op_type))
    by_module = summarize(events, lambda name, op_type: op_module(name))
    by_type = summarize(events, lambda name, op_type: op_type)[:args.top]
    for title, rows in (("kind", by_kind), ("module", by_module),
                        ("op type", by_type)):
        print(f"\nOp time by {title} ({args.model} {args.stage}, batch "
              f"{args.batch_size}, {args.steps} steps, {wall:.1f} s of wall clock):")
        print_table(rows, ("name", "seconds", "share_of_op_time"), width=24,
                    decimals=3)
    print_json({
        "model": args.model, "stage": args.stage, "batch_size": args.batch_size,
        "steps": args.steps, "jit_compile": bool(args.jit),
        "wall_seconds": wall, "op_seconds": sum(e[2] for e in events),
        "cpus": os.cpu_count(), "logdir": logdir,
        "by_kind": by_kind, "by_module": by_module, "by_op_type": by_type,
    }, args.json_out)


if __name__ == "__main__":
    main()
