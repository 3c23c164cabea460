"""Symmetric cross-entropy (Wang et al., ICCV 2019), robust to noisy labels:
`alpha * CE + beta * RCE`.

The reverse cross-entropy swaps the roles of prediction `p` and one-hot
label `y`: `RCE = -sum_k p_k log y_k`, with `log 0` clamped to `A` (the
paper's `A = -4`). With a one-hot label that is `-A * (1 - p_y)`, a bounded,
noise-tolerant term; the CE term keeps learning fast on clean samples.
Defaults are the paper's CIFAR-10 setting, `alpha = 0.1, beta = 1.0`.
"""

from keras import ops

from cmaclip_tf.losses.label_log_probability import label_log_probability
from cmaclip_tf.losses.label_log_probability import masked_sum


def masked_symmetric_cross_entropy_sum(
    logits, labels, alpha=0.1, beta=1.0, log_zero=-4.0
):
    """Summed `alpha * CE + beta * RCE` over labelled examples, and the count.

    Args:
        logits: float `[B, C]`.
        labels: int `[B]`, -1 where the example has no label.
        alpha: float, weight of cross-entropy (default 0.1).
        beta: float, weight of reverse cross-entropy (default 1.0).
        log_zero: float < 0, the value `log 0` is clamped to in RCE (the
            paper's `A`, default -4).

    Returns:
        `(loss_sum, count)`, both float32 scalars.

    Example:

    ```python
    masked_symmetric_cross_entropy_sum([[0.0, 0.0]], [0])
    # 0.1 * log 2 + 1.0 * 4 * (1 - 0.5) = 2.0693
    ```
    """
    if log_zero >= 0:
        raise ValueError(
            f"log_zero stands for log 0, so it must be < 0; got {log_zero}."
        )
    log_p_label, labelled = label_log_probability(logits, labels)
    cross_entropy = -log_p_label
    # -sum_k p_k log y_k: only the k != y terms are nonzero, each p_k * A.
    reverse_cross_entropy = -log_zero * (1.0 - ops.exp(log_p_label))
    return masked_sum(
        alpha * cross_entropy + beta * reverse_cross_entropy, labelled
    )
