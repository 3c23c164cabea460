"""Zero-shot CLIP: the paper's "Raw CLIP" baseline (Table 2), no training.

Each class of each task becomes a prompt ("a photo of a {label}"); an image is
classified by the cosine similarity of its CLIP embedding to the prompts'
embeddings, scaled by CLIP's learned temperature. Outputs follow `CMACLIP`'s
(`{task}_logits`, `{task}_image_weight`, the latter 1.0: image only).
"""

import keras
import numpy as np
from keras import ops

from cmaclip_tf.layers import l2_normalize
from cmaclip_tf.models.clip_components import deserialize_clip_backbone

DEFAULT_PROMPT = "a photo of a {label}"


@keras.saving.register_keras_serializable(package="cmaclip_tf")
class ZeroShotCLIP(keras.Model):
    """Classifies images by similarity to class prompts.

    Args:
        clip_backbone: `keras_hub.models.CLIPBackbone`.
        prompt_token_ids: dict of task to int array `[num_classes, length]`,
            the packed prompts (start, tokens, end-of-text, padding).

    Example:
    ```python
    ids = {"color": preprocessor(["a photo of a red product", ...])["token_ids"]}
    model = ZeroShotCLIP(clip.backbone, ids)
    model({"images": images})["color_logits"]
    ```
    """

    def __init__(self, clip_backbone, prompt_token_ids, **kwargs):
        super().__init__(**kwargs)
        self.clip_backbone = clip_backbone
        self.prompt_token_ids = {
            task: np.asarray(ids, "int32") for task, ids in prompt_token_ids.items()
        }
        self.tasks = {task: len(ids) for task, ids in self.prompt_token_ids.items()}
        self.class_embeddings = {}
        for task, ids in self.prompt_token_ids.items():
            embeddings = l2_normalize(clip_backbone.get_text_embeddings(ids))
            self.class_embeddings[task] = self.add_weight(
                name=f"{task}_class_embeddings",
                shape=tuple(embeddings.shape),
                initializer=keras.initializers.Constant(
                    keras.ops.convert_to_numpy(embeddings)
                ),
                trainable=False,
            )
        self.built = True

    def call(self, inputs, training=None):
        image = l2_normalize(self.clip_backbone.get_vision_embeddings(inputs["images"]))
        scale = ops.exp(self.clip_backbone.clip_head.logit_scale)
        batch = ops.shape(image)[0]
        outputs = {}
        for task in self.tasks:
            logits = scale * ops.matmul(
                image, ops.transpose(self.class_embeddings[task])
            )
            outputs[f"{task}_logits"] = ops.cast(logits, "float32")
            outputs[f"{task}_image_weight"] = ops.ones((batch,), "float32")
        return outputs

    def module_groups(self):
        return {"clip": [], "fusion": [], "modality_attention": [], "heads": []}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "clip_backbone": keras.layers.serialize(self.clip_backbone),
                "prompt_token_ids": {
                    t: ids.tolist() for t, ids in self.prompt_token_ids.items()
                },
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**deserialize_clip_backbone(config, custom_objects))


def class_prompts(class_names, template=DEFAULT_PROMPT):
    """The prompt of each class name, e.g. `"a photo of a red"`."""
    return [template.format(label=name.replace("_", " ")) for name in class_names]
