"""Converts a Hugging Face CLIP checkpoint folder into a keras-hub preset folder."""

import argparse
import os
import shutil
import tempfile

from cmaclip_tf.convert_hf.hf_config import CONFIG_FILE
from cmaclip_tf.convert_hf.hf_config import read_hf_config
from cmaclip_tf.convert_hf.image_converter import convert_image_converter
from cmaclip_tf.convert_hf.tokenizer import convert_tokenizer
from cmaclip_tf.convert_hf.weights import convert_backbone


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
