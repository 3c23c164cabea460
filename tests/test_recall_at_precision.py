"""Recall at 90% precision on hand-computed cases, and against Keras."""

import keras
import numpy as np
import pytest

from cmaclip_tf.metrics import recall_at_precision
from cmaclip_tf.metrics import score_threshold_at_precision


def test_hand_computed_case():
    # Ranked: right, right, wrong, right, right, wrong, wrong, right, right, right
    scores = np.linspace(1.0, 0.1, 10)
    correct = np.array([1, 1, 0, 1, 1, 0, 0, 1, 1, 1], bool)
    # Precision after k emitted: 1, 1, .67, .75, .8, .67, .57, .625, .67, .7
    assert recall_at_precision(scores, correct, 0.9) == pytest.approx(0.2)
    assert recall_at_precision(scores, correct, 0.8) == pytest.approx(0.4)
    assert recall_at_precision(scores, correct, 0.7) == pytest.approx(0.7)
    assert score_threshold_at_precision(scores, correct, 0.8) == pytest.approx(0.6)


def test_ties_are_emitted_together():
    scores = [0.9, 0.5, 0.5, 0.1]
    correct = [1, 1, 0, 1]
    # Emitting the tied pair drops precision to 2/3 < 0.9.
    assert recall_at_precision(scores, correct, 0.9) == pytest.approx(0.25)


def test_edge_cases():
    assert recall_at_precision([], [], 0.9) == 0.0
    assert recall_at_precision([0.9, 0.8], [0, 0], 0.9) == 0.0
    assert score_threshold_at_precision([0.9], [0], 0.9) == float("inf")
    assert recall_at_precision([0.3, 0.2], [1, 1], 0.9) == 1.0


def test_agrees_with_keras_recall_at_precision():
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=2000).astype("float32")
    correct = rng.uniform(size=2000) < scores  # Confident means right, mostly.
    metric = keras.metrics.RecallAtPrecision(0.9, num_thresholds=2001)
    metric.update_state(correct, scores)
    # Keras' recall counts over correct predictions; ours over all examples.
    expected = float(metric.result()) * correct.mean()
    assert recall_at_precision(scores, correct, 0.9) == pytest.approx(
        expected, abs=2e-3
    )
