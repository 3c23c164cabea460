"""CLIP's contrastive training steps on tf.distribute (`strategy.run`).

Each step embeds a global batch of image-text pairs with CLIP's pooled,
projected embeddings (`get_vision_embeddings`, `get_text_embeddings`, what
zero-shot classification uses), takes the symmetric InfoNCE of the global
batch (`global_batch_contrastive_loss`: every image against every text of
every replica, gradients through the local shard), applies AdamW (gradients
summed across replicas by the Keras optimizer), then clamps the learnable
logit scale into `[0, log 100]` as CLIP and open_clip do.
"""

import keras
import numpy as np
import tensorflow as tf

from cmaclip_tf.losses import clamp_logit_scale
from cmaclip_tf.losses import global_batch_contrastive_loss
from cmaclip_tf.metrics import retrieval_recall
from trainers.training.fused_adamw import FusedAdamW
from trainers.training.learning_rate_schedule import WarmupSchedule
from trainers.training.replica_seeds import distinct_replica_seeds
from trainers.training.replica_seeds import seed_states
from trainers.training.stage_trainer import check_contrastive_options

SUM = tf.distribute.ReduceOp.SUM
RECALL_KS = (1, 5)


class ContrastiveTrainer:
    """Trains every weight of a CLIP backbone contrastively.

    As CLIP: AdamW, the learning rate warmed up linearly then decayed on a
    cosine to 0, weight decay sparing what open_clip spares (biases,
    LayerNorm gains, the logit scale: every weight with fewer than two
    axes). Under a `mixed_float16` backbone the loss is scaled (Keras's
    `LossScaleOptimizer`; a step whose gradients overflow is skipped).

    Args:
        backbone: `keras_hub.models.CLIPBackbone`, built under
            `strategy.scope()`.
        strategy: `tf.distribute.Strategy`.
        learning_rate: float. The peak learning rate.
        weight_decay: a number (AdamW's decoupled decay) or `{"kind": "l2" |
            "decoupled", "rate": number}` (`trainers.training.fused_adamw.FusedAdamW`).
        total_steps: int. Steps of the whole run, the schedule's length;
            `None` keeps `learning_rate` constant.
        warmup_steps: int. Steps of the linear warmup
            (`trainers.training.learning_rate_schedule.WarmupSchedule`).
        jit_compile: bool. XLA-compile the forward and backward pass (one
            replica only).

    Example:
    ```python
    trainer = ContrastiveTrainer(clip.backbone, strategy, 1e-3, 0.1)
    loss = trainer.train_steps(strategy.experimental_distribute_dataset(
        batches), num_steps=100)
    trainer.evaluate(strategy.experimental_distribute_dataset(validation))
    ```
    """

    def __init__(self, backbone, strategy, learning_rate, weight_decay,
                 total_steps=None, warmup_steps=0, jit_compile=False):
        self.backbone = backbone
        self.strategy = strategy
        self.logit_scale = backbone.clip_head.logit_scale
        self.variables = list(backbone.trainable_variables)
        self._seed_states = seed_states(backbone)
        schedule = learning_rate
        if total_steps:
            schedule = WarmupSchedule(int(total_steps), int(warmup_steps))(
                learning_rate)
        # float16 gradients underflow without a loss scale (bfloat16's range
        # is float32's).
        self.loss_scaling = (
            backbone.vision_encoder.dtype_policy.compute_dtype == "float16"
        )
        with strategy.scope():
            self.optimizer = FusedAdamW(
                learning_rate=schedule, weight_decay=weight_decay,
                name="clip_optimizer",
            )
            if self.loss_scaling:
                self.optimizer = keras.optimizers.LossScaleOptimizer(
                    self.optimizer, name="clip_optimizer_loss_scale")
            self.optimizer.build(self.variables)
        self._gradients = self._loss_and_gradients
        check_contrastive_options(True, jit_compile, 1,
                                  strategy.num_replicas_in_sync)
        if jit_compile:
            self._gradients = tf.function(self._loss_and_gradients,
                                          jit_compile=True, autograph=False)
        # No AutoGraph: nothing here branches on tensors.
        self._train_step = tf.function(self._distributed_train_step,
                                       autograph=False)
        # The last batch is smaller: one more trace, not one per shape.
        self._embed_step = tf.function(self._distributed_embed_step,
                                       reduce_retracing=True, autograph=False)

    def embeddings(self, features):
        """CLIP's pooled, projected `(image, text)` embeddings of a batch."""
        return (
            self.backbone.get_vision_embeddings(features["images"]),
            self.backbone.get_text_embeddings(features["token_ids"]),
        )

    # --- Training. ---

    def _loss_and_gradients(self, features):
        with tf.GradientTape() as tape:
            image, text = self.embeddings(features)
            loss = global_batch_contrastive_loss(image, text, self.logit_scale)
            # Times the dynamic loss scale under float16; else the loss.
            scaled = self.optimizer.scale_loss(loss)
        return loss, tape.gradient(scaled, self.variables)

    def _replica_train_step(self, features):
        with distinct_replica_seeds(self._seed_states):
            loss, gradients = self._gradients(features)
        # The token embeddings' gradient is sparse, one slice per token of
        # the batch; Keras's Adam squares each slice before adding a token's
        # repeats, so its step would depend on how the batch is split over
        # replicas. Dense, it is Adam's step on the global batch's gradient.
        gradients = [tf.convert_to_tensor(g) for g in gradients]
        if self.loss_scaling and self.strategy.num_replicas_in_sync > 1:
            # The LossScaleOptimizer skips a step on replica 0's verdict
            # (it expects all-reduced gradients): one replica's overflow
            # must make every replica's gradients non-finite.
            overflows = tf.distribute.get_replica_context().all_reduce(SUM, tf.add_n([
                tf.reduce_sum(tf.cast(~tf.math.is_finite(g), tf.float32))
                for g in gradients
            ]))
            poison = tf.where(overflows > 0, float("nan"), 0.0)
            gradients = [g + tf.cast(poison, g.dtype) for g in gradients]
        self.optimizer.apply_gradients(zip(gradients, self.variables))
        return loss

    def _distributed_train_step(self, iterator):
        features, _ = next(iterator)
        per_replica = self.strategy.run(self._replica_train_step, args=(features,))
        # In the cross-replica context: every replica's copy is clamped.
        clamp_logit_scale(self.logit_scale)
        return self.strategy.reduce(SUM, per_replica, axis=None)

    def train_steps(self, distributed_dataset, num_steps, on_step=None):
        """Runs up to `num_steps` steps; returns the mean loss.

        Each step's loss is the global batch's (the replicas' shares
        summed). Stops early, without an error, if the data ends first
        (`steps_run` says how many ran). `on_step(step, loss)` follows
        each step.
        """
        iterator = iter(distributed_dataset)
        total = 0.0
        self.steps_run = 0
        for step in range(num_steps):
            try:
                loss = float(self._train_step(iterator))
            except tf.errors.OutOfRangeError:
                break
            self.steps_run += 1
            total += loss
            if on_step is not None:
                on_step(step, loss)
        return total / max(self.steps_run, 1)

    @property
    def learning_rate(self):
        """The learning rate of the next step."""
        return float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))

    @property
    def scale(self):
        """The logits' scale, `exp(logit_scale)` (CLIP's 1 / temperature)."""
        return float(np.exp(keras.ops.convert_to_numpy(self.logit_scale)))

    # --- Evaluation. ---

    def _distributed_embed_step(self, features):
        per_replica = self.strategy.run(self.embeddings, args=(features,))
        return tuple(self.strategy.gather(x, axis=0) for x in per_replica)

    def embed(self, distributed_dataset):
        """`(image, text)` embeddings of every pair of a dataset (numpy)."""
        images, texts = [], []
        for features, _ in distributed_dataset:
            image, text = self._embed_step(features)
            images.append(image.numpy())
            texts.append(text.numpy())
        if not images:
            return np.zeros([0, 1]), np.zeros([0, 1])
        return np.concatenate(images), np.concatenate(texts)

    def evaluate(self, distributed_dataset, ks=RECALL_KS):
        """Image-to-text and text-to-image recall@K over a whole dataset.

        Every image is ranked against every text of the dataset (not of a
        batch), as CLIP's retrieval benchmarks do; `count` is the number of
        pairs.
        """
        image, text = self.embed(distributed_dataset)
        return {**retrieval_recall(image, text, ks), "count": len(image)}


def selection_score(recall):
    """The mean of the recalls@K both ways: what picks the best checkpoint."""
    values = [v for k, v in recall.items() if "_recall@" in k]
    return float(np.mean(values)) if values else 0.0
