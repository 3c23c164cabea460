"""Attention maps of a trained run: the paper's Figure 2.

    python trainers/visualize.py --workdir runs/full --image dress.png \
        --text "Acme Red Striped Tee" --token red [--layer -1] [--output map.png]

Writes a PNG: the image as the model sees it, the attention of one text
token over the image patches laid on it, and the text with the token marked.
The map is the sequence-wise attention of layer `--layer` (default the last):
the token's query against the keys of the image patches, the attention
probabilities averaged over the layer's heads, restricted to the patch keys
and renormalized (`cmaclip_tf.inference.attention_map`). Without `--token`, the word
whose tokens put the most attention on the patches.

The trainer logs a few validation examples' maps to TensorBoard each epoch
(`RunLogger.attention_maps`).
"""

import argparse
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", required=True,
                        help="A finished run (reads WORKDIR/inference/).")
    parser.add_argument("--image", required=True, help="Image file (JPEG, PNG, ...).")
    parser.add_argument("--text", required=True, help="The title.")
    parser.add_argument("--token", help="Word of the title to map (default: the "
                        "word attending most to the image).")
    parser.add_argument("--layer", type=int, default=-1,
                        help="Fusion layer; negative counts from the end.")
    parser.add_argument("--output", default="attention_map.png")
    return parser


def attention_map_figure(bundle, image_bytes, text, token=None, layer=-1):
    """`(PIL image, word)`: the figure of `token` (or the most attended word)."""
    import numpy as np
    import tensorflow as tf

    from cmaclip_tf.inference.attention_map import denormalize_images
    from cmaclip_tf.inference.attention_map import most_attended_token
    from cmaclip_tf.inference.attention_map import render_attention_map
    from cmaclip_tf.inference.attention_map import token_attention_maps
    from cmaclip_tf.inference.attention_map import word_token_positions

    model = bundle.model
    if getattr(model, "sequence_attention", None) is None:
        raise ValueError(
            f"{bundle.directory} holds a `{getattr(model, 'variant', '?')}` model, "
            "which has no sequence-wise attention to map; use a `full` or "
            "`no_ma` run."
        )
    preprocess = bundle.image_preprocessor
    images = preprocess(tf.constant([image_bytes]))
    tokens = bundle.text_preprocessor(tf.constant([text]))
    inputs = {"images": images, "token_ids": tokens["token_ids"],
              "padding_mask": tokens["padding_mask"]}
    if token is None:
        token, positions = most_attended_token(
            model, inputs, bundle.text_preprocessor, text, layer
        )
    else:
        positions = word_token_positions(bundle.text_preprocessor, text, token)
    attention = token_attention_maps(model, inputs, [positions], layer)[0]
    num_layers = model.sequence_attention.num_layers
    # The colors scale to the map's maximum; the range says how flat it is.
    caption = (
        f"layer {layer % num_layers + 1}/{num_layers}, mean of "
        f"{model.sequence_attention.num_heads} heads; patch weights "
        f"{attention.min():.3f}-{attention.max():.3f} (uniform "
        f"{1 / attention.size:.3f})"
    )
    pixels = denormalize_images(np.asarray(images), preprocess.mean, preprocess.std)[0]
    return render_attention_map(pixels, attention, text, token, caption=caption), token


def main(argv=None):
    args = build_parser().parse_args(argv)
    from cmaclip_tf.inference.inference_bundle import load_inference_bundle

    bundle = load_inference_bundle(os.path.join(args.workdir, "inference"))
    with open(args.image, "rb") as f:
        image_bytes = f.read()
    figure, token = attention_map_figure(
        bundle, image_bytes, args.text, args.token, args.layer
    )
    figure.save(args.output, format="PNG")
    print(f"Wrote {args.output} (token {token!r}, {figure.size[0]}x{figure.size[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
