"""Missing labels add no loss; the total is the sum of per-task means."""

import numpy as np
import pytest

from cmaclip_tf.multi_task_loss import masked_cross_entropy_sum
from cmaclip_tf.multi_task_loss import multi_task_loss


def _ce(logits, label):
    logits = np.asarray(logits, "float64")
    return np.log(np.exp(logits).sum()) - logits[label]


def test_missing_labels_contribute_no_loss():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [9.0, -9.0, 0.0]], "float32")
    labels = np.array([0, -1, 1])
    loss_sum, count = masked_cross_entropy_sum(logits, labels)
    assert float(count) == 2.0
    assert float(loss_sum) == pytest.approx(_ce(logits[0], 0) + _ce(logits[2], 1), rel=1e-5)
    # Changing the unlabelled row's logits changes nothing.
    logits[1] = [100.0, -100.0, 0.0]
    assert float(masked_cross_entropy_sum(logits, labels)[0]) == pytest.approx(
        float(loss_sum), rel=1e-6
    )


def test_total_is_sum_of_per_task_means():
    outputs = {
        "color_logits": np.array([[1.0, 0.0], [0.0, 1.0]], "float32"),
        "style_logits": np.array([[0.0, 2.0, 0.0], [1.0, 1.0, 1.0]], "float32"),
    }
    labels = {"color": np.array([0, 0]), "style": np.array([-1, -1])}
    total, per_task = multi_task_loss(outputs, labels, ["color", "style"])
    expected_color = (_ce([1, 0], 0) + _ce([0, 1], 0)) / 2
    assert float(per_task["color"]) == pytest.approx(expected_color, rel=1e-5)
    assert float(per_task["style"]) == 0.0
    assert float(total) == pytest.approx(expected_color, rel=1e-5)
