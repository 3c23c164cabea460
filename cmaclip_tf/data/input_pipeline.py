"""Raw splits to model batches: shuffle, decode and resize, batch, tokenize.

One preprocessing for training, evaluation and export: images go through
`ImagePreprocessor` and text through `TextPreprocessor`, the same modules the
exported model embeds.
"""

import tensorflow as tf

# Keeps (seed, epoch) pairs apart for any epoch count a run could reach.
_EPOCH_STRIDE = 1_000_003


def shuffle_seed(seed, epoch):
    """The shuffle seed of an epoch: a resumed run reshuffles identically."""
    return int(seed) * _EPOCH_STRIDE + int(epoch)


def make_batches(
    raw_split,
    text_preprocessor,
    image_preprocessor,
    batch_size,
    training,
    seed=0,
    epoch=0,
    shuffle_buffer_size=10_000,
    drop_remainder=None,
    num_parallel_calls=tf.data.AUTOTUNE,
    include_ids=False,
):
    """Batches a raw split for the model.

    Args:
        raw_split: `tf.data.Dataset` of raw examples (a `MultiTaskDataset`
            split).
        text_preprocessor: `TextPreprocessor`.
        image_preprocessor: `ImagePreprocessor`.
        batch_size: int, the global batch size (a distribution strategy
            splits it across replicas).
        training: bool. Training shuffles (seeded by `seed` and `epoch`) and,
            unless `drop_remainder` says otherwise, drops the last partial
            batch; evaluation keeps the order and every example.
        seed: int.
        epoch: int. Each epoch has its own order, the same on every run, so
            build the dataset for epoch `e` to resume at epoch `e`.
        shuffle_buffer_size: int. Splits up to this size are fully shuffled.
        drop_remainder: bool or `None` (= `training`).
        num_parallel_calls: parallelism of image decoding.
        include_ids: add the examples' `"id"` (string `[B]`) to the features.

    Returns:
        `tf.data.Dataset` of `(features, labels)`: features `{"images":
        float32 [B, size, size, 3], "token_ids": int32 [B, L],
        "padding_mask": bool [B, L]}`, labels `{task: int32 [B]}` with -1
        where an example has no label for the task.
    """
    dataset = raw_split
    if training:
        dataset = dataset.shuffle(
            shuffle_buffer_size,
            seed=shuffle_seed(seed, epoch),
            reshuffle_each_iteration=False,
        )
    image_spec = raw_split.element_spec["image"]
    if image_spec.dtype == tf.string:
        preprocess_image = image_preprocessor.preprocess_bytes
    else:
        preprocess_image = image_preprocessor.preprocess_pixels

    def per_example(example):
        return {
            "images": preprocess_image(example["image"]),
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

    dataset = dataset.map(
        per_example, num_parallel_calls=num_parallel_calls, deterministic=True
    )
    dataset = dataset.batch(
        batch_size,
        drop_remainder=training if drop_remainder is None else drop_remainder,
    )
    dataset = dataset.map(
        per_batch, num_parallel_calls=num_parallel_calls, deterministic=True
    )
    return dataset.prefetch(tf.data.AUTOTUNE)
