"""Recall at a fixed precision, in the sense of attribute extraction.

The model emits its top-1 prediction for the examples it is most confident
about. Ranking examples by top-1 probability and emitting the first k, the
precision is the share of those k that are correct and the recall is the
number correct among them over all labelled examples. Recall at 90% precision
(the paper's Tables 2 and 6) is the largest recall over all k whose precision
is at least 0.9. Ties in score are emitted together, as a threshold would.
"""

import numpy as np


def _operating_points(scores, correct):
    """Precision and recall at each distinct-score threshold, best first."""
    scores = np.asarray(scores, dtype="float64").reshape(-1)
    correct = np.asarray(correct, dtype=bool).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    scores, correct = scores[order], correct[order]
    true_positives = np.cumsum(correct)
    emitted = np.arange(1, len(scores) + 1)
    # Only the last index of each run of equal scores is a real threshold.
    is_cut = np.append(scores[1:] != scores[:-1], True)
    precision = true_positives[is_cut] / emitted[is_cut]
    recall = true_positives[is_cut] / max(len(scores), 1)
    return scores[is_cut], precision, recall


def recall_at_precision(scores, correct, precision=0.9):
    """Largest recall whose precision is at least `precision`.

    Args:
        scores: float array `[N]`, each example's top-1 probability.
        correct: bool array `[N]`, whether the top-1 prediction is right.
        precision: float. The precision to hold. Defaults to 0.9.

    Returns:
        float in [0, 1]; 0.0 when no threshold reaches the precision or
        there are no examples.

    Example:
    >>> recall_at_precision([0.9, 0.8, 0.7, 0.6], [1, 1, 0, 1], 0.75)
    0.75
    """
    if np.size(scores) == 0:
        return 0.0
    _, precisions, recalls = _operating_points(scores, correct)
    feasible = precisions >= precision - 1e-12
    return float(recalls[feasible].max()) if feasible.any() else 0.0


def score_threshold_at_precision(scores, correct, precision=0.9):
    """The lowest score threshold whose emitted predictions reach `precision`.

    Emitting every example with `score >= threshold` gives the recall of
    `recall_at_precision`. Returns `inf` (emit nothing) when no threshold
    reaches the precision.
    """
    if np.size(scores) == 0:
        return float("inf")
    thresholds, precisions, recalls = _operating_points(scores, correct)
    feasible = precisions >= precision - 1e-12
    if not feasible.any():
        return float("inf")
    best = np.flatnonzero(feasible)[np.argmax(recalls[feasible])]
    return float(thresholds[best])
