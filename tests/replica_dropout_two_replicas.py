"""Dropout on two replicas: different masks per replica, the same run per seed.

Run as a script (`python tests/replica_dropout_two_replicas.py`) by
`test_replica_seeds.py`: it splits the CPU into two logical devices, which
only works before TensorFlow initializes, so it needs its own process.

The micro model with dropout 0.5 in the fusion and heads, in its warm-up
stage under `MirroredStrategy`. Both replicas get the same batch, so their
losses differ only if their dropout masks do. Prints, as JSON, both
replicas' losses for one step; the weights after two steps of training
from seed 0, again from seed 0 and from seed 1; and each replica's copy of
every seed state after training.
"""

import json
import os
import sys

import two_logical_cpus  # noqa: F401  (first: before TensorFlow starts)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cmaclip_tf.datasets import load_dataset  # noqa: E402
from cmaclip_tf.models import create_cma_clip  # noqa: E402
from trainers.training.input_data import RunData  # noqa: E402
from trainers.training.stage_schedule import STAGES  # noqa: E402
from trainers.training.stage_trainer import StageTrainer  # noqa: E402

from micro_model import micro_model_config  # noqa: E402  (tests/)

BATCH = 4
MODEL = micro_model_config()
MODEL["fusion"]["dropout"] = MODEL["head"]["dropout"] = 0.5


def setup(strategy, tasks, seed):
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        model, clip, config = create_cma_clip(MODEL, tasks)
    trainer = StageTrainer(model, STAGES["warmup"], strategy, 1e-2, 0.0)
    return model, clip, config, trainer


def main():
    dataset = load_dataset("synthetic", num_examples=4 * BATCH, seed=0)
    tasks = dataset.tasks.num_classes
    strategy = tf.distribute.MirroredStrategy(
        [d.name for d in tf.config.list_logical_devices("CPU")])
    model, clip, config, trainer = setup(strategy, tasks, 0)
    data = RunData(dataset, seed=0)
    data.prepare(clip, config)
    features, labels = next(iter(data.train_batches(0, BATCH)))
    same_batch = strategy.experimental_distribute_values_from_function(
        lambda _: (features, labels))
    counts = {t: tf.reduce_sum(tf.cast(labels[t] >= 0, tf.float32)) for t in tasks}

    @tf.function(autograph=False)
    def losses(batch):
        per_task, _ = strategy.run(
            trainer._replica_loss_and_gradients, args=(*batch, counts))
        return [strategy.experimental_local_results(per_task[t]) for t in tasks]

    replica_losses = [[float(x) for x in task] for task in losses(same_batch)]

    def trained_weights(seed):
        model, _, _, trainer = setup(strategy, tasks, seed)
        batches = strategy.experimental_distribute_dataset(
            data.train_batches(0, 2 * BATCH))
        trainer.train_steps(batches, 2)
        states = [strategy.experimental_local_results(v.value)
                  for v in trainer._seed_states]
        return model, [[c.numpy().tolist() for c in copies] for copies in states]

    runs = {}
    for name, seed in (("seed_0", 0), ("seed_0_again", 0), ("seed_1", 1)):
        model, states = trained_weights(seed)
        runs[name] = [np.asarray(w.numpy(), np.float64) for w in model.weights]
        if name == "seed_0":
            seed_state_copies = states
    print(json.dumps({
        "replica_losses": replica_losses,
        "same_seed_difference": max(float(np.max(np.abs(a - b))) for a, b in
                                    zip(runs["seed_0"], runs["seed_0_again"])),
        "other_seed_difference": max(float(np.max(np.abs(a - b))) for a, b in
                                     zip(runs["seed_0"], runs["seed_1"])),
        "seed_state_copies": seed_state_copies,
    }))


if __name__ == "__main__":
    main()
