"""CLIP's parts as one object, built from an architecture or written as a
keras-hub preset folder.

`CLIPComponents` is what a preset holds (backbone, tokenizer, image
converter); `build_clip_backbone` makes a random backbone from a model
config's `clip_architecture`; `save_clip_preset` writes the folder that
`clip_loader.load_clip` reads.
"""

import dataclasses
import json
import os
import shutil
import tempfile

import keras
import keras_hub
import numpy as np

from cmaclip_tf.layers.matmul_einsum_dense import use_matmul_projections

# keras-hub's CLIPTextEncoder hard-codes 1e-6 for its final LayerNorm and does
# not serialize it; CLIP (and every released checkpoint) uses 1e-5.
CLIP_TEXT_LAYER_NORM_EPSILON = 1e-5
CLIP_VOCABULARY_SIZE = 49408


@dataclasses.dataclass
class CLIPComponents:
    """What `load_clip` returns."""

    backbone: keras_hub.models.CLIPBackbone
    tokenizer: keras_hub.models.CLIPTokenizer
    image_converter: keras_hub.layers.CLIPImageConverter
    preset: str

    @property
    def vision_encoder(self):
        return self.backbone.vision_encoder

    @property
    def text_encoder(self):
        return self.backbone.text_encoder


def set_text_layer_norm_epsilon(text_encoder, epsilon=CLIP_TEXT_LAYER_NORM_EPSILON):
    """Sets the text encoder's final LayerNorm epsilon (read at call time)."""
    text_encoder.layer_norm.epsilon = epsilon
    return text_encoder


def deserialize_clip_backbone(config, custom_objects=None):
    """A copy of a model's config with its `clip_backbone` rebuilt (for `from_config`).

    Example:
    ```python
    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**deserialize_clip_backbone(config, custom_objects))
    ```
    """
    config = dict(config)
    config["clip_backbone"] = keras.layers.deserialize(
        config["clip_backbone"], custom_objects=custom_objects
    )
    return config


# What a preset trained by the project records about its training.
TRAINING_FILE = "training.json"


def save_clip_preset(clip, preset_dir, training=None, replace=True):
    """Writes CLIP as a keras-hub preset folder that `load_clip` reads.

    The folder (`config.json`, `model.weights.h5`, `tokenizer.json`,
    `image_converter.json`, `assets/`) is written to a staging folder beside
    `preset_dir` and renamed into place, so a reader never sees half of it.

    Args:
        clip: `CLIPComponents` (backbone, tokenizer, image converter).
        preset_dir: the folder to write.
        training: optional JSON-able dict saved as `training.json` (how the
            weights were trained: the command, the data, the recall).
        replace: replace an existing preset; with False, an existing one
            (written by another process meanwhile) stands.

    Returns:
        `preset_dir`.

    Example:
    ```python
    save_clip_preset(load_clip("tiny_clip"), "my_preset")
    load_clip("my_preset")
    ```
    """
    parent = os.path.dirname(os.path.abspath(preset_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=".clip_preset_")
    os.chmod(staging, 0o755)  # mkdtemp's 0700 would keep others out.
    old = None
    try:
        clip.backbone.save_to_preset(staging)
        clip.tokenizer.save_to_preset(staging)
        clip.image_converter.save_to_preset(staging)
        if training is not None:
            with open(os.path.join(staging, TRAINING_FILE), "w") as f:
                json.dump(training, f, indent=2, sort_keys=True)
                f.write("\n")
        if os.path.isdir(preset_dir) and replace:
            old = tempfile.mkdtemp(dir=parent, prefix=".clip_preset_old_")
            os.rename(preset_dir, os.path.join(old, "preset"))
        try:
            os.rename(staging, preset_dir)
        except OSError:
            # Another process finished first; its preset stands.
            if not os.path.isfile(os.path.join(preset_dir, "config.json")):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return preset_dir


def build_clip_backbone(architecture, vocabulary_size=None, dtype=None):
    """Builds a randomly initialized CLIP backbone from an architecture dict.

    `architecture` is a model config's `clip_architecture` entry. The vision
    position ids, a non-trainable weight keras-hub initializes to zeros and
    expects checkpoints to fill in, are set to `0..num_positions-1`.
    """
    vision = dict(architecture["vision"])
    text = dict(architecture["text"])
    image_size = vision.pop("image_size")
    if vocabulary_size is not None:
        text["vocabulary_size"] = vocabulary_size
    text.setdefault("vocabulary_size", CLIP_VOCABULARY_SIZE)
    vision_encoder = keras_hub.models.CLIPVisionEncoder(
        image_shape=(image_size, image_size, 3), dtype=dtype, **vision
    )
    text_encoder = keras_hub.models.CLIPTextEncoder(dtype=dtype, **text)
    set_text_layer_norm_epsilon(text_encoder)
    backbone = keras_hub.models.CLIPBackbone(
        vision_encoder=vision_encoder,
        text_encoder=text_encoder,
        projection_dim=architecture["projection_dim"],
        dtype=dtype,
    )
    set_vision_position_ids(vision_encoder)
    use_matmul_projections(backbone)
    return backbone


def set_vision_position_ids(vision_encoder):
    """Fills the vision embedding's position ids with `0..n-1`."""
    position_ids = vision_encoder.embedding.position_ids
    position_ids.assign(
        np.arange(position_ids.shape[-1], dtype="int32")[None, :]
    )
