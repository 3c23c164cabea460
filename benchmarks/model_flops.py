"""FLOPs per example of CMA-CLIP, counted from its architecture, and the
forward's FLOPs from XLA's cost analysis, to check the count against.

    python benchmarks/model_flops.py --models tiny,vit_b32 [--xla]

The count is matrix products only, at 2 FLOPs per multiply-add: per
Transformer layer over a sequence of length L, width d and feed-forward width
f, `8·L·d²` (query, key, value, output projections) + `4·L²·d` (scores and
the weighted sum) + `4·L·d·f`; the vision patch embedding; the fusion
transformer's two input projections; the task heads. vit_b32: vision 8.8,
text 6.0, fusion 10.0 GFLOP. A train step counts 3× the forward of what
trains (forward, and the backward's two products per forward product) and 1×
the forward of the frozen front it runs (none when the front is cached).
`--xla` compiles the forward under Keras's JAX backend (in a child process)
and prints XLA's count beside this one: it also counts the elementwise work
(softmax, GELU, LayerNorm), so it comes out a few percent higher.
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.random_batch import RETAIL_TASKS  # noqa: E402


def transformer_flops(length, width, intermediate, layers):
    """Matmul FLOPs of `layers` Transformer layers over one sequence."""
    per_layer = (8 * length * width**2 + 4 * length**2 * width
                 + 4 * length * width * intermediate)
    return layers * per_layer


def forward_flops(config, tasks=RETAIL_TASKS):
    """`{part: FLOPs per example}` of the forward pass: vision, text, fusion, heads."""
    clip = config["clip_architecture"]
    vision, text = clip["vision"], clip["text"]
    patches = (vision["image_size"] // vision["patch_size"]) ** 2
    image_length = patches + 1  # The class token.
    text_length = config["sequence_length"]
    fusion = config["fusion"]
    width = fusion["hidden_dim"]
    head_width = config["head"].get("hidden_dim") or width
    return {
        "vision": 2 * patches * vision["patch_size"] ** 2 * 3 * vision["hidden_dim"]
        + transformer_flops(image_length, vision["hidden_dim"],
                            vision["intermediate_dim"], vision["num_layers"]),
        "text": transformer_flops(text_length, text["hidden_dim"],
                                  text["intermediate_dim"], text["num_layers"]),
        "fusion": 2 * image_length * vision["hidden_dim"] * width
        + 2 * text_length * text["hidden_dim"] * width
        + transformer_flops(image_length + text_length, width,
                            fusion.get("intermediate_dim") or 4 * width,
                            fusion["num_layers"]),
        "heads": sum(2 * width * head_width + 2 * head_width * classes
                     for classes in tasks.values()),
    }


# The model's parts by the module group that trains them.
PART_GROUPS = {"vision": "clip", "text": "clip", "fusion": "fusion", "heads": "heads"}


def train_step_flops(config, multipliers, cache_features=False, tasks=RETAIL_TASKS):
    """FLOPs per example of one train step.

    Args:
        config: a model config.
        multipliers: the stage's `learning_rate_multipliers` (None: frozen).
        cache_features: the frozen front is read from the feature cache.
    """
    total = 0
    for part, flops in forward_flops(config, tasks).items():
        trains = multipliers[PART_GROUPS[part]] is not None
        if trains:
            total += 3 * flops
        elif not cache_features:
            total += flops
    return total


def xla_forward_flops(model_name, batch_size=2):
    """XLA's FLOPs per example of the forward pass (Keras on JAX, a child
    process); None if JAX is not installed."""
    result = subprocess.run(
        [sys.executable, __file__, "--xla-child", model_name,
         "--batch-size", str(batch_size)],
        capture_output=True, text=True,
        env=dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
                 TF_CPP_MIN_LOG_LEVEL="3"),
    )
    if result.returncode != 0:
        print(result.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])["flops_per_example"]


def _xla_child(model_name, batch_size):
    import jax

    from benchmarks.random_batch import random_batch
    from cmaclip_tf.models import create_cma_clip

    model, _, config = create_cma_clip(model_name, RETAIL_TASKS, pretrained=False)
    features, _ = random_batch(config, batch_size)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def forward(trainable, non_trainable, features):
        outputs, _ = model.stateless_call(trainable, non_trainable, features,
                                          training=False)
        return outputs

    compiled = jax.jit(forward).lower(trainable, non_trainable, features).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    print(json.dumps({"flops_per_example": float(cost["flops"]) / batch_size}))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,vit_b32")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--xla", action="store_true",
                        help="Also XLA's count of the forward (Keras on JAX).")
    parser.add_argument("--xla-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.xla_child:
        _xla_child(args.xla_child, args.batch_size)
        return
    from cmaclip_tf.models import get_model_config

    for name in args.models.split(","):
        parts = forward_flops(get_model_config(name))
        line = ", ".join(f"{p} {f / 1e9:.3g}" for p, f in parts.items())
        total = sum(parts.values())
        print(f"{name}: forward {total / 1e9:.3g} GFLOP per example ({line})")
        if args.xla:
            xla = xla_forward_flops(name, args.batch_size)
            if xla:
                print(f"{name}: XLA cost analysis {xla / 1e9:.2f} GFLOP per "
                      f"example ({xla / total:.3f}x the count)")


if __name__ == "__main__":
    main()
