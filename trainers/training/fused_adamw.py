"""AdamW with one fused kernel per variable: Keras's AdamW update, a
fraction of its graph.

Keras's AdamW updates a variable with about twenty graph ops (its moments,
the bias correction and the decay, each its own element-wise pass over the
variable, the learning rate recomputed per variable): on a large model that
is a sixth of an end-to-end step's time, memory-bound, and on a small one
most of the time spent building the step's graph. Here the step's scalars
are computed once and each variable takes one `ResourceApplyAdam` (the same
update as Keras's Adam, in the same arithmetic: `m += (g - m)(1 - β1)`,
`v += (g² - v)(1 - β2)`, `w -= α m / (√v + ε)`) after its decay.
TensorFlow only, as the trainers are.

Two kinds of weight decay: `decoupled` (AdamW's, Loshchilov & Hutter: each
step shrinks a weight by `α λ w`, apart from Adam's update) and `l2` (Adam
with weight decay as PyTorch's `Adam(weight_decay=λ)` and the CMA-CLIP paper
mean it: `λ w` is added to the gradient, so Adam normalizes it with the rest).
Either way, only matrices decay (open_clip's and big_vision's rule): biases,
LayerNorm scales and every other variable with fewer than two axes do not.
"""

import keras
import tensorflow as tf


WEIGHT_DECAY_KINDS = ("decoupled", "l2")


def weight_decay_setting(setting):
    """`(kind, rate)` of a weight-decay setting.

    Args:
        setting: a number (AdamW's decoupled decay, the older recipes' form),
            `{"kind": "l2" | "decoupled", "rate": number}`, or None (none).

    Raises:
        ValueError: an unknown kind, a missing or negative rate.
    """
    if setting is None:
        return "decoupled", 0.0
    if isinstance(setting, dict):
        unknown = sorted(set(setting) - {"kind", "rate"})
        kind, rate = setting.get("kind"), setting.get("rate")
        if unknown or kind not in WEIGHT_DECAY_KINDS:
            raise ValueError(
                "weight_decay must be a number or {\"kind\": "
                f"{' | '.join(repr(k) for k in WEIGHT_DECAY_KINDS)}, \"rate\": "
                f"number}}; got {setting!r}."
            )
    else:
        kind, rate = "decoupled", setting
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate < 0:
        raise ValueError(f"weight_decay's rate must be a number >= 0; got {rate!r}.")
    return kind, float(rate)


class FusedAdamW(keras.optimizers.AdamW):
    """`keras.optimizers.AdamW`, updating each variable with one fused kernel.

    Same arguments and the same update (to float rounding) as
    `keras.optimizers.AdamW`, tf.distribute included, except that variables
    with fewer than two axes never decay; with `amsgrad=True` it takes
    Keras's own unfused path (decoupled decay only).

    Args:
        weight_decay: a number (decoupled) or `{"kind": "l2" | "decoupled",
            "rate": number}` (`weight_decay_setting`).
        **kwargs: `keras.optimizers.AdamW`'s other arguments.

    Example:
    ```python
    optimizer = FusedAdamW(learning_rate=1e-5,
                           weight_decay={"kind": "l2", "rate": 1e-4})
    optimizer.apply_gradients(zip(gradients, variables))
    ```
    """

    def __init__(self, *args, weight_decay=0.004, **kwargs):
        kind, rate = weight_decay_setting(weight_decay)
        if kind == "l2" and kwargs.get("amsgrad"):
            raise ValueError("FusedAdamW: l2 weight decay has no amsgrad path.")
        super().__init__(*args, weight_decay=rate, **kwargs)
        self.weight_decay_kind = kind

    def get_config(self):
        config = super().get_config()
        config["weight_decay"] = {"kind": self.weight_decay_kind,
                                  "rate": config["weight_decay"]}
        return config

    def _use_weight_decay(self, variable):
        # The one place of the rule: no decay on vectors (and scalars).
        return len(variable.shape) >= 2 and super()._use_weight_decay(variable)

    def _apply_weight_decay(self, variables):
        if self.amsgrad:
            super()._apply_weight_decay(variables)
        # Otherwise decayed in the update below, at the same learning rate.

    def _distributed_tf_update_step(self, distribution, grads_and_vars,
                                    learning_rate):
        if self.amsgrad:
            return super()._distributed_tf_update_step(
                distribution, grads_and_vars, learning_rate)
        # The step's scalars, once for every variable (all are float32: the
        # mixed-precision policies keep variables in float32). The learning
        # rate can be per replica (after a merge call), so each update reads
        # its own copy.
        step = tf.cast(self.iterations + 1, tf.float32)
        beta_1_power = tf.pow(tf.cast(self.beta_1, tf.float32), step)
        beta_2_power = tf.pow(tf.cast(self.beta_2, tf.float32), step)

        def update(variable, gradient, learning_rate):
            index = self._get_variable_index(variable)
            dtype = variable.dtype
            learning_rate = tf.cast(learning_rate, dtype)
            # Dense: an embedding's IndexedSlices, as Keras's Adam does.
            gradient = tf.cast(tf.convert_to_tensor(gradient), dtype)
            if self.weight_decay and self._use_weight_decay(variable):
                rate = tf.cast(self.weight_decay, dtype)
                if self.weight_decay_kind == "l2":
                    gradient = gradient + rate * variable
                else:
                    variable.assign_sub(variable * (learning_rate * rate))
            tf.raw_ops.ResourceApplyAdam(
                var=variable.handle,
                m=self._momentums[index].value.handle,
                v=self._velocities[index].value.handle,
                beta1_power=tf.cast(beta_1_power, dtype),
                beta2_power=tf.cast(beta_2_power, dtype),
                lr=learning_rate,
                beta1=tf.cast(self.beta_1, dtype),
                beta2=tf.cast(self.beta_2, dtype),
                epsilon=tf.cast(self.epsilon, dtype),
                grad=gradient,
            )

        for gradient, variable in grads_and_vars:
            distribution.extended.update(
                variable, update, args=(gradient, learning_rate), group=False
            )
