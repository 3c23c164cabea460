"""What a CMA-CLIP model needs to start where zero-shot CLIP stands.

Zero-shot CLIP classifies by `s·cos(embedding, prompt_k)` over class prompts
("a photo of a {label}"). A `CMACLIP` built with `zero_shot_start=True` can
start as exactly that (`CMACLIP.start_from_zero_shot`); this module gives it
the three things it needs: whether a task's class names are words (prompts of
ids such as `sku123` mean nothing), the prompts' normalized embeddings, and
the image weight λ to start each task's modality attention at, chosen on a
sample of the training split among a few fixed values, and the logit scale
that makes that start's probabilities honest on the same sample (temperature
scaling, Guo et al. 2017: CLIP's own scale of 100 makes a weak zero-shot
task as confident as a strong one; its argmax, and so the accuracy, is the
same at any scale).

Example:
```python
names = {"color": ["red", "green"], "sku": ["sku1", "sku2"]}
word_tasks = [t for t, n in names.items() if class_names_are_words(n)]  # color
embeddings = class_prompt_embeddings(clip.backbone, prompt_token_ids)
weight, accuracies = choose_image_weight(image, text, embeddings, labels)
```
"""

import re

import numpy as np
from keras import ops

# λ values a task may start at: image only (almost) to title only (almost).
# The modality attention's bias sets λ = sigmoid(b), so 0 and 1 are out.
IMAGE_WEIGHTS = (0.5, 0.73, 0.88, 0.98, 0.995, 0.27, 0.12, 0.02, 0.005)
# Logit scales a task's start may take (CLIP's own is at most 100).
LOGIT_SCALES = tuple(float(2 ** (k / 2)) for k in range(15))  # 1 ... 128
# A task's names are words when this share of them is.
WORD_SHARE = 0.8


def looks_like_word(name):
    """True for a class name a prompt can use: it has letters and no digits
    (`"navy blue"`, `"t-shirt"`; not `"sku123"`, `"cat_17"`, `"42"`)."""
    name = str(name)
    return bool(re.search(r"[^\W\d_]", name)) and not re.search(r"\d", name)


def class_names_are_words(names):
    """Whether a task's class names are words (at least `WORD_SHARE` of them)."""
    names = list(names)
    if not names:
        return False
    return sum(looks_like_word(n) for n in names) >= WORD_SHARE * len(names)


def class_prompt_embeddings(clip_backbone, prompt_token_ids):
    """CLIP's L2-normalized text embeddings of packed prompts `[K, L]`, numpy."""
    embeddings = ops.convert_to_numpy(
        clip_backbone.get_text_embeddings(ops.convert_to_tensor(prompt_token_ids))
    ).astype("float32")
    return _normalize(embeddings)


def logit_scale(clip_backbone):
    """CLIP's learned temperature `exp(logit_scale)` as a float."""
    return float(np.exp(ops.convert_to_numpy(clip_backbone.clip_head.logit_scale)))


def choose_image_weight(image_embeddings, text_embeddings, class_embeddings,
                        labels, candidates=IMAGE_WEIGHTS):
    """The start λ with the best zero-shot accuracy on labelled examples.

    Scores each candidate λ by the accuracy of `λ·cos(I, E) + (1-λ)·cos(T, E)`;
    ties go to the earlier candidate (0.5 first: the paper's start).

    Args:
        image_embeddings, text_embeddings: `[N, D]` CLIP embeddings (any norm).
        class_embeddings: `[K, D]` class-prompt embeddings.
        labels: int `[N]`, -1 where unlabelled.
        candidates: λ values to try.

    Returns:
        `(λ, {λ: accuracy})`, plus the image-only and title-only accuracies
        under the keys 1.0 and 0.0; `(0.5, {})` without labelled examples.
    """
    labels = np.asarray(labels)
    keep = labels >= 0
    if not keep.any():
        return 0.5, {}
    classes = _normalize(np.asarray(class_embeddings, "float32"))
    image = _normalize(np.asarray(image_embeddings, "float32")[keep]) @ classes.T
    text = _normalize(np.asarray(text_embeddings, "float32")[keep]) @ classes.T
    labels = labels[keep]
    accuracies = {}
    for weight in (*candidates, 1.0, 0.0):
        predicted = np.argmax(weight * image + (1 - weight) * text, axis=-1)
        accuracies[weight] = float(np.mean(predicted == labels))
    best = max(candidates, key=lambda w: accuracies[w])  # First of the ties.
    return best, accuracies


def calibrated_logit_scale(image_embeddings, text_embeddings, class_embeddings,
                           labels, image_weight, scales=LOGIT_SCALES):
    """The scale `s` whose logits `s·(λ·cos(I, E) + (1-λ)·cos(T, E))` have
    the least cross-entropy on the labelled examples (None without any)."""
    labels = np.asarray(labels)
    keep = labels >= 0
    if not keep.any():
        return None
    classes = _normalize(np.asarray(class_embeddings, "float32"))
    similarity = (
        image_weight * _normalize(np.asarray(image_embeddings, "float32")[keep])
        + (1 - image_weight) * _normalize(np.asarray(text_embeddings, "float32")[keep])
    ) @ classes.T
    labels = labels[keep]

    def cross_entropy(scale):
        logits = scale * similarity
        logits = logits - logits.max(-1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        return -float(np.mean(log_probs[np.arange(len(labels)), labels]))

    return min(scales, key=cross_entropy)


def _normalize(x):
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)
