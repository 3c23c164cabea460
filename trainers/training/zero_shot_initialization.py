"""A fresh CMA-CLIP model started where zero-shot CLIP stands.

Before its first step, a model built with `zero_shot_start` (the built-in
model configs) gets, per task whose class names are words: heads that are
zero-shot CLIP's classifier (CLIP's text embeddings of the class prompts
times its logit scale), and, for the full model and CLIP + linear heads, the
image weight λ that classifies a sample of the training split best
(`cmaclip_tf.models.zero_shot_start.choose_image_weight`), at the logit
scale that calibrates that start on the same sample (CLIP's own scale when
the sample has no labels). Tasks whose class
names are ids keep the random start, and the console says so.
"""

import numpy as np

from cmaclip_tf.models.zero_shot_clip import class_prompts
from cmaclip_tf.models.zero_shot_start import calibrated_logit_scale
from cmaclip_tf.models.zero_shot_start import choose_image_weight
from cmaclip_tf.models.zero_shot_start import class_names_are_words
from cmaclip_tf.models.zero_shot_start import class_prompt_embeddings
from cmaclip_tf.models.zero_shot_start import logit_scale

# Training examples that choose each task's starting λ.
SAMPLE_SIZE = 1024
# Variants whose start mixes the modalities by a chosen λ.
WEIGHTED_VARIANTS = ("full", "clip_linear")


def start_from_zero_shot(model, data, prompt, log, batch_size=64,
                         sample_size=SAMPLE_SIZE):
    """Starts `model`'s heads (and λ) from zero-shot CLIP; logs what it did.

    Args:
        model: a freshly built `CMACLIP` with `zero_shot_start=True`.
        data: the run's `RunData`, prepared for the model's CLIP.
        prompt: the class prompt template, e.g. "a photo of a {label}".
        log: callable taking one line.
        batch_size: examples per forward pass over the sample.
        sample_size: training examples that choose λ.

    Returns:
        `{task: {"zero_shot": bool, "image_weight": λ, "sample_accuracy":
        {...}}}`, what `metrics.json` records of the start.
    """
    backbone = model.clip_backbone
    word_tasks = {t: n for t, n in data.tasks.items() if class_names_are_words(n)}
    report = {}
    for task, names in data.tasks.items():
        if task not in word_tasks:
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            log(f"[start] {task}: class names look like ids ({shown}); its "
                "head starts at random, not from zero-shot CLIP.")
            report[task] = {"zero_shot": False}
    if not word_tasks:
        return report
    class_embeddings = {
        task: class_prompt_embeddings(
            backbone,
            data.text_preprocessor(class_prompts(names, prompt))["token_ids"])
        for task, names in word_tasks.items()
    }
    image, text, labels = _sample_embeddings(model, data, batch_size, sample_size)
    image_weights, scales = {}, {}
    for task, embeddings in class_embeddings.items():
        weight, accuracies = choose_image_weight(
            image, text, embeddings, labels[task])
        if model.variant not in WEIGHTED_VARIANTS:
            weight = 0.5  # The average is the ablation's architecture.
        image_weights[task] = weight
        scales[task] = calibrated_logit_scale(
            image, text, embeddings, labels[task], weight) or logit_scale(backbone)
        report[task] = {"zero_shot": True, "image_weight": weight,
                        "logit_scale": scales[task],
                        "sample_accuracy": {str(k): v for k, v in accuracies.items()}}
        if accuracies:
            log(f"[start] {task}: zero-shot start, λ {weight:.2f}, logit scale "
                f"{scales[task]:.0f} (accuracy on "
                f"{int(np.sum(labels[task] >= 0))} training examples: "
                f"image {accuracies[1.0]:.3f}, title {accuracies[0.0]:.3f}, "
                f"start {accuracies[weight]:.3f}).")
    model.start_from_zero_shot(class_embeddings, scales, image_weights)
    return report


def _sample_embeddings(model, data, batch_size, sample_size):
    """CLIP's pooled image and text embeddings and the labels of a sample of
    the training split (what a fusion that starts as the identity passes)."""
    images, texts, labels = [], [], {task: [] for task in data.tasks}
    for features, batch_labels in data.sample_batches("train", sample_size,
                                                      batch_size):
        clip_features = model.encode(features["images"], features["token_ids"],
                                     features["padding_mask"])
        image, text = model.pooled_embeddings(clip_features)
        images.append(np.asarray(image, "float32"))
        texts.append(np.asarray(text, "float32"))
        for task in labels:
            labels[task].append(batch_labels[task].numpy())
    return (np.concatenate(images), np.concatenate(texts),
            {task: np.concatenate(v) for task, v in labels.items()})
