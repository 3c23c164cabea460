"""Reads a Hugging Face CLIP `config.json` and maps it to keras-hub's CLIP."""

import json
import math
import os

CONFIG_FILE = "config.json"

# `CLIPTextConfig` / `CLIPVisionConfig` defaults: `save_pretrained` may leave
# out values equal to them.
HF_TEXT_DEFAULTS = {
    "vocab_size": 49408,
    "hidden_size": 512,
    "intermediate_size": 2048,
    "num_hidden_layers": 12,
    "num_attention_heads": 8,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
HF_VISION_DEFAULTS = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "num_channels": 3,
    "image_size": 224,
    "patch_size": 32,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
HF_PROJECTION_DIM_DEFAULT = 512
# HF `hidden_act` -> keras-hub `intermediate_activation`. Keras' "gelu" is
# the exact (erf) GELU, as is HF's "gelu".
ACTIVATIONS = {"quick_gelu": "quick_gelu", "gelu": "gelu"}
# keras-hub hard-codes every CLIP LayerNorm epsilon to CLIP's 1e-5.
LAYER_NORM_EPSILON = 1e-5


def read_hf_config(checkpoint_dir):
    """Reads and checks `config.json` of a Hugging Face `CLIPModel`.

    Returns:
        The config dict with complete `text_config` and `vision_config`
        (Hugging Face's defaults filled in) and a top-level `projection_dim`.

    Raises:
        FileNotFoundError: `checkpoint_dir` or its `config.json` is missing.
        ValueError: the checkpoint is not a two-tower CLIP, or uses something
            keras-hub's CLIP cannot express.
    """
    path = require_file(checkpoint_dir, CONFIG_FILE)
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    model_type = config.get("model_type")
    if model_type in ("clip_text_model", "clip_vision_model"):
        raise ValueError(
            f"{path} is a single CLIP tower (model_type {model_type!r}); "
            "convert_hf needs a full CLIPModel checkpoint with both towers "
            "and their projections."
        )
    if model_type != "clip":
        hint = ""
        if model_type == "metaclip_2":
            hint = (
                " keras-hub converts MetaCLIP 2 itself: "
                "keras_hub.models.MetaCLIP2Backbone.from_preset('hf://...')."
            )
        raise ValueError(
            f"{path} is not a CLIP checkpoint: model_type is {model_type!r}, "
            f"expected 'clip' (a transformers CLIPModel).{hint}"
        )
    text = dict(HF_TEXT_DEFAULTS)
    text.update(
        config.get("text_config") or config.get("text_config_dict") or {}
    )
    vision = dict(HF_VISION_DEFAULTS)
    vision.update(
        config.get("vision_config") or config.get("vision_config_dict") or {}
    )
    for name, tower in (("text_config", text), ("vision_config", vision)):
        if tower["layer_norm_eps"] is None:
            tower["layer_norm_eps"] = LAYER_NORM_EPSILON
        if tower["hidden_act"] not in ACTIVATIONS:
            raise ValueError(
                f"{path}: {name}.hidden_act is {tower['hidden_act']!r}; "
                f"keras-hub's CLIP supports {sorted(ACTIVATIONS)}."
            )
        if not math.isclose(
            tower["layer_norm_eps"], LAYER_NORM_EPSILON, rel_tol=1e-6
        ):
            raise ValueError(
                f"{path}: {name}.layer_norm_eps is {tower['layer_norm_eps']}; "
                f"keras-hub's CLIP hard-codes {LAYER_NORM_EPSILON}, so the "
                "converted model would not match."
            )
    vision["image_size"] = _square(vision["image_size"], "image_size", path)
    vision["patch_size"] = _square(vision["patch_size"], "patch_size", path)
    if vision["num_channels"] != 3:
        raise ValueError(
            f"{path}: vision_config.num_channels is {vision['num_channels']}; "
            "only RGB (3) is supported."
        )
    config["text_config"] = text
    config["vision_config"] = vision
    # The top-level value is the one CLIPModel uses; the towers' own
    # `projection_dim` entries are unused defaults.
    config["projection_dim"] = (
        config.get("projection_dim") or HF_PROJECTION_DIM_DEFAULT
    )
    return config


def clip_architecture(hf_config):
    """Maps a Hugging Face CLIP config to the project's `clip_architecture`.

    The same dict a model config's `clip_architecture` entry holds, as
    `build_clip_backbone` takes it.
    """
    text = hf_config["text_config"]
    vision = hf_config["vision_config"]
    return {
        "vision": {
            "patch_size": vision["patch_size"],
            "hidden_dim": vision["hidden_size"],
            "num_layers": vision["num_hidden_layers"],
            "num_heads": vision["num_attention_heads"],
            "intermediate_dim": vision["intermediate_size"],
            "intermediate_activation": ACTIVATIONS[vision["hidden_act"]],
            "image_size": vision["image_size"],
        },
        "text": {
            "vocabulary_size": text["vocab_size"],
            "embedding_dim": text["hidden_size"],
            "hidden_dim": text["hidden_size"],
            "num_layers": text["num_hidden_layers"],
            "num_heads": text["num_attention_heads"],
            "intermediate_dim": text["intermediate_size"],
            "intermediate_activation": ACTIVATIONS[text["hidden_act"]],
            "max_sequence_length": text["max_position_embeddings"],
        },
        "projection_dim": hf_config["projection_dim"],
    }


def _square(value, name, path):
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(
                f"{path}: vision_config.{name} is {value}; keras-hub's CLIP "
                "needs square images and patches."
            )
        value = value[0]
    return int(value)


def require_file(directory, name):
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"Checkpoint folder {directory} not found; pass the folder "
            "CLIPModel.save_pretrained wrote."
        )
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{name} not found in {directory}; a Hugging Face CLIP checkpoint "
            "is the folder CLIPModel.save_pretrained writes (config.json, "
            "model.safetensors) with the tokenizer's files beside it."
        )
    return path
