"""Which validation result becomes a stage's best checkpoint.

A stage is scored at its start and after every epoch; `StageCheckpoints`
keeps the best. The recipe's `task_selection` says what "best" means:

- `"average"` (the paper's): the highest selection score, a mean over tasks.
  A task can give ground while the average rises.
- `"every_task"` (the default recipe's): the same, but an epoch on which any
  task's validation accuracy is below the stage start's is not kept. Chained
  over the stages, no task ends below where the first stage began: zero-shot
  CLIP, with `zero_shot_start`. And where a stage trains only per-task
  weights (each task's modality attention and head: the tuning stage, or
  the warm-up of `clip_linear`), the tasks are independent, so each keeps
  the epoch that is best for it, and the best checkpoint combines them.

The per-task record (start accuracies, each task's best score and epoch,
the combined best's per-task weights) is checkpointed with the stage, so a
resumed stage selects as an uninterrupted one.
"""

import contextlib
import json

import numpy as np
import tensorflow as tf

TASK_SELECTIONS = ("average", "every_task")


class CheckpointSelection:
    """Decides what each validation result means for the stage's best.

    Args:
        tasks: task names, in the model's order.
        score: callable, `{task: metrics}` -> float (the run's selection
            score, a mean over the tasks given).
        rule: one of `TASK_SELECTIONS`.
        task_variables: optional `{task: [variables]}` (`CMACLIP.
            task_variables()`), given where the stage trains nothing else:
            each task then keeps its own best epoch (with `every_task`).
    """

    def __init__(self, tasks, score, rule="average", task_variables=None):
        if rule not in TASK_SELECTIONS:
            raise ValueError(f"task_selection must be one of {TASK_SELECTIONS}; "
                             f"got {rule!r}.")
        self.tasks = list(tasks)
        self.score = score
        self.rule = rule
        n = len(self.tasks)
        self.start_accuracy = tf.Variable(np.full(n, -1.0), dtype=tf.float64,
                                          trainable=False, name="start_accuracy")
        self.per_task = rule == "every_task" and task_variables is not None
        self.task_variables = None
        self.best_weights = None
        if self.per_task:
            self.task_variables = {t: list(task_variables[t]) for t in self.tasks}
            # Each task's best epoch, and its weights at that epoch.
            self.task_epoch = tf.Variable(np.zeros(n, np.int64), trainable=False,
                                          name="task_epoch")
            # Each task's validation metrics at that epoch (JSON).
            self.task_metrics = tf.Variable([""] * n, dtype=tf.string,
                                            trainable=False, name="task_metrics")
            self.best_weights = {
                t: [tf.Variable(v.numpy(), trainable=False, name=f"best_{i}")
                    for i, v in enumerate(self.task_variables[t])]
                for t in self.tasks
            }

    def trackables(self):
        """What `StageCheckpoints` saves and restores with the stage."""
        tracked = {"start_accuracy": self.start_accuracy}
        if self.per_task:
            tracked.update(task_epoch=self.task_epoch,
                           task_metrics=self.task_metrics,
                           best_weights=self.best_weights)
        return tracked

    def start(self, metrics):
        """Records the stage's start (epoch 0); returns its score."""
        self.start_accuracy.assign([_accuracy(metrics, t) for t in self.tasks])
        if self.per_task:
            for i, task in enumerate(self.tasks):
                self._keep_task(i, task, metrics, 0)
        return self.score(metrics)

    def consider(self, metrics, epoch, best_score):
        """What to keep of `epoch`'s (1-based) validation `metrics`.

        Returns:
            `(keep, score, metrics, notes)`: whether the best checkpoint
            changes, its score and per-task metrics if so (with per-task
            selection, the combination's), and lines for the console.
        """
        score = self.score(metrics)
        below = [t for t in self.tasks if self._below_start(metrics, t)]
        if not self.per_task:
            if score <= best_score:
                return False, score, metrics, []
            if self.rule == "every_task" and below:
                return False, score, metrics, [
                    f"Epoch {epoch} not kept: its score is higher but "
                    + self._below_text(metrics, below) + "."]
            return True, score, metrics, []
        kept = self._kept_metrics()
        improved = []
        for i, task in enumerate(self.tasks):
            if (task not in below and self.score({task: metrics[task]})
                    > self.score({task: kept[task]})):
                self._keep_task(i, task, metrics, epoch)
                improved.append(task)
        if not improved:
            return False, score, metrics, []
        combined = self._kept_metrics()
        epochs = self.task_epoch.numpy()
        return True, self.score(combined), combined, [
            "Each task keeps its best epoch: " + ", ".join(
                f"{t} {'the start' if e == 0 else f'epoch {e}'}"
                for t, e in zip(self.tasks, epochs)) + "."]

    def task_epochs(self):
        """`{task: epoch of its kept weights}` (per-task selection), or None."""
        if not self.per_task:
            return None
        return dict(zip(self.tasks, (int(e) for e in self.task_epoch.numpy())))

    @contextlib.contextmanager
    def best_model(self):
        """A context in which the model holds the weights to keep as best:
        with per-task selection, each task's from its best epoch."""
        if not self.per_task:
            yield
            return
        current = {t: [v.numpy() for v in vs]
                   for t, vs in self.task_variables.items()}
        try:
            for task, variables in self.task_variables.items():
                for v, kept in zip(variables, self.best_weights[task]):
                    v.assign(kept)
            yield
        finally:
            for task, variables in self.task_variables.items():
                for v, value in zip(variables, current[task]):
                    v.assign(value)

    def _kept_metrics(self):
        """`{task: validation metrics of its kept epoch}`."""
        return {t: json.loads(m.decode()) for t, m in
                zip(self.tasks, self.task_metrics.numpy())}

    def _keep_task(self, i, task, metrics, epoch):
        self.task_epoch[i].assign(epoch)
        self.task_metrics[i].assign(json.dumps(metrics[task], default=_plain))
        for kept, v in zip(self.best_weights[task], self.task_variables[task]):
            kept.assign(v.numpy())

    def _below_start(self, metrics, task):
        start = float(self.start_accuracy[self.tasks.index(task)])
        return start >= 0 and _accuracy(metrics, task) < start

    def _below_text(self, metrics, tasks):
        starts = dict(zip(self.tasks, self.start_accuracy.numpy()))
        return ", ".join(f"{t} accuracy {_accuracy(metrics, t):.4f} < "
                         f"{starts[t]:.4f} at the start" for t in tasks)


def _accuracy(metrics, task):
    return float(metrics.get(task, {}).get("accuracy", 0.0))


def _plain(value):
    """numpy scalars and arrays as JSON values."""
    return value.tolist() if hasattr(value, "tolist") else str(value)
