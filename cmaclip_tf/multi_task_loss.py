"""The paper's loss: the sum over tasks of softmax cross-entropy (Alg. 1, l. 14).

A label of -1 means "no label for this task": that example adds nothing to
that task's loss, and does not count in its average.
"""

from keras import ops

MISSING_LABEL = -1


def masked_cross_entropy_sum(logits, labels):
    """Summed cross-entropy over labelled examples, and how many there were.

    Args:
        logits: float `[B, C]`.
        labels: int `[B]`, -1 where the example has no label.

    Returns:
        `(loss_sum, count)`, both float32 scalars.
    """
    labels = ops.cast(labels, "int32")
    labelled = ops.cast(labels != MISSING_LABEL, "float32")
    safe_labels = ops.maximum(labels, 0)
    log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    picked = ops.take_along_axis(log_probs, safe_labels[:, None], axis=-1)[:, 0]
    return -ops.sum(picked * labelled), ops.sum(labelled)


def multi_task_loss(outputs, labels, tasks):
    """Sum over tasks of each task's mean cross-entropy over its labelled rows.

    Returns `(total, {task: task_loss})`; a task with no labelled rows in the
    batch contributes 0.
    """
    per_task = {}
    for task in tasks:
        loss_sum, count = masked_cross_entropy_sum(
            outputs[f"{task}_logits"], labels[task]
        )
        per_task[task] = loss_sum / ops.maximum(count, 1.0)
    total = sum(per_task.values())
    return total, per_task
