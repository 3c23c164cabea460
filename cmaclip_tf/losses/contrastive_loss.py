"""CLIP's contrastive loss: symmetric InfoNCE, on one device or the global batch.

Image `i` and text `i` of a batch are a pair; every other text of the batch is
a negative for image `i`, and every other image for text `i`. The logits are
`exp(logit_scale) * normalize(images) @ normalize(texts)^T` with CLIP's
learnable, log-parameterized temperature (initialized to `log(1 / 0.07)`),
clipped so that it never scales the logits by more than 100 (Radford et al.
2021, section 2.5); the loss is the mean of the image-to-text and
text-to-image cross-entropies.

Under `tf.distribute`, `global_batch_contrastive_loss` all-gathers every
replica's embeddings, so each image is contrasted with every text of the
global batch, as open_clip's `gather_features` with `local_loss=False,
gather_with_grad=False`: the gathered copy carries no gradient and the
replica's own rows are put back with theirs. Each replica returns its share
of the global loss, so that the replicas' losses and gradients summed (what
`strategy.reduce(SUM, ...)` and the Keras optimizer's all-reduce do) are the
loss and the gradients of `contrastive_loss` on the whole global batch on
one device.
"""

import math

import tensorflow as tf
from keras import ops

INITIAL_LOGIT_SCALE = math.log(1 / 0.07)
MAX_LOGIT_SCALE = math.log(100.0)


def contrastive_loss(image_embeddings, text_embeddings, logit_scale):
    """CLIP's symmetric InfoNCE loss over one batch of image-text pairs.

    Args:
        image_embeddings: float `[batch, dim]`, unnormalized (CLIP's
            projected image embeddings); row `i` pairs with text row `i`.
        text_embeddings: float `[batch, dim]`, unnormalized.
        logit_scale: float scalar (a tensor or a variable), the log of the
            logits' scale. Values above `log(100)` count as `log(100)` (and
            then carry no gradient): CLIP's clip on the temperature.

    Returns:
        float32 scalar: `(CE(image -> text) + CE(text -> image)) / 2`, each
        cross-entropy a mean over the batch; 0 for an empty batch.

    Example:

    ```python
    loss = contrastive_loss(
        backbone.get_vision_embeddings(images),
        backbone.get_text_embeddings(token_ids),
        backbone.clip_head.logit_scale,
    )
    ```
    """
    image = ops.normalize(ops.cast(image_embeddings, "float32"), axis=-1)
    text = ops.normalize(ops.cast(text_embeddings, "float32"), axis=-1)
    scale = ops.exp(ops.minimum(ops.cast(logit_scale, "float32"), MAX_LOGIT_SCALE))
    logits_per_image = scale * ops.matmul(image, ops.transpose(text))
    batch = ops.shape(logits_per_image)[0]
    # The pair of row i is column i: the diagonal.
    matching = ops.diagonal(logits_per_image)
    image_to_text = ops.logsumexp(logits_per_image, axis=1) - matching
    text_to_image = ops.logsumexp(logits_per_image, axis=0) - matching
    total = ops.sum(image_to_text) + ops.sum(text_to_image)
    return total / (2.0 * ops.maximum(ops.cast(batch, "float32"), 1.0))


def global_batch_contrastive_loss(image_embeddings, text_embeddings, logit_scale):
    """This replica's share of the contrastive loss over the global batch.

    Call it inside `strategy.run`. The global batch is every replica's rows
    in replica order (as `strategy.gather` orders them); replicas may hold
    different numbers of rows, even none. Summed over replicas, the returned
    losses are `contrastive_loss` of the global batch, and so are the
    gradients w.r.t. the weights that produced the embeddings and w.r.t.
    `logit_scale`. Under one replica (or the default strategy) it is
    `contrastive_loss`.

    Args:
        image_embeddings: float `[local_batch, dim]`, this replica's rows.
        text_embeddings: float `[local_batch, dim]`.
        logit_scale: float scalar, as in `contrastive_loss`.

    Returns:
        float32 scalar: `contrastive_loss(global batch) / num_replicas`.

    Raises:
        ValueError: called in a cross-replica context (outside
            `strategy.run` but inside `strategy.scope()`).

    Example:

    ```python
    def replica_step(images, token_ids):
        with tf.GradientTape() as tape:
            loss = global_batch_contrastive_loss(
                backbone.get_vision_embeddings(images),
                backbone.get_text_embeddings(token_ids),
                backbone.clip_head.logit_scale,
            )
        variables = backbone.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    per_replica = strategy.run(replica_step, args=(images, token_ids))
    loss = strategy.reduce("SUM", per_replica, axis=None)  # Global batch's.
    ```
    """
    context = tf.distribute.get_replica_context()
    if context is None:
        raise ValueError(
            "global_batch_contrastive_loss runs in a replica context: call it "
            "inside strategy.run(...), or use contrastive_loss on one device."
        )
    num_replicas = context.num_replicas_in_sync
    if num_replicas == 1:
        return contrastive_loss(image_embeddings, text_embeddings, logit_scale)
    # Every replica computes the same global loss but differentiates it only
    # through its own rows. Divided by the replica count so that the losses
    # sum to the global loss (and the shared logit_scale's gradients to its
    # gradient), those rows' gradients must be multiplied back by it.
    image = _gather_with_local_gradient(
        _scale_gradient(ops.cast(image_embeddings, "float32"), num_replicas),
        context,
    )
    text = _gather_with_local_gradient(
        _scale_gradient(ops.cast(text_embeddings, "float32"), num_replicas),
        context,
    )
    return contrastive_loss(image, text, logit_scale) / num_replicas


def clamp_logit_scale(logit_scale):
    """Clips a logit-scale variable into `[0, log(100)]`, as open_clip does.

    The loss already caps the scale at 100, but a variable past the cap gets
    no gradient and stays there; clamping it after each optimizer step keeps
    it where gradients reach it. Call it on one device or in the
    cross-replica context (after `strategy.run`), where an assignment
    updates every replica's copy.

    Args:
        logit_scale: a scalar `keras.Variable` or `tf.Variable`, e.g.
            `backbone.clip_head.logit_scale`.

    Example:

    ```python
    strategy.run(replica_step, args=(images, token_ids))
    clamp_logit_scale(backbone.clip_head.logit_scale)
    ```
    """
    logit_scale.assign(ops.clip(logit_scale, 0.0, MAX_LOGIT_SCALE))


def _scale_gradient(x, factor):
    """`x` in the forward pass; its gradient multiplied by `factor`."""
    # x - stop_gradient(x) is exactly 0, so the value is x to the bit.
    return x + (factor - 1) * (x - tf.stop_gradient(x))


def _gather_with_local_gradient(local, context):
    """All replicas' rows, concatenated; only this replica's carry gradient."""
    gathered = tf.stop_gradient(context.all_gather(local, axis=0))
    sizes = context.all_gather(tf.shape(local)[:1], axis=0)
    replica = context.replica_id_in_sync_group
    start = tf.reduce_sum(sizes[:replica])
    end = start + sizes[replica]
    return tf.concat([gathered[:start], local, gathered[end:]], axis=0)
