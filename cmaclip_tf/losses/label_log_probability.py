"""What every per-task loss here starts from: log p(label), masked.

The three losses (cross-entropy, generalized and symmetric cross-entropy)
are each a function of the probability the model gives the label, so they
share this: log-softmax in float32 (whatever the logits' dtype, so bfloat16
and float16 training stay stable), the label's entry, and the mask of rows
that have a label (-1 = none).
"""

from keras import ops

MISSING_LABEL = -1


def label_log_probability(logits, labels):
    """`log p_y` per row (float32) and which rows are labelled.

    Args:
        logits: float `[B, C]` (any float dtype).
        labels: int `[B]`, -1 where the example has no label.

    Returns:
        `(log_p_label, labelled)`: float32 `[B]` each; `labelled` is 1.0 or
        0.0, and `log_p_label` of an unlabelled row is that of class 0.

    Example:

    ```python
    log_p, labelled = label_log_probability([[0.0, 0.0]], [-1])
    # log_p == [log 0.5], labelled == [0.0]
    ```
    """
    labels = ops.cast(labels, "int32")
    logits = ops.cast(logits, "float32")
    rows, label_rows = logits.shape[0], labels.shape[0]
    if None not in (rows, label_rows) and rows != label_rows:
        # take_along_axis would broadcast one row over all labels, silently.
        raise ValueError(
            f"{rows} rows of logits but {label_rows} labels; they must match."
        )
    labelled = ops.cast(labels != MISSING_LABEL, "float32")
    log_probs = ops.log_softmax(logits, axis=-1)
    safe_labels = ops.maximum(labels, 0)[:, None]
    return ops.take_along_axis(log_probs, safe_labels, axis=-1)[:, 0], labelled


def masked_sum(per_example, labelled):
    """`(sum of per_example over labelled rows, number of labelled rows)`."""
    per_example = ops.where(labelled > 0, per_example, 0.0)
    return ops.sum(per_example), ops.sum(labelled)
