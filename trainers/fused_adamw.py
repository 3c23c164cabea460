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
"""

import keras
import tensorflow as tf


class FusedAdamW(keras.optimizers.AdamW):
    """`keras.optimizers.AdamW`, updating each variable with one fused kernel.

    Same arguments and the same update (to float rounding) as
    `keras.optimizers.AdamW`, tf.distribute included; with `amsgrad=True` it
    takes Keras's own unfused path.

    Example:
    ```python
    optimizer = FusedAdamW(learning_rate=1e-5, weight_decay=1e-4)
    optimizer.apply_gradients(zip(gradients, variables))
    ```
    """

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
            if self.weight_decay and self._use_weight_decay(variable):
                variable.assign_sub(
                    variable * (learning_rate * tf.cast(self.weight_decay, dtype))
                )
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
                # Dense: an embedding's IndexedSlices, as Keras's Adam does.
                grad=tf.cast(tf.convert_to_tensor(gradient), dtype),
            )

        for gradient, variable in grads_and_vars:
            distribution.extended.update(
                variable, update, args=(gradient, learning_rate), group=False
            )
