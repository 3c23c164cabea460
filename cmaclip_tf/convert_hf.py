"""Converts a Hugging Face CLIP checkpoint into a keras-hub CLIP preset.

    python -m cmaclip_tf.convert_hf --checkpoint DIR --output PRESET_DIR

`DIR` holds what `CLIPModel.save_pretrained` and the tokenizer's and image
processor's `save_pretrained` write: `config.json`, `model.safetensors` (or
its shards and `model.safetensors.index.json`), `vocab.json` + `merges.txt`
or `tokenizer.json`, and optionally `preprocessor_config.json`. Weights are
read with `safetensors` and numpy; torch is not needed. `PRESET_DIR` becomes
an ordinary keras-hub preset folder: `load_clip(PRESET_DIR)` or
`--clip-preset PRESET_DIR` anywhere in the project.

keras-hub 0.32 converts many Hugging Face models on the fly, but not CLIP
(`keras_hub/src/utils/transformers/` has MetaCLIP 2, a different backbone
class); the weight mapping here follows its `convert_metaclip_2.py`.

Where the two implementations differ, and how this bridges them:
- Linear weights are (out, in) in torch; keras Dense kernels are (in, out)
  and MultiHeadAttention's are (in, heads, head_dim) and (heads, head_dim,
  out). The patch Conv2D goes from (out, in, kh, kw) to (kh, kw, in, out).
- keras-hub keeps the vision position ids as a weight that starts at zeros;
  Hugging Face does not store them (non-persistent buffer). They are set to
  `0..n-1` and saved with the preset.
- Hugging Face spells the vision pre-LayerNorm `pre_layrnorm`.
- float16 and bfloat16 checkpoints are converted to float32.
- keras-hub's text encoder hard-codes 1e-6 for its final LayerNorm and does
  not serialize it; `load_clip` re-applies CLIP's 1e-5 on every load.
- keras-hub pools text at `argmax(token_ids)`, so `<|endoftext|>` must have
  the highest id in the vocabulary (true of every released CLIP); checked.

What "numeric parity" compares (`tests/test_convert_hf.py`):
- keras-hub's vision encoder applies its last LayerNorm (HF `post_layernorm`)
  to every token; Hugging Face applies it to the pooled class token only and
  returns `last_hidden_state` before it. keras-hub's vision sequence output
  equals `post_layernorm(last_hidden_state)`; its row 0 equals HF's
  `pooler_output`.
- keras-hub's text encoder is causal with no padding mask. It matches HF run
  without `attention_mask` at every position, and HF run with one at every
  position up to the end token (all that pooling reads).
- The image converter center-crops the largest square and resizes it once;
  HF resizes the shortest edge then center-crops. Same region, slightly
  different resampling; identical for images already at the model's size.
"""

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile

import keras_hub
import numpy as np

from cmaclip_tf.models.clip_loader import build_clip_backbone
from cmaclip_tf.models.tiny_clip import CLIP_MEAN
from cmaclip_tf.models.tiny_clip import CLIP_STD

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
VOCABULARY_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
TOKENIZER_FILE = "tokenizer.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"

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
# PIL resampling codes in `preprocessor_config.json` -> keras interpolation.
RESAMPLING = {0: "nearest", 1: "lanczos3", 2: "bilinear", 3: "bicubic"}
# Buffers older `transformers` saved; keras-hub's are set, not loaded.
IGNORED_TENSORS = (
    "text_model.embeddings.position_ids",
    "vision_model.embeddings.position_ids",
)


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
    path = _require_file(checkpoint_dir, CONFIG_FILE)
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


def read_safetensors(checkpoint_dir):
    """Reads every tensor of a (possibly sharded) safetensors checkpoint.

    Returns:
        dict of name to numpy array, in the checkpoint's dtype (bfloat16
        comes back as `ml_dtypes.bfloat16`).
    """
    from safetensors import safe_open

    index_path = os.path.join(checkpoint_dir, WEIGHTS_INDEX_FILE)
    if os.path.isfile(index_path):
        with open(index_path, encoding="utf-8") as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    elif os.path.isfile(os.path.join(checkpoint_dir, WEIGHTS_FILE)):
        files = [WEIGHTS_FILE]
    else:
        found = sorted(
            name
            for name in os.listdir(checkpoint_dir)
            if name.endswith((".bin", ".h5", ".msgpack", ".pt", ".pth"))
        )
        hint = ""
        if found:
            hint = (
                f" It holds {', '.join(found)}, which need torch or another "
                "framework to read; re-save it where transformers and torch "
                "are installed with CLIPModel.from_pretrained(DIR)"
                ".save_pretrained(DIR, safe_serialization=True)."
            )
        raise FileNotFoundError(
            f"Neither {WEIGHTS_FILE} nor {WEIGHTS_INDEX_FILE} found in "
            f"{checkpoint_dir}.{hint}"
        )
    tensors = {}
    for name in files:
        path = _require_file(checkpoint_dir, name)
        with safe_open(path, framework="np") as f:
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    return tensors


def convert_backbone(checkpoint_dir, hf_config=None):
    """Builds a keras-hub `CLIPBackbone` holding a checkpoint's weights.

    Args:
        checkpoint_dir: string. The Hugging Face checkpoint folder.
        hf_config: optional dict from `read_hf_config`; read if omitted.

    Returns:
        A float32 `keras_hub.models.CLIPBackbone`, vision position ids set and
        the text LayerNorm epsilon 1e-5.
    """
    if hf_config is None:
        hf_config = read_hf_config(checkpoint_dir)
    tensors = read_safetensors(checkpoint_dir)
    backbone = build_clip_backbone(
        clip_architecture(hf_config), dtype="float32"
    )
    weights = _WeightSource(tensors, checkpoint_dir)
    _port_vision_tower(backbone, weights)
    _port_text_tower(backbone, weights)
    weights.assign(backbone.clip_head.logit_scale, "logit_scale")
    weights.check_all_used()
    return backbone


def convert_tokenizer(checkpoint_dir):
    """Builds a keras-hub `CLIPTokenizer` from a checkpoint's tokenizer files.

    Reads `vocab.json` + `merges.txt` when both are present, else
    `tokenizer.json` (merges stored as `"a b"` strings or as `["a", "b"]`
    pairs, the newer format).

    Raises:
        FileNotFoundError: none of the tokenizer files are there.
        ValueError: the tokenizer is not CLIP's byte-level BPE, or
            `<|endoftext|>` does not have the highest id.
    """
    vocabulary_path = os.path.join(checkpoint_dir, VOCABULARY_FILE)
    merges_path = os.path.join(checkpoint_dir, MERGES_FILE)
    tokenizer_path = os.path.join(checkpoint_dir, TOKENIZER_FILE)
    if os.path.isfile(vocabulary_path) and os.path.isfile(merges_path):
        source = vocabulary_path
        with open(vocabulary_path, encoding="utf-8") as f:
            vocabulary = json.load(f)
        with open(merges_path, encoding="utf-8") as f:
            merges = [
                line.rstrip("\r\n")
                for line in f
                if line.strip() and not line.startswith("#version")
            ]
    elif os.path.isfile(tokenizer_path):
        source = tokenizer_path
        vocabulary, merges = _read_tokenizer_json(tokenizer_path)
    else:
        raise FileNotFoundError(
            f"No tokenizer in {checkpoint_dir}: expected {VOCABULARY_FILE} "
            f"and {MERGES_FILE}, or {TOKENIZER_FILE}. Save them with "
            "CLIPTokenizer.from_pretrained(...).save_pretrained(DIR)."
        )
    for token in (START_TOKEN, END_TOKEN):
        if token not in vocabulary:
            raise ValueError(
                f"{source} has no {token}; not a CLIP tokenizer vocabulary."
            )
    if vocabulary[END_TOKEN] != max(vocabulary.values()):
        raise ValueError(
            f"In {source}, {END_TOKEN} has id {vocabulary[END_TOKEN]} but the "
            f"highest id is {max(vocabulary.values())}. keras-hub's CLIP pools "
            "text at argmax(token_ids), so the end token must have the "
            "highest id."
        )
    return keras_hub.models.CLIPTokenizer(vocabulary=vocabulary, merges=merges)


def convert_image_converter(checkpoint_dir, image_size):
    """Builds a `CLIPImageConverter` from `preprocessor_config.json`.

    Uses the file's mean, std, rescale factor and resampling when present,
    CLIP's defaults (bicubic, CLIP mean and std) otherwise. Its output size is
    the model's `image_size`.
    """
    path = os.path.join(checkpoint_dir, PREPROCESSOR_FILE)
    config = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        _warn_on_crop_fraction(config, path)
    mean, std = CLIP_MEAN, CLIP_STD
    if config.get("do_normalize", True):
        mean = config.get("image_mean", mean)
        std = config.get("image_std", std)
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    rescale = 1.0 / 255.0
    if config.get("do_rescale", True):
        rescale = config.get("rescale_factor", rescale)
    else:
        rescale = 1.0
    resample = config.get("resample", 3)
    if resample not in RESAMPLING:
        logger.warning(
            "%s: resample=%s has no keras counterpart; using bicubic.",
            path,
            resample,
        )
    return keras_hub.layers.CLIPImageConverter(
        image_size=(image_size, image_size),
        scale=[rescale / s for s in std],
        offset=[-m / s for m, s in zip(mean, std)],
        interpolation=RESAMPLING.get(resample, "bicubic"),
        crop_to_aspect_ratio=True,
    )


def convert_checkpoint(checkpoint_dir, output_dir):
    """Converts a Hugging Face CLIP checkpoint into a keras-hub preset folder.

    Everything is read and checked before anything is written; the preset is
    written to a temporary sibling folder and renamed into place.

    Args:
        checkpoint_dir: string. The Hugging Face checkpoint folder.
        output_dir: string. The preset folder to create; must not exist or
            be empty.

    Returns:
        `output_dir`, loadable with `cmaclip_tf.models.load_clip`.

    Example:

    ```python
    convert_checkpoint("clip-vit-base-patch32", "presets/clip_b32")
    clip = cmaclip_tf.models.load_clip("presets/clip_b32")
    ```
    """
    if not os.path.isdir(checkpoint_dir):
        raise FileNotFoundError(
            f"Checkpoint folder {checkpoint_dir} not found; pass the folder "
            "CLIPModel.save_pretrained wrote (config.json, model.safetensors, "
            "tokenizer files)."
        )
    if os.path.exists(output_dir) and (
        not os.path.isdir(output_dir) or os.listdir(output_dir)
    ):
        raise FileExistsError(
            f"{output_dir} already exists and is not an empty folder; remove "
            "it or choose another --output."
        )
    hf_config = read_hf_config(checkpoint_dir)
    tokenizer = convert_tokenizer(checkpoint_dir)
    vocabulary_size = hf_config["text_config"]["vocab_size"]
    if tokenizer.vocabulary_size() > vocabulary_size:
        raise ValueError(
            f"The tokenizer has {tokenizer.vocabulary_size()} tokens but "
            f"{CONFIG_FILE} says vocab_size={vocabulary_size}; the tokenizer "
            "files do not belong to this model."
        )
    image_size = hf_config["vision_config"]["image_size"]
    image_converter = convert_image_converter(checkpoint_dir, image_size)
    backbone = convert_backbone(checkpoint_dir, hf_config)

    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=".convert_hf_")
    try:
        backbone.save_to_preset(staging)
        tokenizer.save_to_preset(staging)
        image_converter.save_to_preset(staging)
        os.rename(staging, output_dir)  # Replaces an empty folder too.
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m cmaclip_tf.convert_hf",
        description=(
            "Convert a Hugging Face CLIP checkpoint (config.json, "
            "model.safetensors, tokenizer files) into a keras-hub preset "
            "folder for --clip-preset. Needs no torch."
        ),
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="DIR",
        help="folder written by CLIPModel.save_pretrained (and the "
        "tokenizer's and image processor's save_pretrained)",
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="PRESET_DIR",
        help="keras-hub preset folder to create (must not exist or be empty)",
    )
    args = parser.parse_args(argv)
    try:
        convert_checkpoint(args.checkpoint, args.output)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        parser.exit(2, f"convert_hf: error: {error}\n")
    print(
        f"Wrote the keras-hub CLIP preset {args.output}. Use it with "
        f"--clip-preset {args.output} or "
        f"cmaclip_tf.models.load_clip({args.output!r})."
    )
    return 0


class _WeightSource:
    """Hands out checkpoint tensors as float32 and remembers which were used."""

    def __init__(self, tensors, checkpoint_dir):
        self.tensors = tensors
        self.checkpoint_dir = checkpoint_dir
        self.used = set(IGNORED_TENSORS)

    def get(self, *keys):
        """The first of `keys` present (alternative spellings), as float32."""
        for key in keys:
            if key in self.tensors:
                self.used.add(key)
                return key, np.asarray(self.tensors[key]).astype("float32")
        raise ValueError(
            f"{self.checkpoint_dir} has no tensor {' or '.join(keys)}; "
            "config.json and the weights disagree, or this is not a "
            "transformers CLIPModel checkpoint (its tensors start with "
            "'vision_model.', 'text_model.', 'visual_projection', "
            "'text_projection' and 'logit_scale')."
        )

    def assign(self, variable, *keys, transform=None):
        key, value = self.get(*keys)
        if transform is not None:
            value = transform(value)
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"{key} in {self.checkpoint_dir} has shape "
                f"{tuple(value.shape)} (after conversion) but keras-hub's "
                f"{variable.path} has {tuple(variable.shape)}; config.json "
                "and the weights disagree."
            )
        variable.assign(value)

    def check_all_used(self):
        unused = sorted(set(self.tensors) - self.used)
        if unused:
            raise ValueError(
                f"{len(unused)} tensors of {self.checkpoint_dir} have no place "
                f"in keras-hub's CLIP (first: {unused[:5]}); config.json and "
                "the weights disagree, or this is a CLIP variant keras-hub "
                "cannot express."
            )


def _port_vision_tower(backbone, weights):
    encoder = backbone.vision_encoder
    prefix = "vision_model"
    embedding = encoder.embedding
    weights.assign(
        embedding.class_embedding, f"{prefix}.embeddings.class_embedding"
    )
    weights.assign(
        embedding.patch_embedding.kernel,
        f"{prefix}.embeddings.patch_embedding.weight",
        transform=lambda w: np.transpose(w, (2, 3, 1, 0)),  # NCHW -> NHWC.
    )
    weights.assign(
        embedding.position_embedding.embeddings,
        f"{prefix}.embeddings.position_embedding.weight",
    )
    _port_layer_norm(
        encoder.pre_layer_norm,
        weights,
        f"{prefix}.pre_layrnorm",
        f"{prefix}.pre_layernorm",
    )
    for i, layer in enumerate(encoder.encoder_layers):
        _port_encoder_layer(layer, weights, f"{prefix}.encoder.layers.{i}")
    _port_layer_norm(encoder.layer_norm, weights, f"{prefix}.post_layernorm")
    weights.assign(
        backbone.vision_projection.kernel,
        "visual_projection.weight",
        transform=np.transpose,
    )


def _port_text_tower(backbone, weights):
    encoder = backbone.text_encoder
    prefix = "text_model"
    weights.assign(
        encoder.embedding.token_embedding.embeddings,
        f"{prefix}.embeddings.token_embedding.weight",
    )
    weights.assign(
        encoder.embedding.position_embedding.position_embeddings,
        f"{prefix}.embeddings.position_embedding.weight",
    )
    for i, layer in enumerate(encoder.encoder_layers):
        _port_encoder_layer(layer, weights, f"{prefix}.encoder.layers.{i}")
    _port_layer_norm(encoder.layer_norm, weights, f"{prefix}.final_layer_norm")
    weights.assign(
        backbone.text_projection.kernel,
        "text_projection.weight",
        transform=np.transpose,
    )


def _port_encoder_layer(layer, weights, prefix):
    hidden_dim, num_heads = layer.hidden_dim, layer.num_heads
    head_dim = hidden_dim // num_heads
    attention = layer.attention
    projections = (
        (attention.query_dense, "q_proj"),
        (attention.key_dense, "k_proj"),
        (attention.value_dense, "v_proj"),
    )
    for dense, name in projections:
        weights.assign(
            dense.kernel,
            f"{prefix}.self_attn.{name}.weight",
            transform=lambda w: w.T.reshape(hidden_dim, num_heads, head_dim),
        )
        weights.assign(
            dense.bias,
            f"{prefix}.self_attn.{name}.bias",
            transform=lambda b: b.reshape(num_heads, head_dim),
        )
    weights.assign(
        attention.output_dense.kernel,
        f"{prefix}.self_attn.out_proj.weight",
        transform=lambda w: w.T.reshape(num_heads, head_dim, hidden_dim),
    )
    weights.assign(
        attention.output_dense.bias, f"{prefix}.self_attn.out_proj.bias"
    )
    _port_layer_norm(layer.layer_norm_1, weights, f"{prefix}.layer_norm1")
    _port_layer_norm(layer.layer_norm_2, weights, f"{prefix}.layer_norm2")
    for dense, name in ((layer.dense_1, "fc1"), (layer.dense_2, "fc2")):
        weights.assign(
            dense.kernel, f"{prefix}.mlp.{name}.weight", transform=np.transpose
        )
        weights.assign(dense.bias, f"{prefix}.mlp.{name}.bias")


def _port_layer_norm(layer_norm, weights, *prefixes):
    weights.assign(layer_norm.gamma, *(f"{p}.weight" for p in prefixes))
    weights.assign(layer_norm.beta, *(f"{p}.bias" for p in prefixes))


def _read_tokenizer_json(path):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    model = data.get("model") or {}
    if model.get("type") != "BPE" or model.get("end_of_word_suffix") != "</w>":
        raise ValueError(
            f"{path} is not CLIP's byte-level BPE tokenizer (model type "
            f"{model.get('type')!r}, end_of_word_suffix "
            f"{model.get('end_of_word_suffix')!r}; expected 'BPE' and '</w>')."
        )
    vocabulary = dict(model["vocab"])
    for token in data.get("added_tokens", []):
        vocabulary.setdefault(token["content"], token["id"])
    merges = []
    for merge in model.get("merges", []):
        # Older files store "a b"; newer ones ["a", "b"] (tokens may then
        # hold spaces, which CLIP's byte-level tokens never do).
        pair = merge.split(" ") if isinstance(merge, str) else list(merge)
        if len(pair) != 2 or any(" " in token for token in pair):
            raise ValueError(f"{path}: cannot use the merge rule {merge!r}.")
        merges.append(" ".join(pair))
    return vocabulary, merges


def _warn_on_crop_fraction(config, path):
    size = config.get("size")
    crop = config.get("crop_size")
    if isinstance(size, dict):
        size = size.get("shortest_edge", size.get("height"))
    if isinstance(crop, dict):
        crop = crop.get("height")
    if config.get("do_center_crop", True) and size and crop and size != crop:
        logger.warning(
            "%s resizes the shortest edge to %s then crops %s; the keras "
            "image converter crops the largest centered square, a slightly "
            "larger region.",
            path,
            size,
            crop,
        )


def _square(value, name, path):
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(
                f"{path}: vision_config.{name} is {value}; keras-hub's CLIP "
                "needs square images and patches."
            )
        value = value[0]
    return int(value)


def _require_file(directory, name):
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


if __name__ == "__main__":
    sys.exit(main())
