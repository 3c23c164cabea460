"""Loads CLIP's encoders, tokenizer and image converter from a keras-hub preset.

One code path for every source: a keras-hub preset name
(`clip_vit_base_patch32`, downloaded by keras-hub when online), a local preset
folder (`config.json`, `model.weights.h5`, `tokenizer.json`, `assets/`), or
the project's generated `tiny_clip`, which is written to a local folder first
and then loaded like any other.
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
from cmaclip_tf.models.dtype_policy import with_dtype_policy

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


# Presets shipped inside the package, by name: folders next to this file.
PACKAGED_PRESETS_DIR = os.path.join(os.path.dirname(__file__), "presets")
PACKAGED_PRESETS = ("tiny_clip_pretrained",)
# What a preset trained by the project records about its training.
TRAINING_FILE = "training.json"


def resolve_preset(preset):
    """Maps the project's preset names to their local folders.

    `tiny_clip` (random) is generated on first use; `tiny_clip_pretrained`
    ships with the package. Other names and folders pass through.
    """
    from cmaclip_tf.models import tiny_clip  # Avoids an import cycle.

    if preset == tiny_clip.TINY_CLIP_PRESET:
        return tiny_clip.tiny_clip_preset_dir()
    if preset in PACKAGED_PRESETS:
        return os.path.join(PACKAGED_PRESETS_DIR, preset)
    return preset


def load_clip(preset, load_weights=True, dtype=None):
    """Loads CLIP from a keras-hub preset name or a local preset folder.

    Args:
        preset: string. A keras-hub preset name (`clip_vit_base_patch32`), a
            local preset folder (what `save_clip_preset` and
            `trainers/pretrain.py` write), `tiny_clip` (random) or
            `tiny_clip_pretrained`.
        load_weights: bool. False builds the architecture with random weights.
        dtype: optional dtype policy name; default: the global policy
            (`keras.mixed_precision.set_global_policy`). Every layer of both
            encoders computes in it, whatever the preset's `config.json`
            pinned (its nested encoders' `float32`); variables stay float32.

    Returns:
        `CLIPComponents` with the backbone (vision and text encoders and their
        projections), the tokenizer and the image converter. The text
        encoder's LayerNorm epsilon is CLIP's 1e-5; the attention
        projections are 2-D matmuls (`use_matmul_projections`).
    """
    path = resolve_preset(preset)
    backbone = keras_hub.models.CLIPBackbone.from_preset(
        path, load_weights=load_weights
    )
    backbone = with_dtype_policy(backbone, dtype or keras.config.dtype_policy())
    set_text_layer_norm_epsilon(backbone.text_encoder)
    use_matmul_projections(backbone)
    tokenizer = keras_hub.models.CLIPTokenizer.from_preset(path)
    image_converter = keras_hub.layers.CLIPImageConverter.from_preset(path)
    return CLIPComponents(backbone, tokenizer, image_converter, str(preset))


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
