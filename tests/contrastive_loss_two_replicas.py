"""The global-batch contrastive loss on two replicas vs. one device, as JSON.

Run as a script (`python tests/contrastive_loss_two_replicas.py`) by
`test_contrastive_loss.py`: it splits the CPU into two logical devices, which
only works before TensorFlow initializes, so it needs its own process.

Two towers (a Dense on image features, one on text features) and a logit
scale produce the embeddings of a global batch. For each way of splitting
that batch over two replicas (even, uneven, one replica empty) it prints the
single-device loss and gradients, the per-replica losses and gradients
summed over replicas, and the weights after one SGD step taken on one device
and under `MirroredStrategy`, where the Keras optimizer all-reduces.
"""

import json
import sys

import two_logical_cpus  # noqa: F401  (first: before TensorFlow starts)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras  # noqa: E402

from cmaclip_tf.losses import INITIAL_LOGIT_SCALE  # noqa: E402
from cmaclip_tf.losses import MAX_LOGIT_SCALE  # noqa: E402
from cmaclip_tf.losses import clamp_logit_scale  # noqa: E402
from cmaclip_tf.losses import contrastive_loss  # noqa: E402
from cmaclip_tf.losses import global_batch_contrastive_loss  # noqa: E402

SUM = tf.distribute.ReduceOp.SUM
IMAGE_DIM, TEXT_DIM, EMBED_DIM = 5, 6, 4
# Rows of the global batch on replica 0 and on replica 1.
SPLITS = {"even": (4, 4), "uneven": (4, 3), "second_empty": (3, 0)}


class TwoTowers:
    """A Dense per modality and a logit scale, with fixed initial weights."""

    def __init__(self, weights):
        self.image = keras.layers.Dense(EMBED_DIM)
        self.text = keras.layers.Dense(EMBED_DIM)
        self.image.build((None, IMAGE_DIM))
        self.text.build((None, TEXT_DIM))
        self.logit_scale = keras.Variable(INITIAL_LOGIT_SCALE, name="logit_scale")
        self.variables = [
            self.image.kernel, self.image.bias,
            self.text.kernel, self.text.bias,
            self.logit_scale,
        ]
        for variable, value in zip(self.variables, weights):
            variable.assign(value)

    def embeddings(self, image_features, text_features):
        return self.image(image_features), self.text(text_features)


def _numpy(values):
    return [np.asarray(keras.ops.convert_to_numpy(v)).tolist() for v in values]


def single_device(weights, image_features, text_features):
    towers = TwoTowers(weights)
    with tf.GradientTape() as tape:
        loss = contrastive_loss(
            *towers.embeddings(image_features, text_features), towers.logit_scale
        )
    gradients = tape.gradient(loss, towers.variables)
    keras.optimizers.SGD(1.0).apply_gradients(zip(gradients, towers.variables))
    return {
        "loss": float(loss),
        "gradients": _numpy(gradients),
        "weights_after_step": _numpy(towers.variables),
    }


def two_replicas(strategy, weights, image_features, text_features, split):
    with strategy.scope():
        towers = TwoTowers(weights)
        optimizer = keras.optimizers.SGD(1.0)
        optimizer.build(towers.variables)
    bounds = np.cumsum((0,) + split)

    def shard(context):
        rows = slice(bounds[context.replica_id_in_sync_group],
                     bounds[context.replica_id_in_sync_group + 1])
        return image_features[rows], text_features[rows]

    inputs = strategy.experimental_distribute_values_from_function(shard)

    def replica_step(features, apply):
        with tf.GradientTape() as tape:
            loss = global_batch_contrastive_loss(
                *towers.embeddings(*features), towers.logit_scale
            )
        gradients = tape.gradient(loss, towers.variables)
        if apply:
            optimizer.apply_gradients(zip(gradients, towers.variables))
        return loss, gradients

    @tf.function
    def gradients_step(features):
        losses, gradients = strategy.run(replica_step, args=(features, False))
        per_replica = strategy.experimental_local_results(losses)
        return (
            strategy.reduce(SUM, losses, axis=None),
            per_replica,
            [strategy.reduce(SUM, g, axis=None) for g in gradients],
        )

    @tf.function
    def train_step(features):
        strategy.run(replica_step, args=(features, True))

    loss, per_replica, gradients = gradients_step(inputs)
    train_step(inputs)
    # Each replica's copy of every variable, to see they stayed in sync.
    copies = [strategy.experimental_local_results(v.value) for v in towers.variables]
    return {
        "loss": float(loss),
        "per_replica_losses": [float(x) for x in per_replica],
        "gradients": _numpy(gradients),
        "weights_after_step": _numpy(c[0] for c in copies),
        "replica_1_weights_after_step": _numpy(c[1] for c in copies),
        "logit_scale_after_clamp": clamp_check(strategy, towers),
    }


def clamp_check(strategy, towers):
    """Both replicas' logit scale after setting it to 6 and clamping."""
    towers.logit_scale.assign(6.0)
    clamp_logit_scale(towers.logit_scale)
    return [float(v) for v in
            strategy.experimental_local_results(towers.logit_scale.value)]


def main():
    rng = np.random.default_rng(7)
    weights = [
        rng.normal(size=(IMAGE_DIM, EMBED_DIM)).astype("float32"),
        rng.normal(size=(EMBED_DIM,)).astype("float32") * 0.1,
        rng.normal(size=(TEXT_DIM, EMBED_DIM)).astype("float32"),
        rng.normal(size=(EMBED_DIM,)).astype("float32") * 0.1,
        np.float32(INITIAL_LOGIT_SCALE),
    ]
    # One strategy for all cases: several in a process can mismatch the
    # collectives' instance keys.
    strategy = tf.distribute.MirroredStrategy(
        [d.name for d in tf.config.list_logical_devices("CPU")]
    )
    results = {"max_logit_scale": MAX_LOGIT_SCALE}
    for name, split in SPLITS.items():
        size = sum(split)
        image_features = rng.normal(size=(size, IMAGE_DIM)).astype("float32")
        text_features = rng.normal(size=(size, TEXT_DIM)).astype("float32")
        results[name] = {
            "single": single_device(weights, image_features, text_features),
            "mirrored": two_replicas(
                strategy, weights, image_features, text_features, split
            ),
        }
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
