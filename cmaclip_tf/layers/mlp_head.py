"""The per-task MLP classification head (section 3.2.3)."""

import keras


@keras.saving.register_keras_serializable(package="cmaclip_tf")
class MLPHead(keras.layers.Layer):
    """Dense -> GELU -> dropout -> Dense to class logits (float32).

    Args:
        num_classes: int. Number of classes of the task.
        hidden_dim: int. Width of the hidden layer; 0 makes the head linear
            (a single Dense to the logits, the fine-tuned CLIP baseline).
        dropout: float. Dropout before the output layer. Defaults to 0.

    Example:
    ```python
    logits = MLPHead(num_classes=5, hidden_dim=16)(np.ones((2, 8)))
    ```
    """

    def __init__(self, num_classes, hidden_dim, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.num_classes = num_classes
        self.hidden_dim = hidden_dim
        self.dropout = dropout
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

    def build(self, input_shape):
        if self.hidden is not None:
            self.hidden.build(input_shape)
            input_shape = (input_shape[0], self.hidden_dim)
        self.logits.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        x = inputs
        if self.hidden is not None:
            x = self.hidden(x)
        x = self.hidden_dropout(x, training=training)
        return self.logits(x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "hidden_dim": self.hidden_dim,
                "dropout": self.dropout,
            }
        )
        return config
