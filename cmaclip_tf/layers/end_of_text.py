"""The end-of-text token of each row: where CLIP pools a text sequence."""

from keras import ops


def end_of_text_embedding(text_sequence, padding_mask):
    """Each row's vector at its end-of-text token, the last true mask position.

    CLIP packs a text as start, tokens, end-of-text, then padding, and pools
    the sequence at the end-of-text token; T' is read at the same position
    of the fused sequence (section 3.2.1).

    Args:
        text_sequence: float `[batch, length, width]`, the text positions only.
        padding_mask: bool or int `[batch, length]`, true on real tokens.
            A row with no true position reads position 0.

    Returns:
        `[batch, width]`.

    Example:
    ```python
    sequence = np.arange(12, dtype="float32").reshape(2, 3, 2)
    mask = np.array([[1, 1, 0], [1, 1, 1]], bool)
    end_of_text_embedding(sequence, mask)  # [[2, 3], [10, 11]]
    ```
    """
    end_index = ops.sum(ops.cast(padding_mask, "int32"), axis=1) - 1
    end_index = ops.maximum(end_index, 0)
    return ops.take_along_axis(text_sequence, end_index[:, None, None], axis=1)[:, 0, :]
