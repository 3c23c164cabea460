"""Image-text retrieval recall@K on hand-ranked cases."""

import numpy as np
import pytest

from cmaclip_tf.metrics import retrieval_recall

# Image i is the unit vector e_i, so its similarity to text j is
# TEXTS[j][i] / |TEXTS[j]|; every text is a permutation of (3, 2, 1), so all
# norms are equal and the ranks can be read off the numbers.
TEXTS = np.array([[3.0, 2.0, 1.0], [3.0, 1.0, 2.0], [1.0, 3.0, 2.0]])
IMAGES = np.eye(3)


def test_hand_ranked_case_with_ties():
    recall = retrieval_recall(IMAGES, TEXTS, ks=(1, 2, 3))
    # Image 0 sees column 0 = (3, 3, 1): its text ties with text 1 -> rank 1.
    # Image 1 sees (2, 1, 3): its text is last -> rank 2.
    # Image 2 sees (1, 2, 2): ties with text 1 -> rank 1.
    assert recall["image_to_text_recall@1"] == 0.0
    assert recall["image_to_text_recall@2"] == pytest.approx(2 / 3)
    assert recall["image_to_text_recall@3"] == 1.0
    # Text j ranks images by its own entries: text 0's 3 is first (rank 0),
    # text 1's 1 is last (rank 2), text 2's 2 is second (rank 1).
    assert recall["text_to_image_recall@1"] == pytest.approx(1 / 3)
    assert recall["text_to_image_recall@2"] == pytest.approx(2 / 3)
    assert recall["text_to_image_recall@3"] == 1.0


def test_cosine_not_dot_product():
    # Text 1 scaled by 10 would win every image by dot product.
    scaled = TEXTS * np.array([[1.0], [10.0], [0.1]])
    images = IMAGES * np.array([[5.0], [0.2], [1.0]])
    assert retrieval_recall(images, scaled, ks=(1, 2, 3)) == retrieval_recall(
        IMAGES, TEXTS, ks=(1, 2, 3)
    )


def test_default_ks_and_identical_embeddings_score_zero():
    perfect = retrieval_recall(np.eye(6), np.eye(6) + 0.1)
    assert perfect == {
        "image_to_text_recall@1": 1.0, "text_to_image_recall@1": 1.0,
        "image_to_text_recall@5": 1.0, "text_to_image_recall@5": 1.0,
    }
    # All equal: every candidate ties with the pair; 5 others rank ahead.
    collapsed = retrieval_recall(np.ones((6, 4)), np.ones((6, 4)))
    assert set(collapsed.values()) == {0.0}


def test_mismatched_rows_and_empty():
    with pytest.raises(ValueError, match="one text per image"):
        retrieval_recall(np.eye(3), np.eye(2))
    assert retrieval_recall(np.zeros((0, 4)), np.zeros((0, 4)), ks=(1,)) == {
        "image_to_text_recall@1": 0.0, "text_to_image_recall@1": 0.0,
    }
