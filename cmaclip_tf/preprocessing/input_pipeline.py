"""Raw splits to model batches: decode and resize, batch, tokenize.

One preprocessing for training, evaluation and export: images go through
`ImagePreprocessor` and text through `TextPreprocessor`, the same modules the
exported model embeds. The order of the examples is the raw split's: a
training epoch's order is a full permutation of the split's record index
(`epoch_permutation`, applied by `MultiTaskDataset.epoch_split` before any
record is read), not a window of a shuffle buffer, so a source sorted by
class still gives batches drawn from the whole split.
"""

import numpy as np
import tensorflow as tf


def epoch_permutation(num_examples, seed, epoch):
    """The order of epoch `epoch`: a permutation of `range(num_examples)`.

    Seeded by `(seed, epoch)` only, so a resumed run replays an epoch in the
    same order, and a feature cache of the same records in the same order.
    """
    rng = np.random.default_rng([int(seed), int(epoch)])
    return rng.permutation(int(num_examples)).astype(np.int64)


def epoch_seed(seed, epoch):
    """One int seed of epoch `epoch`, for ops that take a single seed."""
    rng = np.random.default_rng([int(seed), int(epoch)])
    return int(rng.integers(2**31 - 1))


def make_batches(
    raw_split,
    text_preprocessor,
    image_preprocessor,
    batch_size,
    training,
    drop_remainder=None,
    num_parallel_calls=tf.data.AUTOTUNE,
    include_ids=False,
    augment=None,
    first_position=0,
):
    """Batches a raw split for the model, in the split's order.

    Args:
        raw_split: `tf.data.Dataset` of raw examples, e.g.
            `MultiTaskDataset.split(name)` (file order) or
            `MultiTaskDataset.epoch_split(name, seed, epoch)` (an epoch's
            permutation).
        text_preprocessor: `TextPreprocessor`.
        image_preprocessor: `ImagePreprocessor`.
        batch_size: int, the global batch size (a distribution strategy
            splits it across replicas).
        training: bool. Training drops the last partial batch unless
            `drop_remainder` says otherwise; evaluation keeps every example.
        drop_remainder: bool or `None` (= `training`).
        num_parallel_calls: parallelism of image decoding.
        include_ids: add the examples' `"id"` (string `[B]`) to the features.
        augment: optional `fn(pixels, position) -> pixels` (training only,
            e.g. `ImageAugmentation.for_epoch(epoch)`): applied to each
            image's square crop in [0, 255], before CLIP's normalization;
            `position` is the example's index in `raw_split` plus
            `first_position` (so a resumed epoch draws as the whole one).
        first_position: int. The position of `raw_split`'s first example.

    Returns:
        `tf.data.Dataset` of `(features, labels)`: features `{"images":
        float32 [B, size, size, 3], "token_ids": int32 [B, L],
        "padding_mask": bool [B, L]}`, labels `{task: int32 [B]}` with -1
        where an example has no label for the task.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    image_spec = raw_split.element_spec["image"]
    if image_spec.dtype == tf.string:
        decode = image_preprocessor.decode
    else:
        decode = tf.convert_to_tensor

    def per_example(example, position=None):
        pixels = image_preprocessor.crop_pixels(decode(example["image"]))
        if augment is not None:
            pixels = augment(pixels, position)
        return {
            "images": image_preprocessor.normalize(pixels),
            "text": example["text"],
            "labels": example["labels"],
            "id": example["id"],
        }

    def per_batch(batch):
        tokens = text_preprocessor(batch["text"])
        features = {
            "images": batch["images"],
            "token_ids": tokens["token_ids"],
            "padding_mask": tokens["padding_mask"],
        }
        if include_ids:
            features["id"] = batch["id"]
        return features, batch["labels"]

    if augment is not None:
        raw_split = raw_split.enumerate(start=first_position)
    dataset = raw_split.map(
        (lambda position, example: per_example(example, position))
        if augment is not None else per_example,
        num_parallel_calls=num_parallel_calls, deterministic=True,
    )
    dataset = dataset.batch(
        batch_size,
        drop_remainder=training if drop_remainder is None else drop_remainder,
    )
    dataset = dataset.map(
        per_batch, num_parallel_calls=num_parallel_calls, deterministic=True
    )
    return dataset.prefetch(tf.data.AUTOTUNE)
