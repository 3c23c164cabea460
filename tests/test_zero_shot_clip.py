"""Zero-shot CLIP: logits are scaled cosine similarities to the prompts."""

import numpy as np

from cmaclip_tf.models.zero_shot_clip import ZeroShotCLIP
from cmaclip_tf.models.zero_shot_clip import class_prompts


def test_logits_are_scaled_cosine_similarities(tiny_clip):
    backbone = tiny_clip.backbone
    ids = np.zeros((3, 8), "int32")
    for row, tokens in enumerate([[5, 6], [7], [9, 10, 11]]):
        ids[row, : len(tokens) + 2] = [718, *tokens, 719]
    model = ZeroShotCLIP(backbone, {"color": ids})
    images = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    outputs = model({"images": images})

    image = np.array(backbone.get_vision_embeddings(images))
    text = np.array(backbone.get_text_embeddings(ids))
    image /= np.linalg.norm(image, axis=-1, keepdims=True)
    text /= np.linalg.norm(text, axis=-1, keepdims=True)
    scale = np.exp(float(backbone.clip_head.logit_scale))
    np.testing.assert_allclose(outputs["color_logits"], scale * image @ text.T, atol=1e-4)
    np.testing.assert_array_equal(outputs["color_image_weight"], [1.0, 1.0])
    assert not model.class_embeddings["color"].trainable


def test_class_prompts():
    assert class_prompts(["red", "a_line"]) == ["a photo of a red", "a photo of a a line"]
