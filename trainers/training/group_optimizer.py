"""The optimizer of one module group: AdamW (fused, `FusedAdamW`) on
gradients already summed over replicas, loss-scaled under float16.

`StageTrainer` sums the gradients of every group across replicas in one
all-reduce, then clips them by their global norm (which needs the summed
gradients of all groups at once) before any optimizer sees them; Keras's
optimizers would sum them across replicas a second time, so this AdamW
leaves them as they are.
"""

import keras

from trainers.training.fused_adamw import FusedAdamW


class PreReducedAdamW(FusedAdamW):
    """`FusedAdamW` for gradients summed over replicas already.

    Same arguments as `keras.optimizers.AdamW`. Call `apply` in a replica
    context (inside `strategy.run`) with the same gradients on every replica.

    Example:
    ```python
    optimizer = PreReducedAdamW(learning_rate=1e-5, weight_decay=1e-4)
    optimizer.build(variables)
    strategy.run(lambda: optimizer.apply(summed_gradients, variables))
    ```
    """

    def _all_reduce_sum_gradients(self, grads_and_vars):
        # Keras's TF optimizers all-reduce here; the trainer did it already.
        return list(grads_and_vars)


def group_optimizer(
    variables, learning_rate, weight_decay, loss_scaling=False, name=None,
    **adam_options,
):
    """A built optimizer for one module group's variables.

    Args:
        variables: the group's trainable variables.
        learning_rate: float or a Keras learning-rate schedule.
        weight_decay: a number (AdamW's decoupled decay) or `{"kind": "l2" |
            "decoupled", "rate": number}` (`FusedAdamW`), applied to matrices
            only: LayerNorm scales, biases, the modality-attention vector and
            CLIP's class embedding (every variable with fewer than two
            dimensions) do not decay, as in open_clip and big_vision.
        loss_scaling: bool. Wrap it in `keras.optimizers.LossScaleOptimizer`
            (float16 compute).
        name: optional name.
        **adam_options: `beta_1`, `beta_2`, `epsilon`.

    Returns:
        `PreReducedAdamW`, or a `LossScaleOptimizer` around one.
    """
    optimizer = PreReducedAdamW(
        learning_rate=learning_rate, weight_decay=weight_decay, name=name,
        **adam_options,
    )
    if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(
            optimizer, name=f"{name}_loss_scale" if name else None
        )
    optimizer.build(variables)
    return optimizer
