"""One training stage as a custom loop on tf.distribute (`strategy.run`).

Keras 3's `fit` cannot run under `MultiWorkerMirroredStrategy`, and the stages
need per-group optimizers anyway, so this loop serves every strategy: one
AdamW (`FusedAdamW`) per trainable module group (frozen groups get neither
gradients nor optimizer state), losses normalized by the global count of
labelled examples per task.

`steps_per_execution` steps run inside one `tf.function` (a `tf.while_loop`
over the distributed iterator) with the loss sums kept on the device: the
host waits for the accelerator once per execution, not once per step. Per
step, the gradients of every group are summed across replicas in one
all-reduce, clipped by their global norm, and applied per group; with
`accumulate_steps` K, a step's batch is split into K micro-batches whose
gradients add up on the device before that one all-reduce.
"""

import keras
import tensorflow as tf

from cmaclip_tf.losses import global_batch_contrastive_loss
from cmaclip_tf.losses import masked_cross_entropy_sum
from trainers.training.evaluation import Evaluator
from trainers.training.group_optimizer import group_optimizer
from trainers.training.replica_seeds import distinct_replica_seeds
from trainers.training.replica_seeds import seed_states
from trainers.training.weight_average import WeightAverage

SUM = tf.distribute.ReduceOp.SUM


def check_contrastive_options(contrastive, jit_compile, accumulate_steps, replicas):
    """Refuses what the contrastive loss cannot run with.

    The InfoNCE compares every pair of the global batch, so micro-batches
    would change it; and it all-gathers every replica's embeddings, which a
    collective cannot do inside the XLA-compiled function that `strategy.run`
    calls (TensorFlow: "merge_call called while defining a new graph").

    Raises:
        ValueError: the contrastive loss with `accumulate_steps` > 1, or with
            `jit_compile` on several replicas.
    """
    if contrastive and accumulate_steps > 1:
        raise ValueError(
            "--contrastive-weight compares every pair of the batch, so it "
            f"cannot be split into --accumulate-steps {accumulate_steps} "
            "micro-batches: drop one of the two."
        )
    if contrastive and jit_compile and replicas > 1:
        raise ValueError(
            "--jit-compile cannot compile the contrastive loss on "
            f"{replicas} replicas (it all-gathers across them): drop "
            "--jit-compile, or --contrastive-weight, or train on one device."
        )


class StageTrainer:
    """Trains the module groups a `StageSchedule` leaves unfrozen.

    Args:
        model: a built `CMACLIP`, created under `strategy.scope()`.
        schedule: `trainers.training.stage_schedule.StageSchedule`.
        strategy: `tf.distribute.Strategy`.
        learning_rate: float. The base learning rate.
        weight_decay: a number (AdamW's decoupled decay) or `{"kind": "l2" |
            "decoupled", "rate": number}` (not on vectors:
            `trainers.training.fused_adamw.FusedAdamW`).
        jit_compile: bool. XLA-compile the forward and backward pass.
        task_losses: `{task: fn(logits, labels) -> (sum, count)}`
            (`cmaclip_tf.losses.task_losses`); default: cross-entropy.
        contrastive_weight: float α. Adds α times CLIP's image-title
            InfoNCE (the global batch's, on CLIP's pooled, projected
            embeddings, at CLIP's temperature) to the loss in stages where
            CLIP trains; 0 (the paper's recipe) adds nothing.
        steps_per_execution: int. Steps per `tf.function` call (and host
            sync). Defaults to 1.
        accumulate_steps: int. Micro-batches per step: each replica's batch
            is split into this many (of sizes one row apart where it does
            not divide), run one after the other. The update equals one step
            on the whole batch. Defaults to 1.
        clip_norm: optional float. Clip the gradients of all groups
            together to this global norm (after summing over replicas).
        learning_rate_schedule: optional callable, peak rate -> Keras
            schedule (`trainers.training.learning_rate_schedule.WarmupSchedule`);
            default: constant.
        optimizer_options: optional dict of AdamW's `beta_1`, `beta_2`,
            `epsilon`.
        ema_decay: optional float. Keep an exponential moving average of
            the trained variables (`trainers.training.weight_average.WeightAverage`,
            `weight_average`), updated after every step.

    Under a `mixed_float16` model, every group's AdamW is wrapped in Keras's
    `LossScaleOptimizer`; the loss is scaled once, and a step whose
    gradients overflow anywhere is skipped in every group, so the groups'
    scales stay equal.

    Example:
    ```python
    trainer = StageTrainer(model, STAGES["warmup"], strategy, 1e-5, 1e-4,
                           steps_per_execution=8, clip_norm=1.0)
    losses = trainer.train_steps(strategy.experimental_distribute_dataset(ds), 100)
    ```
    """

    def __init__(
        self, model, schedule, strategy, learning_rate, weight_decay,
        jit_compile=False, task_losses=None, contrastive_weight=0.0,
        steps_per_execution=1, accumulate_steps=1, clip_norm=None,
        learning_rate_schedule=None, optimizer_options=None, ema_decay=None,
    ):
        if steps_per_execution < 1 or accumulate_steps < 1:
            raise ValueError(
                "steps_per_execution and accumulate_steps must be >= 1; got "
                f"{steps_per_execution} and {accumulate_steps}."
            )
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
        check_contrastive_options(self.contrastive_weight, jit_compile,
                                  accumulate_steps, strategy.num_replicas_in_sync)
        with strategy.scope():
            self.contrastive_metric = keras.metrics.Mean(name="contrastive")
        self.steps_per_execution = int(steps_per_execution)
        self.accumulate_steps = int(accumulate_steps)
        self.clip_norm = clip_norm or None
        self.loss_scaling = model.dtype_policy.compute_dtype == "float16"
        self.peak_learning_rates = {}
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
                self.peak_learning_rates[group] = rate
                self.optimizers[group] = group_optimizer(
                    variables,
                    learning_rate_schedule(rate) if learning_rate_schedule else rate,
                    weight_decay,
                    loss_scaling=self.loss_scaling,
                    name=f"{group}_optimizer",
                    **(optimizer_options or {}),
                )
        self._variables = [
            v for group in self.group_variables for v in self.group_variables[group]
        ]
        self._seed_states = seed_states(model)
        self.weight_average = None
        if ema_decay:
            self.weight_average = WeightAverage(self._variables, ema_decay,
                                                strategy)
        self._gradients = tf.function(
            self._loss_and_gradients, jit_compile=jit_compile, autograph=False
        )
        if self.contrastive_weight and not jit_compile:
            # The InfoNCE all-gathers across replicas, which a nested
            # tf.function inside `strategy.run` cannot hold.
            self._gradients = self._loss_and_gradients
        self._train_loop = tf.function(self._distributed_train_loop, autograph=False)
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
            if self.loss_scaling:
                total = total * self._loss_scale()
        gradients = tape.gradient(total, self._variables)
        return per_task, gradients

    def _loss_scale(self):
        """float16's dynamic loss scale (equal in every group's optimizer)."""
        return tf.cast(next(iter(self.optimizers.values())).dynamic_scale, tf.float32)

    def _accumulated_gradients(self, features, labels, global_counts):
        """Loss and gradient sums over `accumulate_steps` micro-batches.

        Counts are the whole batch's, so the sums equal one step on it. A
        batch that K does not divide splits into micro-batches one row apart
        in size (rows `i n / K` to `(i + 1) n / K`): no row is left out.
        """
        parts = self.accumulate_steps

        def micro_batch(tensor, index):
            rows = tf.shape(tensor)[0]
            return tensor[index * rows // parts : (index + 1) * rows // parts]

        def body(index, loss_sums, gradient_sums):
            part_features, part_labels = tf.nest.map_structure(
                lambda t: micro_batch(t, index), (features, labels)
            )
            per_task, gradients = self._gradients(
                part_features, part_labels, global_counts
            )
            loss_sums = {t: loss_sums[t] + per_task[t] for t in self.tasks}
            gradient_sums = [
                total if gradient is None else total + gradient
                for total, gradient in zip(gradient_sums, gradients)
            ]
            return index + 1, loss_sums, gradient_sums

        _, loss_sums, gradient_sums = tf.while_loop(
            lambda index, *_: index < parts,
            body,
            (
                tf.constant(0),
                {t: tf.constant(0.0) for t in self.tasks},
                [tf.zeros(v.shape, v.dtype) for v in self._variables],
            ),
            parallel_iterations=1,  # One micro-batch's activations at a time.
        )
        return loss_sums, gradient_sums

    def _summed_over_replicas(self, gradients):
        """One all-reduce for every group's gradients."""
        if self.strategy.num_replicas_in_sync == 1:
            return gradients
        present = [i for i, g in enumerate(gradients) if g is not None]
        summed = tf.distribute.get_replica_context().all_reduce(
            SUM, [gradients[i] for i in present]
        )
        gradients = list(gradients)
        for i, gradient in zip(present, summed):
            gradients[i] = gradient
        return gradients

    def _apply_gradients(self, gradients):
        scale = 1.0
        if self.loss_scaling:
            scale = self._loss_scale()
            # An overflow in any group skips the step in all of them (each
            # LossScaleOptimizer sees non-finite gradients), so their loss
            # scales move together.
            finite = tf.reduce_all([
                tf.reduce_all(tf.math.is_finite(g)) for g in gradients if g is not None
            ])
            poison = tf.where(finite, 0.0, float("nan"))
            gradients = [None if g is None else g + poison for g in gradients]
        if self.clip_norm:
            # Still scaled by the loss scale: so is the threshold.
            gradients, _ = tf.clip_by_global_norm(gradients, self.clip_norm * scale)
        start = 0
        for group, variables in self.group_variables.items():
            group_gradients = gradients[start : start + len(variables)]
            start += len(variables)
            self.optimizers[group].apply_gradients(zip(group_gradients, variables))

    def _replica_loss_and_gradients(self, features, labels, global_counts):
        """This replica's loss per task and gradients, not yet all-reduced."""
        # Each replica its own dropout masks.
        with distinct_replica_seeds(self._seed_states):
            if self.accumulate_steps == 1:
                return self._gradients(features, labels, global_counts)
            return self._accumulated_gradients(features, labels, global_counts)

    def _replica_train_step(self, features, labels):
        context = tf.distribute.get_replica_context()
        global_counts = {
            task: context.all_reduce(
                SUM, tf.reduce_sum(tf.cast(labels[task] >= 0, tf.float32))
            )
            for task in self.tasks
        }
        per_task, gradients = self._replica_loss_and_gradients(
            features, labels, global_counts
        )
        self._apply_gradients(self._summed_over_replicas(gradients))
        if self.weight_average is not None:
            self.weight_average.update()
        return per_task

    def _distributed_train_loop(self, iterator, num_steps):
        """Up to `num_steps` steps; the per-task loss sums and the steps run.

        Written as the graph it is (`tf.while_loop`, `tf.cond`), so that it
        traces without AutoGraph converting the model and loss code it calls.
        """

        def step(steps, totals, batch):
            features, labels = batch.get_value()
            per_replica = self.strategy.run(
                self._replica_train_step, args=(features, labels)
            )
            return steps + 1, False, {
                task: totals[task]
                + self.strategy.reduce(SUM, per_replica[task], axis=None)
                for task in self.tasks
            }

        def body(steps, ended, totals):
            batch = iterator.get_next_as_optional()
            # The data ended early: stop; `steps` says how many ran.
            return tf.cond(
                batch.has_value(),
                lambda: step(steps, totals, batch),
                lambda: (steps, True, totals),
            )

        steps, _, totals = tf.while_loop(
            lambda steps, ended, _: tf.logical_and(steps < num_steps,
                                                   tf.logical_not(ended)),
            body,
            (tf.constant(0), tf.constant(False),
             {task: tf.constant(0.0) for task in self.tasks}),
        )
        return totals, steps

    def run_steps(self, iterator, num_steps):
        """Runs up to `num_steps` steps in one call; one host sync.

        Args:
            iterator: `iter()` of a distributed dataset; it moves on.
            num_steps: int.

        Returns:
            `(mean loss per task, steps run)`; fewer steps if the data ended.
        """
        totals, steps = self._train_loop(iterator, tf.constant(num_steps))
        steps = int(steps)
        return {t: float(v) / max(steps, 1) for t, v in totals.items()}, steps

    def train_steps(self, distributed_dataset, num_steps, on_step=None,
                    sync_every=None, first_step=0):
        """Runs up to `num_steps` steps; returns the mean loss per task.

        Steps run `steps_per_execution` at a time; after each execution,
        `on_step(step, losses)` gets the index of its last step (from 0) and
        its mean losses. With `sync_every`, an execution also ends at every
        multiple of `sync_every` steps counted from the epoch's start, of
        which `first_step` were done before (for checkpoints at fixed
        steps, whatever `steps_per_execution`).

        Stops early, without an error, if the data ends first (the caller
        counted the steps from the good records, so that should not happen;
        `steps_run` says how many ran).
        """
        iterator = iter(distributed_dataset)
        totals = {task: 0.0 for task in self.tasks}
        self.steps_run = 0
        while self.steps_run < num_steps:
            chunk = min(self.steps_per_execution, num_steps - self.steps_run)
            if sync_every:
                done = first_step + self.steps_run
                chunk = min(chunk, sync_every - done % sync_every)
            losses, ran = self.run_steps(iterator, chunk)
            self.steps_run += ran
            for task in self.tasks:
                totals[task] += losses[task] * ran
            if ran and on_step is not None:
                on_step(self.steps_run - 1, losses)
            if ran < chunk:
                break
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

    @property
    def learning_rates(self):
        """Each group's learning rate at its optimizer's current step."""
        return {
            group: float(optimizer.learning_rate)
            for group, optimizer in self.optimizers.items()
        }

    # --- Evaluation. ---

    def predict(self, distributed_dataset):
        """Per-task probabilities, λ and labels over a whole dataset (numpy)."""
        return self.evaluator.predict(distributed_dataset)
