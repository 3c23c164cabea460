"""Builds keras-hub's `CLIPImageConverter` from `preprocessor_config.json`.

The converter center-crops the largest square and resizes it once; Hugging
Face resizes the shortest edge then center-crops. Same region, slightly
different resampling; identical for images already at the model's size.
"""

import json
import logging
import os

import keras_hub

from cmaclip_tf.models.tiny_clip import CLIP_MEAN
from cmaclip_tf.models.tiny_clip import CLIP_STD

logger = logging.getLogger(__name__)

PREPROCESSOR_FILE = "preprocessor_config.json"
# PIL resampling codes in `preprocessor_config.json` -> keras interpolation.
RESAMPLING = {0: "nearest", 1: "lanczos3", 2: "bilinear", 3: "bicubic"}


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
