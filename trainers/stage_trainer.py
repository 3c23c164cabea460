"""One training stage as a custom loop on tf.distribute (`strategy.run`).

Keras 3's `fit` cannot run under `MultiWorkerMirroredStrategy`, and the stages
need per-group optimizers anyway, so this loop serves every strategy: one
AdamW per trainable module group (frozen groups get neither gradients nor
optimizer state), losses normalized by the global count of labelled examples
per task, gradients summed across replicas by the Keras optimizer.
"""

import keras
import tensorflow as tf

from cmaclip_tf.losses import global_batch_contrastive_loss
from cmaclip_tf.losses import masked_cross_entropy_sum
from trainers.evaluation import Evaluator

SUM = tf.distribute.ReduceOp.SUM


class StageTrainer:
    """Trains the module groups a `StageSchedule` leaves unfrozen.

    Args:
        model: a built `CMACLIP`, created under `strategy.scope()`.
        schedule: `trainers.stage_schedule.StageSchedule`.
        strategy: `tf.distribute.Strategy`.
        learning_rate: float. The base learning rate.
        weight_decay: float. AdamW's decoupled weight decay.
        jit_compile: bool. XLA-compile the forward and backward pass.
        task_losses: `{task: fn(logits, labels) -> (sum, count)}`
            (`cmaclip_tf.losses.task_losses`); default: cross-entropy.
        contrastive_weight: float α. Adds α times CLIP's image-title
            InfoNCE (the global batch's, on CLIP's pooled, projected
            embeddings, at CLIP's temperature) to the loss in stages where
            CLIP trains; 0 (the paper's recipe) adds nothing.
    """

    def __init__(
        self, model, schedule, strategy, learning_rate, weight_decay,
        jit_compile=False, task_losses=None, contrastive_weight=0.0,
    ):
        self.model = model
        self.schedule = schedule
        self.strategy = strategy
        self.tasks = list(model.tasks)
        self.task_losses = task_losses or {
            task: masked_cross_entropy_sum for task in self.tasks
        }
        # Where CLIP is frozen the InfoNCE could not change what it scores.
        self.contrastive_weight = (
            0.0 if schedule.clip_frozen() else float(contrastive_weight)
        )
        with strategy.scope():
            self.contrastive_metric = keras.metrics.Mean(name="contrastive")
        self.learning_rates = {}
        groups = model.module_groups()
        self.group_variables = {
            group: groups[group]
            for group in schedule.trainable_groups()
            if groups[group]
        }
        with strategy.scope():
            self.optimizers = {}
            for group, variables in self.group_variables.items():
                rate = learning_rate * schedule.learning_rate_multipliers[group]
                self.learning_rates[group] = rate
                optimizer = keras.optimizers.AdamW(
                    learning_rate=rate,
                    weight_decay=weight_decay,
                    name=f"{group}_optimizer",
                )
                optimizer.build(variables)
                self.optimizers[group] = optimizer
        self._variables = [
            v for group in self.group_variables for v in self.group_variables[group]
        ]
        self._gradients = tf.function(self._loss_and_gradients, jit_compile=jit_compile)
        if self.contrastive_weight and not jit_compile:
            # The InfoNCE all-gathers across replicas, which a nested
            # tf.function inside `strategy.run` cannot hold.
            self._gradients = self._loss_and_gradients
        self._train_step = tf.function(self._distributed_train_step)
        self.evaluator = Evaluator(
            lambda features: self._forward(features, training=False),
            self.tasks, strategy,
        )

    # --- Which depth of the model the stage starts from. ---

    @property
    def input_depth(self):
        """The deepest cacheable input: `raw`, `clip_features` or `embeddings`."""
        if self.schedule.fusion_frozen():
            return "embeddings"
        if self.schedule.clip_frozen():
            return "clip_features"
        return "raw"

    def frozen_variables(self):
        """The variables of the frozen module groups (what a cache fits)."""
        groups = self.model.module_groups()
        return [v for g in self.schedule.frozen_groups() for v in groups.get(g, [])]

    def features_at_depth(self, features):
        """Runs the frozen front of the model (inference mode) on raw inputs."""
        depth = self.input_depth
        if depth == "raw":
            return features
        clip_features = self.model.encode(
            features["images"], features["token_ids"], features["padding_mask"]
        )
        if depth == "clip_features":
            return clip_features
        return self.model.fuse(clip_features, training=False)

    def _forward(self, features, training):
        if not hasattr(self.model, "fuse"):
            return self.model(features, training=training)  # E.g. zero-shot.
        # Frozen parts always run in inference mode, so that the cached and
        # uncached paths compute the same thing.
        if "image_embedding" in features:
            embeddings = features
        else:
            if "image_sequence" in features:
                clip_features = features
            else:
                clip_features = self.model.encode(
                    features["images"], features["token_ids"],
                    features["padding_mask"],
                )
            fusion_training = training and not self.schedule.fusion_frozen()
            embeddings = self.model.fuse(clip_features, training=fusion_training)
        return self.model.classify(embeddings, training=training)

    # --- Training. ---

    def _loss_and_gradients(self, features, labels, global_counts):
        with tf.GradientTape() as tape:
            if self.contrastive_weight:
                # CLIP runs once for the heads and for the InfoNCE.
                features = self.model.encode(
                    features["images"], features["token_ids"],
                    features["padding_mask"],
                )
            outputs = self._forward(features, training=True)
            per_task = {}
            for task in self.tasks:
                loss_sum, _ = self.task_losses[task](
                    outputs[f"{task}_logits"], labels[task]
                )
                per_task[task] = loss_sum / tf.maximum(global_counts[task], 1.0)
            total = tf.add_n(list(per_task.values()))
            if self.contrastive_weight:
                # This replica's share of the global batch's InfoNCE.
                contrastive = global_batch_contrastive_loss(
                    *self.model.pooled_embeddings(features),
                    self.model.clip_backbone.clip_head.logit_scale,
                )
                total += self.contrastive_weight * contrastive
                # Share times replicas: the global loss, whose mean over
                # replicas and steps is its mean over steps.
                replicas = tf.distribute.get_replica_context().num_replicas_in_sync
                self.contrastive_metric.update_state(contrastive * replicas)
        gradients = tape.gradient(total, self._variables)
        return per_task, gradients

    def _replica_train_step(self, features, labels):
        context = tf.distribute.get_replica_context()
        global_counts = {
            task: context.all_reduce(
                SUM, tf.reduce_sum(tf.cast(labels[task] >= 0, tf.float32))
            )
            for task in self.tasks
        }
        per_task, gradients = self._gradients(features, labels, global_counts)
        start = 0
        for group, variables in self.group_variables.items():
            group_gradients = gradients[start : start + len(variables)]
            start += len(variables)
            self.optimizers[group].apply_gradients(zip(group_gradients, variables))
        return per_task

    def _distributed_train_step(self, iterator):
        features, labels = next(iterator)
        per_replica = self.strategy.run(
            self._replica_train_step, args=(features, labels)
        )
        return {
            task: self.strategy.reduce(SUM, loss, axis=None)
            for task, loss in per_replica.items()
        }

    def train_steps(self, distributed_dataset, num_steps, on_step=None):
        """Runs up to `num_steps` steps; returns the mean loss per task.

        Stops early, without an error, if the data ends first (the caller
        counted the steps from the good records, so that should not happen;
        `steps_run` says how many ran).
        """
        iterator = iter(distributed_dataset)
        totals = {task: 0.0 for task in self.tasks}
        self.steps_run = 0
        for step in range(num_steps):
            try:
                losses = self._train_step(iterator)
            except tf.errors.OutOfRangeError:
                break
            losses = {task: float(value) for task, value in losses.items()}
            self.steps_run += 1
            for task in self.tasks:
                totals[task] += losses[task]
            if on_step is not None:
                on_step(step, losses)
        return {
            task: total / max(self.steps_run, 1) for task, total in totals.items()
        }

    def contrastive_loss(self):
        """The mean InfoNCE of the steps since the last call (then reset);
        None without the auxiliary loss."""
        if not self.contrastive_weight:
            return None
        value = float(self.contrastive_metric.result())
        self.contrastive_metric.reset_state()
        return value

    # --- Evaluation. ---

    def predict(self, distributed_dataset):
        """Per-task probabilities, λ and labels over a whole dataset (numpy)."""
        return self.evaluator.predict(distributed_dataset)
