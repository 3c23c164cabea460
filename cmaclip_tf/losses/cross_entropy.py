"""Softmax cross-entropy, the paper's per-task loss (Alg. 1, l. 14), with
optional label smoothing (Szegedy et al. 2016)."""

from keras import ops

from cmaclip_tf.losses.label_log_probability import label_log_probability
from cmaclip_tf.losses.label_log_probability import masked_sum


def masked_cross_entropy_sum(logits, labels, label_smoothing=0.0):
    """Summed cross-entropy over labelled examples, and their count.

    Without smoothing, `-log p_y`; with smoothing ε, the cross-entropy to
    the target `(1 - ε) onehot(y) + ε / C` (Keras's convention):
    `-(1 - ε) log p_y - (ε / C) Σ_c log p_c`.

    Args:
        logits: float `[B, C]`.
        labels: int `[B]`, -1 where the example has no label (its row adds
            nothing, smoothed or not).
        label_smoothing: float in [0, 1). Defaults to 0.

    Returns:
        `(loss_sum, count)`, both float32 scalars.

    Example:

    ```python
    masked_cross_entropy_sum([[0.0, 0.0], [5.0, 1.0]], [1, -1])
    # (log 2, 1.0): the second row has no label
    ```
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(
            f"label_smoothing must be in [0, 1); got {label_smoothing}."
        )
    log_p_label, labelled = label_log_probability(logits, labels)
    per_example = -log_p_label
    if label_smoothing:
        log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
        per_example = ((1.0 - label_smoothing) * per_example
                       - label_smoothing * ops.mean(log_probs, axis=-1))
    return masked_sum(per_example, labelled)
