"""Sequence-wise attention over image patches and text tokens (section 3.2.1)."""

import keras
import keras_hub
from keras import ops

from cmaclip_tf.layers.end_of_text import end_of_text_embedding

OUTPUT_NORMS = {
    "layer": keras.layers.LayerNormalization,
    "rms": keras.layers.RMSNormalization,
}


@keras.saving.register_keras_serializable(package="cmaclip_tf")
class SequenceWiseAttention(keras.layers.Layer):
    """A Transformer encoder over the concatenated patch and token sequences.

    The image patch sequence (vision width, [CLS] first) and the text token
    sequence (text width) are projected to one fusion width, concatenated image
    first and passed through `num_layers` pre-LayerNorm
    `keras_hub.layers.TransformerEncoder` blocks and a final LayerNorm. Text
    pad positions are masked as keys, so they never influence any output.

    Args:
        num_layers: int. Number of Transformer blocks. Defaults to 12.
        hidden_dim: int. The fusion width. Defaults to 512.
        num_heads: int. Attention heads per block. Defaults to 8.
        intermediate_dim: int. Feed-forward width. Defaults to
            `4 * hidden_dim`.
        dropout: float. Dropout in attention and feed-forward. Defaults to 0.1.
        activation: string. Feed-forward activation. Defaults to `"gelu"`.
        layer_norm_epsilon: float. Defaults to 1e-5.
        output_norm: `"layer"` (LayerNorm, the default) or `"rms"` (RMS
            normalization: no centring, so a token's direction passes
            unchanged while the scale is 1, what a fusion that starts as the
            identity on CLIP's embeddings needs).

    Call arguments:
        image_sequence: float `[batch, num_patches + 1, vision_width]`.
        text_sequence: float `[batch, text_length, text_width]`.
        padding_mask: bool `[batch, text_length]`, true on real tokens (start,
            text, end-of-text), false on padding.
        return_attention_scores: bool. Also return the attention
            probabilities of block `attention_layer_index`.
        attention_layer_index: int. Which block's attention to return;
            negative counts from the end. Defaults to -1 (the last).

    Returns:
        `(image_embedding, text_embedding)`: I' (the output at the image [CLS]
        position) and T' (the output at the end-of-text position, the last
        true position of `padding_mask`, which is where CLIP pools), each
        `[batch, hidden_dim]`; plus, when asked, the attention probabilities
        `[batch, num_heads, length, length]` with length = patches + 1 + text.

    Example:
    ```python
    layer = SequenceWiseAttention(num_layers=2, hidden_dim=64, num_heads=4)
    image_embedding, text_embedding = layer(
        np.random.rand(2, 17, 96), np.random.rand(2, 8, 48),
        np.array([[1] * 5 + [0] * 3, [1] * 8], bool),
    )
    ```
    """

    def __init__(
        self,
        num_layers=12,
        hidden_dim=512,
        num_heads=8,
        intermediate_dim=None,
        dropout=0.1,
        activation="gelu",
        layer_norm_epsilon=1e-5,
        output_norm="layer",
        **kwargs,
    ):
        if output_norm not in OUTPUT_NORMS:
            raise ValueError(f"output_norm must be one of {OUTPUT_NORMS}; "
                             f"got {output_norm!r}.")
        super().__init__(**kwargs)
        # === Config ===
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim or 4 * hidden_dim
        self.dropout = dropout
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.output_norm = output_norm

        # === Layers ===
        self.image_projection = keras.layers.Dense(
            hidden_dim, use_bias=False, dtype=self.dtype_policy,
            name="image_projection",
        )
        self.text_projection = keras.layers.Dense(
            hidden_dim, use_bias=False, dtype=self.dtype_policy,
            name="text_projection",
        )
        self.encoder_layers = [
            keras_hub.layers.TransformerEncoder(
                intermediate_dim=self.intermediate_dim,
                num_heads=num_heads,
                dropout=dropout,
                activation=activation,
                layer_norm_epsilon=layer_norm_epsilon,
                normalize_first=True,
                dtype=self.dtype_policy,
                name=f"transformer_layer_{i}",
            )
            for i in range(num_layers)
        ]
        norm = OUTPUT_NORMS[output_norm]
        self.output_layer_norm = norm(
            epsilon=layer_norm_epsilon, dtype=self.dtype_policy,
            name="output_layer_norm",
        )

    def build(
        self,
        image_sequence_shape,
        text_sequence_shape=None,
        padding_mask_shape=None,
    ):
        self.image_projection.build(image_sequence_shape)
        self.text_projection.build(text_sequence_shape)
        sequence_shape = (image_sequence_shape[0], None, self.hidden_dim)
        for layer in self.encoder_layers:
            layer.build(sequence_shape)
        self.output_layer_norm.build(sequence_shape)
        self.built = True

    def initialize_projections(self, image_kernel, text_kernel):
        """Starts the input projections from CLIP's own projection matrices.

        Only shapes that match are copied; returns the names copied.
        """
        copied = []
        for layer, kernel in (
            (self.image_projection, image_kernel),
            (self.text_projection, text_kernel),
        ):
            if kernel is not None and tuple(kernel.shape) == tuple(
                layer.kernel.shape
            ):
                layer.kernel.assign(kernel)
                copied.append(layer.name)
        return copied

    def start_as_identity(self):
        """Zeroes every block's residual branch (the attention output and the
        feed-forward output projections, kernels and biases).

        Each pre-LayerNorm block then passes its input through unchanged, so
        the layer starts as its input projections and output norm: with
        CLIP's projections and `output_norm="rms"`, I' and T' point where
        CLIP's own image and text embeddings do. Gradients reach every weight
        from the first step on through the zeroed projections (as a
        zero-initialized LayerScale would).
        """
        for block in self.encoder_layers:
            for dense in (block._self_attention_layer._output_dense,
                          block._feedforward_output_dense):
                for weight in dense.weights:
                    weight.assign(ops.zeros_like(weight))

    def call(
        self,
        image_sequence,
        text_sequence,
        padding_mask,
        training=None,
        return_attention_scores=False,
        attention_layer_index=-1,
    ):
        image_tokens = self.image_projection(image_sequence)
        text_tokens = self.text_projection(text_sequence)
        x = ops.concatenate([image_tokens, text_tokens], axis=1)
        padding_mask = ops.cast(padding_mask, "bool")
        image_mask = ops.ones(ops.shape(image_tokens)[:2], dtype="bool")
        mask = ops.concatenate([image_mask, padding_mask], axis=1)

        wanted = attention_layer_index % self.num_layers
        scores = None
        for i, layer in enumerate(self.encoder_layers):
            if return_attention_scores and i == wanted:
                x, scores = layer(
                    x, padding_mask=mask, training=training,
                    return_attention_scores=True,
                )
            else:
                x = layer(x, padding_mask=mask, training=training)
        x = self.output_layer_norm(x)

        num_image_tokens = ops.shape(image_tokens)[1]
        image_embedding = x[:, 0, :]  # The image [CLS] position.
        text_embedding = end_of_text_embedding(
            x[:, num_image_tokens:, :], padding_mask
        )
        if return_attention_scores:
            return image_embedding, text_embedding, scores
        return image_embedding, text_embedding

    def compute_output_shape(
        self,
        image_sequence_shape,
        text_sequence_shape=None,
        padding_mask_shape=None,
    ):
        shape = (image_sequence_shape[0], self.hidden_dim)
        return shape, shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_layers": self.num_layers,
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "activation": self.activation,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "output_norm": self.output_norm,
            }
        )
        return config
