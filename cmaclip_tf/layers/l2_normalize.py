"""Unit vectors over the last axis: how CLIP compares embeddings."""

from keras import ops


def l2_normalize(x):
    """`x / |x|` over the last axis, computed in float32 (under mixed
    precision too) and returned in `x`'s dtype.

    Example:
    ```python
    l2_normalize(np.array([[3.0, 4.0]], "float32"))  # [[0.6, 0.8]]
    ```
    """
    x32 = ops.cast(x, "float32")
    norm = ops.sqrt(ops.sum(ops.square(x32), -1, keepdims=True))
    return ops.cast(x32 / (norm + 1e-12), x.dtype)
