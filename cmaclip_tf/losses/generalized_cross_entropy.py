"""Generalized cross-entropy (Zhang & Sabuncu, NeurIPS 2018), robust to
noisy labels: `L_q = (1 - p_y^q) / q`.

`q -> 0` gives cross-entropy, `q = 1` the mean absolute error `1 - p_y`
(noise-robust but slow to train); in between, the gradient of a sample is
its cross-entropy gradient weighted by `p_y^q`, so confidently contradicted
(likely mislabelled) samples count less. The paper uses `q = 0.7`.
"""

from keras import ops

from cmaclip_tf.losses.label_log_probability import label_log_probability
from cmaclip_tf.losses.label_log_probability import masked_sum


def masked_generalized_cross_entropy_sum(logits, labels, q=0.7):
    """Summed `(1 - p_y^q) / q` over labelled examples, and their count.

    Args:
        logits: float `[B, C]`.
        labels: int `[B]`, -1 where the example has no label.
        q: float in `(0, 1]` (default 0.7).

    Returns:
        `(loss_sum, count)`, both float32 scalars.

    Example:

    ```python
    masked_generalized_cross_entropy_sum([[0.0, 0.0]], [0], q=1.0)
    # (0.5, 1.0): 1 - p_y with p_y = 0.5
    ```
    """
    if not 0 < q <= 1:
        raise ValueError(
            f"Generalized cross-entropy needs 0 < q <= 1, got {q}."
        )
    log_p_label, labelled = label_log_probability(logits, labels)
    # p_y^q as exp(q log p_y): no underflowed p_y is raised to a power.
    return masked_sum((1.0 - ops.exp(q * log_p_label)) / q, labelled)
