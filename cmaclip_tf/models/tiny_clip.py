"""The `tiny_clip` preset: a random, few-megabyte CLIP for tests and the demo.

Written as a real keras-hub preset folder (config, weights, tokenizer with a
BPE vocabulary learned from `tiny_clip_words.txt`, image converter), then
loaded through `load_clip` like any downloaded preset. Deterministic by seed.
"""

import json
import os
import shutil
import tempfile

import keras
import keras_hub

from cmaclip_tf.models import bpe_vocabulary
from cmaclip_tf.models.clip_components import CLIPComponents
from cmaclip_tf.models.clip_components import build_clip_backbone
from cmaclip_tf.models.clip_components import save_clip_preset
from cmaclip_tf.models.model_config import get_model_config

TINY_CLIP_PRESET = "tiny_clip"
TINY_CLIP_VERSION = 1
WORD_LIST = os.path.join(os.path.dirname(__file__), "tiny_clip_words.txt")
NUM_MERGES = 1500

# CLIP's image normalization (the `transform` of the reference implementation).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_image_converter(image_size):
    """A `CLIPImageConverter` with CLIP's bicubic resize, mean and std."""
    return keras_hub.layers.CLIPImageConverter(
        image_size=(image_size, image_size),
        scale=[1.0 / (255.0 * s) for s in CLIP_STD],
        offset=[-m / s for m, s in zip(CLIP_MEAN, CLIP_STD)],
        interpolation="bicubic",
        crop_to_aspect_ratio=True,
    )


def cache_dir():
    """The project's cache folder: `$CMACLIP_CACHE_DIR`, default
    `~/.cache/cmaclip_tf`."""
    return os.environ.get(
        "CMACLIP_CACHE_DIR",
        os.path.join(os.path.expanduser("~"), ".cache", "cmaclip_tf"),
    )


def tiny_clip_preset_dir():
    """The tiny preset's folder under `cache_dir()`, generated on first use."""
    preset_dir = os.path.join(cache_dir(), f"{TINY_CLIP_PRESET}_v{TINY_CLIP_VERSION}")
    if not os.path.isfile(os.path.join(preset_dir, "config.json")):
        build_tiny_clip_preset(preset_dir)
    return preset_dir


def build_tiny_clip_preset(preset_dir, seed=0, architecture=None):
    """Writes the tiny CLIP preset folder to `preset_dir` atomically.

    `architecture` (a model config's `clip_architecture`) defaults to the
    `tiny` model's; the vocabulary is always the tiny one.
    """
    with open(WORD_LIST) as f:
        lines = [line for line in f if not line.startswith("#")]
    vocabulary, merges = bpe_vocabulary.learn_bpe(lines, NUM_MERGES)

    architecture = architecture or get_model_config("tiny")["clip_architecture"]
    keras.utils.set_random_seed(seed)
    backbone = build_clip_backbone(architecture, vocabulary_size=len(vocabulary))

    # The tokenizer reads its vocabulary from files: write them to a scratch
    # folder (the preset keeps its own copy).
    scratch = tempfile.mkdtemp(prefix=".tiny_clip_vocabulary_")
    try:
        vocab_file = os.path.join(scratch, "vocab.json")
        merges_file = os.path.join(scratch, "merges.txt")
        with open(vocab_file, "w") as f:
            json.dump(vocabulary, f)
        with open(merges_file, "w") as f:
            f.write(bpe_vocabulary.merges_to_text(merges))
        tokenizer = keras_hub.models.CLIPTokenizer(
            vocabulary=vocab_file, merges=merges_file
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    image_converter = clip_image_converter(architecture["vision"]["image_size"])
    clip = CLIPComponents(backbone, tokenizer, image_converter, TINY_CLIP_PRESET)
    # Another process may finish first: its identical preset stands.
    save_clip_preset(clip, preset_dir, replace=False)
    return preset_dir
