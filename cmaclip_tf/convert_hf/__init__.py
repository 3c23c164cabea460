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

One file per part of the checkpoint: `hf_config` (`config.json` to the
architecture), `weights` (the safetensors into a `CLIPBackbone`, and how the
two implementations' layouts differ), `tokenizer`, `image_converter`; and
`checkpoint`, which checks them all, then writes the preset.

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

from cmaclip_tf.convert_hf.checkpoint import convert_checkpoint
from cmaclip_tf.convert_hf.checkpoint import main
from cmaclip_tf.convert_hf.hf_config import clip_architecture
from cmaclip_tf.convert_hf.hf_config import read_hf_config
from cmaclip_tf.convert_hf.image_converter import convert_image_converter
from cmaclip_tf.convert_hf.tokenizer import convert_tokenizer
from cmaclip_tf.convert_hf.weights import convert_backbone
from cmaclip_tf.convert_hf.weights import read_safetensors

__all__ = [
    "clip_architecture",
    "convert_backbone",
    "convert_checkpoint",
    "convert_image_converter",
    "convert_tokenizer",
    "main",
    "read_hf_config",
    "read_safetensors",
]
