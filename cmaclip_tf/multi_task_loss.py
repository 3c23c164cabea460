"""The paper's loss: the sum over tasks of softmax cross-entropy (Alg. 1, l. 14).

A label of -1 means "no label for this task": that example adds nothing to
that task's loss, and does not count in its average. Other per-task losses
(noise-robust ones) are in `cmaclip_tf.losses`, chosen by `loss=`.
"""

from keras import ops

# Both stay importable from here (the trainer imports the loss).
from cmaclip_tf.losses import MISSING_LABEL  # noqa: F401
from cmaclip_tf.losses import masked_cross_entropy_sum  # noqa: F401
from cmaclip_tf.losses import task_losses


def multi_task_loss(outputs, labels, tasks, loss=None):
    """Sum over tasks of each task's mean loss over its labelled rows.

    Args:
        outputs: `{f"{task}_logits": [B, C]}`.
        labels: `{task: int [B]}`, -1 where unlabelled.
        tasks: task names.
        loss: a loss spec for every task or `{task: spec}` (see
            `cmaclip_tf.losses.task_losses`); `None` is cross-entropy.

    Returns `(total, {task: task_loss})`; a task with no labelled rows in the
    batch contributes 0.
    """
    losses = task_losses(loss, tasks)
    per_task = {}
    for task in tasks:
        loss_sum, count = losses[task](outputs[f"{task}_logits"], labels[task])
        per_task[task] = loss_sum / ops.maximum(count, 1.0)
    total = sum(per_task.values())
    return total, per_task
