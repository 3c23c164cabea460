"""A batch of random inputs and labels, for measuring speed (not accuracy)."""

import numpy as np

# The paper's retail attributes: 17 colors, 12 patterns, 21 styles.
RETAIL_TASKS = {"color": 17, "pattern": 12, "style": 21}


def random_batch(config, batch_size, tasks=RETAIL_TASKS, seed=0):
    """`(features, labels)` of the shapes a model config takes, as numpy.

    Features are raw model inputs: normal images, token ids, and padding
    masks of random lengths (at least 3 tokens); labels are one class id per
    task. NumPy only, so JAX-only machines can run it.

    Example:
    ```python
    model, _, config = create_cma_clip("tiny", RETAIL_TASKS)
    features, labels = random_batch(config, batch_size=8)
    ```
    """
    size, length = config["image_size"], config["sequence_length"]
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, length, (batch_size, 1))
    features = {
        "images": rng.normal(size=(batch_size, size, size, 3)).astype("float32"),
        "token_ids": rng.integers(1, 400, (batch_size, length)).astype("int32"),
        "padding_mask": np.arange(length)[None, :] < lengths,
    }
    labels = {t: rng.integers(0, c, batch_size).astype("int32") for t, c in tasks.items()}
    return features, labels
