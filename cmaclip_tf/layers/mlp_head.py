"""The per-task MLP classification head (section 3.2.3)."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="cmaclip_tf")
class MLPHead(keras.layers.Layer):
    """Dense -> GELU -> dropout -> Dense to class logits (float32).

    With `linear_path=True` the logits also get a scaled linear map of the
    input, `logits = s·Wx + MLP(x)`: the path a zero-shot classifier lives
    on. `initialize_zero_shot(kernel, scale)` sets `W` to the normalized
    class-prompt embeddings and `s` (not trained) to CLIP's logit scale, and
    zeroes the MLP's output layer, so the head starts as zero-shot CLIP and
    the MLP learns what zero-shot misses (a departure from the paper's plain
    MLP head). `W` holds unit-scale rows and `s` stays outside it, so an
    optimizer step moves the classifier as much as it would a linear probe
    on normalized features, not a hundredth of that. The inputs of such a
    head are unit vectors, so its MLP reads them times √dim, at the scale
    of a LayerNorm's output.

    Args:
        num_classes: int. Number of classes of the task.
        hidden_dim: int. Width of the hidden layer; 0 makes the head linear
            (a single Dense to the logits, the fine-tuned CLIP baseline).
        dropout: float. Dropout before the output layer. Defaults to 0.
        linear_path: bool. Add the linear path `s·Wx` (starts at zero, `s`
            at 1). Defaults to False.

    Example:
    ```python
    logits = MLPHead(num_classes=5, hidden_dim=16)(np.ones((2, 8)))
    ```
    """

    def __init__(self, num_classes, hidden_dim, dropout=0.0, linear_path=False,
                 **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.num_classes = num_classes
        self.hidden_dim = hidden_dim
        self.dropout = dropout
        self.linear_path = bool(linear_path)
        # === Layers ===
        self.hidden = None
        if hidden_dim:
            self.hidden = keras.layers.Dense(
                hidden_dim, activation="gelu", dtype=self.dtype_policy,
                name="hidden",
            )
        self.hidden_dropout = keras.layers.Dropout(
            dropout, dtype=self.dtype_policy, name="dropout"
        )
        # Logits stay float32 under mixed precision.
        self.logits = keras.layers.Dense(
            num_classes, dtype="float32", name="logits"
        )
        self.linear = None
        if self.linear_path:
            self.linear = keras.layers.Dense(
                num_classes, use_bias=False, kernel_initializer="zeros",
                dtype="float32", name="linear",
            )

    def build(self, input_shape):
        if self.linear is not None:
            self.linear.build(input_shape)
            self.linear_scale = self.add_weight(
                name="linear_scale", shape=(), initializer="ones",
                trainable=False, autocast=False,
            )
        if self.hidden is not None:
            self.hidden.build(input_shape)
            input_shape = (input_shape[0], self.hidden_dim)
        self.logits.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        x = inputs
        if self.linear is not None:
            x = x * math.sqrt(inputs.shape[-1])  # Unit vectors to unit entries.
        if self.hidden is not None:
            x = self.hidden(x)
        x = self.hidden_dropout(x, training=training)
        logits = self.logits(x)
        if self.linear is not None:
            logits = logits + self.linear_scale * self.linear(inputs)
        return logits

    def initialize_zero_shot(self, kernel, scale=1.0):
        """Starts the head as the linear classifier `scale · kernel`.

        `W = kernel` `[dim, classes]`, `s = scale`, and the output layer is
        zeroed (its gradients still flow from the first step).
        """
        if self.linear is None:
            raise ValueError("initialize_zero_shot needs linear_path=True.")
        self.linear.kernel.assign(ops.cast(kernel, self.linear.kernel.dtype))
        self.linear_scale.assign(float(scale))
        self.logits.kernel.assign(ops.zeros_like(self.logits.kernel))
        self.logits.bias.assign(ops.zeros_like(self.logits.bias))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "hidden_dim": self.hidden_dim,
                "dropout": self.dropout,
                "linear_path": self.linear_path,
            }
        )
        return config
