"""Loads CLIP's encoders, tokenizer and image converter from a keras-hub preset.

One code path for every source: a keras-hub preset name
(`clip_vit_base_patch32`, downloaded by keras-hub when online), a local preset
folder (`config.json`, `model.weights.h5`, `tokenizer.json`, `assets/`), or
the project's generated `tiny_clip`, which is written to a local folder first
and then loaded like any other.
"""

import os

import keras
import keras_hub

from cmaclip_tf.layers.matmul_einsum_dense import use_matmul_projections
from cmaclip_tf.models import tiny_clip
from cmaclip_tf.models.clip_components import CLIPComponents
from cmaclip_tf.models.clip_components import set_text_layer_norm_epsilon
from cmaclip_tf.models.dtype_policy import with_dtype_policy

# Presets shipped inside the package, by name: folders next to this file.
PACKAGED_PRESETS_DIR = os.path.join(os.path.dirname(__file__), "presets")
PACKAGED_PRESETS = ("tiny_clip_pretrained",)


def resolve_preset(preset):
    """Maps the project's preset names to their local folders.

    `tiny_clip` (random) is generated on first use; `tiny_clip_pretrained`
    ships with the package. Other names and folders pass through.
    """
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
