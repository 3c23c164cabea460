"""StageTrainer's loop options on one device and on two replicas, as JSON.

Run as a script (`python tests/stage_trainer_two_replicas.py`) by
`test_stage_trainer.py`: it splits the CPU into two logical devices, which
only works before TensorFlow initializes, so it needs its own process.

Every scenario starts the micro model's warm-up stage (`micro_model.py`)
from the same weights and trains 3 steps on the same 3 batches of 8 (some
labels missing, so that micro-batches hold unequal counts), under a warm-up-then-cosine schedule and
AdamW with a large epsilon, so that the update follows the gradient's size
(with the default epsilon Adam's first steps are about `lr * sign(g)` and
would hide a wrong gradient scale). For each scenario it prints the largest
difference of the final weights and mean losses from its reference (one
device, one step per execution, no accumulation), how far the reference
moved, the steps run, and, under float16, each group's loss scale. The
clipped scenarios clip to a global norm that binds on every step.
"""

import json
import os
import sys

import two_logical_cpus  # noqa: F401  (first: before TensorFlow starts)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cmaclip_tf.datasets import load_dataset  # noqa: E402
from cmaclip_tf.models import create_cma_clip  # noqa: E402
from trainers.training.input_data import RunData  # noqa: E402
from trainers.training.learning_rate_schedule import WarmupSchedule  # noqa: E402
from trainers.training.stage_schedule import STAGES  # noqa: E402
from trainers.training.stage_trainer import StageTrainer  # noqa: E402

from micro_model import micro_model_config  # noqa: E402  (tests/)

BATCH, STEPS = 8, 3
MODEL = micro_model_config()
# name: (strategy, steps_per_execution, accumulate_steps, dtype policy, clip)
# Accumulation's sums on one device are pinned in test_stage_trainer.py;
# here its clipped form, whose norm needs every replica's micro-batches.
SCENARIOS = {
    "reference": ("one_device", 1, 1, "float32", False),
    "mirrored_float16": ("mirrored", 2, 1, "mixed_float16", False),
    # Trains on the first 2 batches only, asked for 3 steps in one execution.
    "mirrored_bfloat16_data_ends": ("mirrored", 3, 1, "mixed_bfloat16", False),
    "reference_clipped": ("one_device", 1, 1, "float32", True),
    "mirrored_clipped_accumulate_2": ("mirrored", 2, 2, "float32", True),
}
REFERENCES = {"reference": "reference", "reference_clipped": "reference_clipped"}


def options(clip):
    """Trainer options: unclipped updates are ~1e-3; clipped ones as large."""
    schedule = WarmupSchedule(total_steps=STEPS, warmup_steps=1)
    if clip:
        return dict(learning_rate=1.0, clip_norm=0.05, learning_rate_schedule=schedule,
                    optimizer_options={"epsilon": 1e-3})
    return dict(learning_rate=10.0, learning_rate_schedule=schedule,
                optimizer_options={"epsilon": 1.0})


def batches(tasks):
    """The 3 batches every scenario trains on, as numpy; some labels missing."""
    dataset = load_dataset("synthetic", num_examples=BATCH * STEPS, seed=0)
    data = RunData(dataset, seed=0)
    _, clip, config = create_cma_clip(MODEL, dataset.tasks.num_classes)
    data.prepare(clip, config)
    result = []
    for features, labels in data.train_batches(0, BATCH).take(STEPS):
        features = {k: v.numpy() for k, v in features.items()}
        labels = {k: v.numpy().copy() for k, v in labels.items()}
        labels["style"][:3] = -1  # Micro-batches with unequal counts.
        labels["pattern"][5] = -1
        result.append((features, labels))
    return result


def strategy_of(name):
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.OneDeviceStrategy(devices[0])


def train(scenario, tasks, initial, data, steps=STEPS, snapshot_after=None):
    strategy_name, per_execution, accumulate, policy, clip = SCENARIOS[scenario]
    keras.mixed_precision.set_global_policy(policy)
    strategy = strategy_of(strategy_name)
    with strategy.scope():
        model, _, _ = create_cma_clip(MODEL, tasks)
    keras.mixed_precision.set_global_policy("float32")
    for variable, value in zip(model.weights, initial):
        variable.assign(value)
    settings = options(clip)
    trainer = StageTrainer(
        model, STAGES["warmup"], strategy, settings.pop("learning_rate"), 1e-4,
        steps_per_execution=per_execution, accumulate_steps=accumulate,
        **settings,
    )
    features = {k: np.concatenate([b[0][k] for b in data]) for k in data[0][0]}
    labels = {k: np.concatenate([b[1][k] for b in data]) for k in data[0][1]}
    dataset = tf.data.Dataset.from_tensor_slices((features, labels)).batch(BATCH)
    result = {}
    parts = [(dataset, steps)]
    if snapshot_after:  # The same run, also the weights after its first steps.
        parts = [(dataset.take(snapshot_after), snapshot_after),
                 (dataset.skip(snapshot_after), steps - snapshot_after)]
    loss_sums, steps_run = {}, 0
    for part, part_steps in parts:
        losses = trainer.train_steps(
            strategy.experimental_distribute_dataset(part), part_steps)
        for task, loss in losses.items():
            loss_sums[task] = loss_sums.get(task, 0.0) + loss * trainer.steps_run
        steps_run += trainer.steps_run
        result.setdefault("snapshot", [np.array(w.numpy(), np.float64)
                                       for w in model.weights])
    result.update({
        "weights": [np.array(w.numpy(), np.float64) for w in model.weights],
        "losses": {t: v / steps_run for t, v in loss_sums.items()},
        "steps_run": steps_run,
    })
    if trainer.loss_scaling:
        result["loss_scales"] = [
            float(o.dynamic_scale.numpy()) for o in trainer.optimizers.values()
        ]
    return result


def largest_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def main():
    dataset = load_dataset("synthetic", num_examples=BATCH * STEPS, seed=0)
    tasks = dataset.tasks.num_classes
    data = batches(tasks)
    model, _, _ = create_cma_clip(MODEL, tasks)
    initial = [w.numpy() for w in model.weights]
    runs = {"reference": train("reference", tasks, initial, data, snapshot_after=2)}
    runs["reference_clipped"] = train("reference_clipped", tasks, initial, data)
    results = {}
    for scenario in SCENARIOS:
        reference = runs[REFERENCES.get(scenario) or (
            "reference_clipped" if SCENARIOS[scenario][4] else "reference")]
        expected = reference["weights"]
        if scenario.endswith("_data_ends"):
            # 2 steps run, the same 2 as the reference's first two.
            run = train(scenario, tasks, initial, data[:2])
            expected = reference["snapshot"]
        else:
            run = runs.get(scenario) or train(scenario, tasks, initial, data)
        results[scenario] = {
            "moved": largest_difference(reference["weights"], initial),
            "weights_difference": largest_difference(run["weights"], expected),
            "loss_difference": max(abs(run["losses"][t] - reference["losses"][t])
                                   for t in reference["losses"]),
            "steps_run": run["steps_run"],
            "loss_scales": run.get("loss_scales"),
        }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
