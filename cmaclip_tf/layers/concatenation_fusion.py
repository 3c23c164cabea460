"""The concatenation of the two modalities: the fine-tuned CLIP baseline's fusion."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="cmaclip_tf")
class ConcatenationFusion(keras.layers.Layer):
    """Concatenates image and text embeddings: `[I; T]`.

    The fine-tuned CLIP baseline's input to its linear heads. It weighs no
    modality; λ is reported as a constant 0.5 to keep the outputs uniform.

    Example:
    ```python
    fused, image_weight = ConcatenationFusion()(np.ones((2, 8)), np.zeros((2, 4)))
    fused.shape  # (2, 12)
    ```
    """

    def build(self, image_embedding_shape, text_embedding_shape=None):
        self.built = True

    def call(self, image_embedding, text_embedding):
        fused = ops.concatenate([image_embedding, text_embedding], axis=-1)
        image_weight = ops.full((ops.shape(image_embedding)[0],), 0.5)
        return fused, image_weight

    def compute_output_shape(
        self, image_embedding_shape, text_embedding_shape=None
    ):
        width = image_embedding_shape[-1] + text_embedding_shape[-1]
        return (image_embedding_shape[0], width), (image_embedding_shape[0],)
