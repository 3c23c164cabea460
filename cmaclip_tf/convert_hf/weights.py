"""Ports a Hugging Face CLIP checkpoint's weights into a keras-hub `CLIPBackbone`.

The mapping follows keras-hub's `convert_metaclip_2.py`. Where the two
implementations differ, and how this bridges them:
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

Weights are read with `safetensors` and numpy; torch is not needed.
"""

import json
import os

import numpy as np

from cmaclip_tf.convert_hf.hf_config import clip_architecture
from cmaclip_tf.convert_hf.hf_config import read_hf_config
from cmaclip_tf.convert_hf.hf_config import require_file
from cmaclip_tf.models.clip_components import build_clip_backbone

WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"

# Buffers older `transformers` saved; keras-hub's are set, not loaded.
IGNORED_TENSORS = (
    "text_model.embeddings.position_ids",
    "vision_model.embeddings.position_ids",
)


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
        path = require_file(checkpoint_dir, name)
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
    _port_blocks_and_projection(
        encoder, backbone.vision_projection, weights, prefix,
        "post_layernorm", "visual_projection",
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
    _port_blocks_and_projection(
        encoder, backbone.text_projection, weights, prefix,
        "final_layer_norm", "text_projection",
    )


def _port_blocks_and_projection(
    encoder, projection, weights, prefix, final_layer_norm, projection_name
):
    """What both towers end with: the blocks, a LayerNorm, the projection."""
    for i, layer in enumerate(encoder.encoder_layers):
        _port_encoder_layer(layer, weights, f"{prefix}.encoder.layers.{i}")
    _port_layer_norm(encoder.layer_norm, weights, f"{prefix}.{final_layer_norm}")
    weights.assign(
        projection.kernel, f"{projection_name}.weight", transform=np.transpose
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
