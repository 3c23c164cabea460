"""This machine's matrix-multiply peak under TensorFlow, the yardstick of the
benchmarks' "share of the matmul peak"."""

import time


def matmul_peak_flops(dtype="float32", size=2048, repeats=10, trials=3):
    """FLOP/s of the best of `trials` runs of `repeats` square matmuls.

    Args:
        dtype: `float32` or `bfloat16`.
        size: the matrices' side; 2048 keeps every core busy on a CPU.

    Example:
    ```python
    peak = matmul_peak_flops()
    share = flops_per_example * examples_per_second / peak
    ```
    """
    import tensorflow as tf

    a = tf.cast(tf.random.normal((size, size)), dtype)
    b = tf.cast(tf.random.normal((size, size)), dtype)
    matmul = tf.function(lambda: tf.matmul(a, b))
    matmul().numpy()
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            result = matmul()
        result.numpy()
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * size**3 / best
