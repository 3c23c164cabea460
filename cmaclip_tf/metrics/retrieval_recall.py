"""Image-text retrieval recall@K, CLIP's validation metric.

Row `i` of the image embeddings and row `i` of the text embeddings are a
pair. Image-to-text recall@K is the share of images whose own text is among
the K texts most similar to them (cosine similarity); text-to-image recall@K
the same the other way. A candidate that ties with the true pair ranks ahead
of it (within `TIE_TOLERANCE`, as rounding can split equal cosines), so a
model whose embeddings are all equal scores 0, not 1.
"""

import numpy as np

TIE_TOLERANCE = 1e-9


def retrieval_recall(image_embeddings, text_embeddings, ks=(1, 5)):
    """Image-to-text and text-to-image recall@K of paired embeddings.

    Args:
        image_embeddings: float array `[N, dim]`; any scale (normalized here).
        text_embeddings: float array `[N, dim]`; row `i` pairs with image `i`.
        ks: the K values. Defaults to `(1, 5)`.

    Returns:
        `{"image_to_text_recall@K": float, "text_to_image_recall@K": float}`
        for each K, each in [0, 1]; 0.0 for every K when `N` is 0.

    Raises:
        ValueError: the arrays are not 2-D or do not hold the same number of
            rows.

    Example:
    >>> retrieval_recall([[1, 0], [0, 1]], [[1, 0.2], [0.2, 1]], ks=(1,))
    {'image_to_text_recall@1': 1.0, 'text_to_image_recall@1': 1.0}
    """
    images = _normalized(image_embeddings)
    texts = _normalized(text_embeddings)
    if len(images) != len(texts):
        raise ValueError(
            f"Got {len(images)} image and {len(texts)} text embeddings; "
            "retrieval recall needs one text per image (row i pairs with row i)."
        )
    similarity = images @ texts.T  # [image, text]
    true = np.diag(similarity) - TIE_TOLERANCE
    # Candidates scoring at least the true pair's (ties count), the pair aside.
    image_to_text_rank = (similarity >= true[:, None]).sum(axis=1) - 1
    text_to_image_rank = (similarity >= true[None, :]).sum(axis=0) - 1
    results = {}
    for k in ks:
        results[f"image_to_text_recall@{k}"] = _share_below(image_to_text_rank, k)
        results[f"text_to_image_recall@{k}"] = _share_below(text_to_image_rank, k)
    return results


def _normalized(embeddings):
    embeddings = np.asarray(embeddings, dtype="float64")
    if embeddings.ndim != 2:
        raise ValueError(
            f"Embeddings must be [N, dim]; got shape {embeddings.shape}."
        )
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.maximum(norms, 1e-12)


def _share_below(ranks, k):
    return float(np.mean(ranks < k)) if len(ranks) else 0.0
