"""What becomes a stage's best checkpoint (`trainers.training.checkpoint_selection`)."""

import numpy as np
import pytest
import tensorflow as tf

from trainers.training.checkpoint_selection import CheckpointSelection


def mean_accuracy(metrics):
    return float(np.mean([m["accuracy"] for m in metrics.values()]))


def metrics(color, pattern):
    return {"color": {"accuracy": color}, "pattern": {"accuracy": pattern}}


def test_average_keeps_the_highest_average_even_where_a_task_falls():
    selection = CheckpointSelection(["color", "pattern"], mean_accuracy, "average")
    assert selection.start(metrics(0.8, 0.5)) == pytest.approx(0.65)
    keep, score, _, notes = selection.consider(metrics(0.95, 0.45), 1, 0.65)
    assert keep and score == pytest.approx(0.7) and notes == []
    keep, _, _, _ = selection.consider(metrics(0.9, 0.45), 2, 0.7)
    assert not keep


def test_every_task_refuses_an_epoch_with_a_task_below_its_start():
    selection = CheckpointSelection(["color", "pattern"], mean_accuracy, "every_task")
    selection.start(metrics(0.8, 0.5))
    keep, score, _, notes = selection.consider(metrics(0.95, 0.45), 1, 0.65)
    assert not keep and score == pytest.approx(0.7)
    assert notes == ["Epoch 1 not kept: its score is higher but pattern "
                     "accuracy 0.4500 < 0.5000 at the start."]
    # Level with the start is not below it.
    keep, score, _, _ = selection.consider(metrics(0.9, 0.5), 2, 0.65)
    assert keep and score == pytest.approx(0.7)


def test_per_task_selection_combines_each_tasks_best_epoch():
    color = tf.Variable([0.0, 0.0])
    pattern = tf.Variable([0.0])
    selection = CheckpointSelection(
        ["color", "pattern"], mean_accuracy, "every_task",
        task_variables={"color": [color], "pattern": [pattern]})
    selection.start(metrics(0.8, 0.5))

    color.assign([1.0, 1.0])
    pattern.assign([1.0])
    keep, score, kept, notes = selection.consider(metrics(0.9, 0.4), 1, 0.65)
    assert keep and score == pytest.approx((0.9 + 0.5) / 2)
    assert kept == metrics(0.9, 0.5)
    assert notes == ["Each task keeps its best epoch: color epoch 1, pattern the start."]

    color.assign([2.0, 2.0])
    pattern.assign([2.0])
    keep, score, kept, _ = selection.consider(metrics(0.85, 0.6), 2, 0.7)
    assert keep and score == pytest.approx((0.9 + 0.6) / 2)
    assert selection.task_epochs() == {"color": 1, "pattern": 2}

    # The best model: color from epoch 1, pattern from epoch 2; afterwards
    # the model's own weights are back.
    color.assign([3.0, 3.0])
    pattern.assign([3.0])
    with selection.best_model():
        np.testing.assert_array_equal(color.numpy(), [1.0, 1.0])
        np.testing.assert_array_equal(pattern.numpy(), [2.0])
    np.testing.assert_array_equal(color.numpy(), [3.0, 3.0])
    np.testing.assert_array_equal(pattern.numpy(), [3.0])

    # Nothing better for any task: the best stays.
    keep, _, _, _ = selection.consider(metrics(0.85, 0.55), 3, 0.75)
    assert not keep


def test_per_task_record_survives_a_checkpoint_round_trip(tmp_path):
    def fresh():
        variable = tf.Variable([0.0])
        selection = CheckpointSelection(
            ["color"], mean_accuracy, "every_task",
            task_variables={"color": [variable]})
        return variable, selection

    variable, selection = fresh()
    selection.start({"color": {"accuracy": 0.5}})
    variable.assign([7.0])
    selection.consider({"color": {"accuracy": 0.75}}, 1, 0.5)
    path = tf.train.Checkpoint(selection=selection.trackables()).save(
        str(tmp_path / "ckpt"))

    variable, restored = fresh()
    tf.train.Checkpoint(selection=restored.trackables()).restore(path)
    assert restored.task_epochs() == {"color": 1}
    # A later epoch that is worse for the task keeps the restored best.
    keep, _, _, _ = restored.consider({"color": {"accuracy": 0.6}}, 2, 0.75)
    assert not keep
    with restored.best_model():
        np.testing.assert_array_equal(variable.numpy(), [7.0])
    # Below the restored start accuracy counts too.
    keep, _, _, _ = restored.consider({"color": {"accuracy": 0.4}}, 3, 0.75)
    assert not keep


def test_unknown_rule():
    with pytest.raises(ValueError, match="task_selection must be one of"):
        CheckpointSelection(["color"], mean_accuracy, "best")
