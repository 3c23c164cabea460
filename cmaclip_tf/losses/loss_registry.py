"""Per-task losses by name, with their parameters as data.

A loss spec is a name (`"ce"`) or a dict with a `"name"` and the loss's
parameters (`{"name": "gce", "q": 0.7}`); `task_losses` also takes one spec
per task (`{"color": "ce", "style": {"name": "sce", "alpha": 0.1}}`). Every
loss is `fn(logits, labels) -> (loss_sum, count)` over labelled rows, so a
trainer divides by the (global) count as it does for cross-entropy.
"""

import functools
import inspect

from cmaclip_tf.losses.cross_entropy import masked_cross_entropy_sum
from cmaclip_tf.losses.generalized_cross_entropy import (
    masked_generalized_cross_entropy_sum,
)
from cmaclip_tf.losses.symmetric_cross_entropy import (
    masked_symmetric_cross_entropy_sum,
)

LOSSES = {
    "ce": masked_cross_entropy_sum,
    "gce": masked_generalized_cross_entropy_sum,
    "sce": masked_symmetric_cross_entropy_sum,
}


def get_loss(spec="ce"):
    """The masked loss `fn(logits, labels) -> (sum, count)` a spec names.

    Args:
        spec: a name in `LOSSES` or `{"name": ..., **parameters}`.

    Example:

    ```python
    loss = get_loss({"name": "gce", "q": 0.5})
    loss_sum, count = loss(logits, labels)
    ```
    """
    if isinstance(spec, str):
        spec = {"name": spec}
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in LOSSES:
        raise ValueError(
            f"Unknown loss {name!r}; the losses are {sorted(LOSSES)} "
            '(a spec is a name or {"name": ..., parameters}).'
        )
    fn = LOSSES[name]
    parameters = list(inspect.signature(fn).parameters)[2:]
    unknown = sorted(set(spec) - set(parameters))
    if unknown:
        raise ValueError(
            f"Loss {name!r} has no parameter(s) {unknown}; it takes "
            f"{parameters}."
        )
    if not spec:
        return fn
    # One tiny call checks the values (q, log_zero) now, not in the first
    # training step.
    fn([[0.0, 0.0]], [0], **spec)
    return functools.partial(fn, **spec)


def task_losses(spec, tasks, default=None, label_smoothing=0.0):
    """`{task: loss fn}` from one spec for all tasks or `{task: spec}`.

    With `{task: spec}`, tasks it leaves out get `default` (or, if `None`,
    are an error); a task that is not in `tasks` is an error.
    `label_smoothing` (a recipe's) goes to every task's `"ce"` that does not
    set its own; the robust losses take none, so smoothing with one of them
    is an error.

    Example:

    ```python
    task_losses({"name": "sce", "alpha": 0.1, "beta": 1.0}, ["color", "style"])
    task_losses({"color": "ce", "style": "gce"}, ["color", "style"])
    ```
    """
    spec = "ce" if spec is None else spec
    if isinstance(spec, str) or "name" in spec:
        return {task: get_loss(_smoothed(spec, label_smoothing)) for task in tasks}
    unknown = [task for task in spec if task not in tasks]
    if unknown:
        raise ValueError(
            f"Per-task loss specs name task(s) {unknown}; the tasks are {tasks}."
        )
    missing = [task for task in tasks if task not in spec]
    if missing and default is None:
        raise ValueError(f"The per-task loss specs have no task {missing}.")
    return {task: get_loss(_smoothed(spec.get(task, default), label_smoothing))
            for task in tasks}


def _smoothed(spec, label_smoothing):
    """`spec` with `label_smoothing` added where it is cross-entropy."""
    if not label_smoothing:
        return spec
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    if spec.get("name") != "ce":
        raise ValueError(
            f"label_smoothing {label_smoothing} applies to the ce loss only; "
            f"the loss is {spec.get('name')!r}. Set label_smoothing to 0 or "
            "use --loss ce."
        )
    spec.setdefault("label_smoothing", label_smoothing)
    return spec
