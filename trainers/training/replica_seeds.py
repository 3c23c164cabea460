"""Random streams that differ across replicas, reproducibly from the seed.

Keras layers draw dropout masks from a `SeedGenerator`, whose state is a
variable; under `MirroredStrategy` it is mirrored, so every replica would
draw the same mask for its different examples and the replicas would
regularize in lockstep. While a replica step runs, `distinct_replica_seeds`
moves each state's seed by the replica's index (times 2^32, beyond any seed
Keras draws, below 1e9), then moves it back: the masks differ per replica,
the stored states stay equal on every replica, and the whole run still
follows from `keras.utils.set_random_seed`.
"""

import contextlib

import tensorflow as tf

REPLICA_SEED_STRIDE = 2**32


def seed_states(model):
    """The seed-generator state variables of `model` (dropout's and others')."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


@contextlib.contextmanager
def distinct_replica_seeds(states):
    """Inside `strategy.run`: random ops in the block draw per-replica streams.

    Args:
        states: `seed_states(model)`.

    Example:
    ```python
    def replica_step(features):
        with distinct_replica_seeds(seed_states(model)):
            return model(features, training=True)
    ```
    """
    context = tf.distribute.get_replica_context()
    if not states or context is None or context.num_replicas_in_sync == 1:
        yield
        return
    replica = tf.cast(context.replica_id_in_sync_group, tf.int64)
    shift = tf.stack([replica * REPLICA_SEED_STRIDE, tf.constant(0, tf.int64)])
    for state in states:
        state.assign_add(tf.cast(shift, state.dtype))
    yield
    for state in states:
        state.assign_sub(tf.cast(shift, state.dtype))
