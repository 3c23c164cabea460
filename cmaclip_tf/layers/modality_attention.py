"""Keyless modality-wise attention (paper section 3.2.2, eq. 3-6)."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="cmaclip_tf")
class ModalityAttention(keras.layers.Layer):
    """Weighs the image and text embeddings of one task by their relevance.

    A single learnable vector `w` scores each modality, `e_I = wᵀI'` and
    `e_T = wᵀT'` (eq. 4-5); `λ = softmax(e_I, e_T)[0]` (eq. 6) and the fused
    embedding is `c = λ·I' + (1 - λ)·T'` (eq. 3). `w` starts at zero, so a new
    layer averages the two modalities (λ = 0.5) until training moves it.

    Under mixed precision, eq. 4-6 run in float32 (the embeddings are cast
    up, `w` is never cast down): bfloat16 dot products over 512 dimensions
    move λ by up to 0.007. Eq. 3 runs in the compute dtype.

    With `use_bias=True` a learned scalar `b` is added to the image score,
    `e_I = wᵀI' + b` (a departure from the paper, which has no bias): with
    `w = 0` it sets λ = sigmoid(b) for every example, so a model can start
    from an image-leaning or text-leaning mix (`set_image_weight`) and still
    learn per-example weights through `w`.

    Args:
        kernel_initializer: string or initializer for `w`. Defaults to
            `"zeros"`.
        use_bias: bool. Add the image-score bias `b` (starts at 0, λ = 0.5).
            Defaults to False (the paper's eq. 4-6).

    Call arguments:
        image_embedding: float tensor `[batch, dim]`, I'.
        text_embedding: float tensor `[batch, dim]`, T'.

    Returns:
        `(fused, image_weight)`: `c` of shape `[batch, dim]` and λ of shape
        `[batch]`.

    Example:
    ```python
    layer = ModalityAttention()
    fused, image_weight = layer(np.ones((2, 8)), np.zeros((2, 8)))
    ```
    """

    def __init__(self, kernel_initializer="zeros", use_bias=False, **kwargs):
        super().__init__(**kwargs)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.use_bias = use_bias

    def build(self, image_embedding_shape, text_embedding_shape=None):
        self.kernel = self.add_weight(
            name="kernel",
            shape=(image_embedding_shape[-1],),
            initializer=self.kernel_initializer,
            trainable=True,
            autocast=False,  # Scores in float32, see the class docstring.
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(), initializer="zeros", trainable=True,
                autocast=False,
            )
        self.built = True

    def set_image_weight(self, image_weight):
        """Sets `b` so that λ = `image_weight` while `w` is zero."""
        if self.bias is None:
            raise ValueError("set_image_weight needs use_bias=True.")
        if not 0.0 < image_weight < 1.0:
            raise ValueError(f"image_weight must be in (0, 1); got {image_weight}.")
        self.bias.assign(math.log(image_weight / (1.0 - image_weight)))

    def call(self, image_embedding, text_embedding):
        kernel = ops.cast(self.kernel, "float32")
        image_score = ops.sum(ops.cast(image_embedding, "float32") * kernel, -1)  # eq. (4)
        if self.bias is not None:
            image_score = image_score + ops.cast(self.bias, "float32")
        text_score = ops.sum(ops.cast(text_embedding, "float32") * kernel, -1)  # eq. (5)
        scores = ops.stack([image_score, text_score], axis=-1)
        image_weight = ops.softmax(scores, axis=-1)[:, 0]  # eq. (6)
        weight = ops.cast(image_weight, image_embedding.dtype)[:, None]
        fused = weight * image_embedding + (1.0 - weight) * text_embedding
        return fused, image_weight  # eq. (3)

    def compute_output_shape(
        self, image_embedding_shape, text_embedding_shape=None
    ):
        return tuple(image_embedding_shape), (image_embedding_shape[0],)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "use_bias": self.use_bias,
            }
        )
        return config
