"""Softmax cross-entropy, the paper's per-task loss (Alg. 1, l. 14)."""

from cmaclip_tf.losses.label_log_probability import label_log_probability
from cmaclip_tf.losses.label_log_probability import masked_sum


def masked_cross_entropy_sum(logits, labels):
    """Summed cross-entropy `-log p_y` over labelled examples, and their count.

    Args:
        logits: float `[B, C]`.
        labels: int `[B]`, -1 where the example has no label.

    Returns:
        `(loss_sum, count)`, both float32 scalars.

    Example:

    ```python
    masked_cross_entropy_sum([[0.0, 0.0], [5.0, 1.0]], [1, -1])
    # (log 2, 1.0): the second row has no label
    ```
    """
    log_p_label, labelled = label_log_probability(logits, labels)
    return masked_sum(-log_p_label, labelled)
