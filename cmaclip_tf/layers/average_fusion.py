"""The fixed average of the two modalities, for the ablations."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="cmaclip_tf")
class AverageFusion(keras.layers.Layer):
    """Fuses image and text embeddings as `0.5·I' + 0.5·T'`.

    Stands in for `ModalityAttention` in the ablations, with the same call
    signature and outputs, so λ is reported as a constant 0.5.

    Example:
    ```python
    fused, image_weight = AverageFusion()(np.ones((2, 8)), np.zeros((2, 8)))
    ```
    """

    def build(self, image_embedding_shape, text_embedding_shape=None):
        self.built = True

    def call(self, image_embedding, text_embedding):
        fused = 0.5 * (image_embedding + text_embedding)
        image_weight = ops.full((ops.shape(image_embedding)[0],), 0.5)
        return fused, image_weight

    def compute_output_shape(
        self, image_embedding_shape, text_embedding_shape=None
    ):
        return tuple(image_embedding_shape), (image_embedding_shape[0],)
