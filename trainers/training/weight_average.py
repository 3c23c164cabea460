"""An exponential moving average (EMA) of the trained weights, the weights
that validation, best-checkpoint selection, the final evaluation and the
export see when a stage sets `ema_decay`.

Keras optimizers have `use_ema`, but a stage trains one `FusedAdamW` per
module group, each of which would keep and swap its own average; one
average over every trained variable, updated after the step's last group
is applied, is simpler to swap and to checkpoint. The decay warms up as
TensorFlow's `tf.train.ExponentialMovingAverage(num_updates=...)` does,
`min(decay, (1 + t) / (10 + t))` at update `t` (from 0), so that a short
stage is not an average dominated by its starting weights.
"""

import contextlib

import tensorflow as tf


class WeightAverage(tf.Module):
    """EMA shadow copies of `variables`, under a `tf.distribute` strategy.

    Args:
        variables: the trained variables (float), created under `strategy`.
        decay: float in (0, 1). The EMA's decay (its "momentum").
        strategy: `tf.distribute.Strategy`; the shadows are created under its
            scope, as mirrored variables that every replica updates alike.

    Call `update()` after each applied step, in a replica context (inside
    `strategy.run`, after the optimizers) or in a cross-replica one;
    `swapped()` is a context in which the variables hold the average.
    Checkpoint it with the optimizers (`tf.train.Checkpoint(..., ema=it)`).

    Example:
    ```python
    average = WeightAverage(model.trainable_variables, 0.999, strategy)
    strategy.run(step_and_update)  # ... optimizer.apply(...); average.update()
    with average.swapped():
        evaluate(model)
    ```
    """

    def __init__(self, variables, decay, strategy, name="weight_average"):
        super().__init__(name=name)
        if not 0.0 < decay < 1.0:
            raise ValueError(f"The EMA decay must be in (0, 1); got {decay}.")
        self.decay = float(decay)
        self._variables = list(variables)
        with strategy.scope():
            # Every replica computes the same value (the gradients were
            # summed over replicas before the step), so the first one's is
            # written to all.
            self.shadows = [
                tf.Variable(
                    tf.convert_to_tensor(v), trainable=False,
                    name=f"ema_{i}",
                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                )
                for i, v in enumerate(self._variables)
            ]
            self.num_updates = tf.Variable(
                0, dtype=tf.int64, trainable=False, name="num_updates",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )

    def current_decay(self):
        """This update's decay: `min(decay, (1 + t) / (10 + t))`."""
        t = tf.cast(self.num_updates, tf.float32)
        return tf.minimum(self.decay, (1.0 + t) / (10.0 + t))

    def update(self):
        """`shadow ← d·shadow + (1 - d)·variable` for every variable."""
        decay = self.current_decay()
        for shadow, variable in zip(self.shadows, self._variables):
            shadow.assign(decay * shadow
                          + (1.0 - decay) * tf.convert_to_tensor(variable))
        self.num_updates.assign_add(1)

    def swap(self):
        """Exchanges the variables' values and the average's (cross-replica)."""
        for shadow, variable in zip(self.shadows, self._variables):
            value = tf.identity(tf.convert_to_tensor(variable))
            variable.assign(shadow)
            shadow.assign(value)

    @contextlib.contextmanager
    def swapped(self):
        """The variables hold the average inside, their own values after."""
        self.swap()
        try:
            yield
        finally:
            self.swap()



def averaged_weights(trainer):
    """A context in which `trainer`'s model holds its EMA weights, if it
    keeps an average (`StageTrainer.weight_average`); else a no-op."""
    average = getattr(trainer, "weight_average", None)
    return average.swapped() if average is not None else contextlib.nullcontext()
