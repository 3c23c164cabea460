"""Replicas draw different dropout masks; a run still follows from its seed."""

import json
import os
import subprocess
import sys

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.large
def test_two_replicas_draw_different_masks_reproducibly():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(TESTS), TESTS]))
    result = subprocess.run(
        [sys.executable, os.path.join(TESTS, "replica_dropout_two_replicas.py")],
        env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # The same batch on both replicas: a loss differs only through its mask.
    for replica_0, replica_1 in report["replica_losses"]:
        assert abs(replica_0 - replica_1) > 1e-4, report["replica_losses"]
    assert report["same_seed_difference"] == 0.0
    assert report["other_seed_difference"] > 1e-4
    # Moved for the step, moved back: every replica holds the same state.
    assert report["seed_state_copies"]
    for copies in report["seed_state_copies"]:
        assert copies[0] == copies[1] and copies[0][1] > 0


DROPOUT_ON_TWO_REPLICAS = """
import json, two_logical_cpus, keras, tensorflow as tf
from trainers.training.replica_seeds import distinct_replica_seeds, seed_states
strategy = tf.distribute.MirroredStrategy(
    [d.name for d in tf.config.list_logical_devices("CPU")])
with strategy.scope():
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dropout(0.5, seed=1)])

def masks(distinct):
    def step():
        if not distinct:
            return model(tf.ones((1, 64)), training=True)
        with distinct_replica_seeds(seed_states(model)):
            return model(tf.ones((1, 64)), training=True)
    return [m.numpy().tolist() for m in strategy.experimental_local_results(
        tf.function(lambda: strategy.run(step))())]

print(json.dumps({"keras": masks(False), "distinct": masks(True),
                  "states": [s.numpy().tolist() for s in strategy.experimental_local_results(
                      seed_states(model)[0].value)]}))
"""


def test_the_seed_shift_gives_each_replica_its_own_mask():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(TESTS), TESTS]))
    result = subprocess.run([sys.executable, "-c", DROPOUT_ON_TWO_REPLICAS], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    first, second = report["keras"]
    assert first == second  # Keras alone: one mask for both replicas.
    first, second = report["distinct"]
    assert first != second
    # Two draws each, and the states equal again on both replicas.
    assert report["states"] == [[1, 2], [1, 2]]
