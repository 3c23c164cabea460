"""A one-layer CMA-CLIP for the end-to-end tests that pin mechanics, not
accuracy: resume, strategies, loop options, data paths.

Tracing and optimizing the train step's graph, not running it, is most of
what those tests spend, and it grows with depth: the `tiny` model's two
layers per tower and in the fusion cost a third more than one each. The
micro model is `tiny` with one layer everywhere, on a random CLIP built
from the same vocabulary (`build_tiny_clip_preset`), written once to the
project's cache folder and then read like any user's `--model` JSON.
"""

import json
import os

from cmaclip_tf.models import get_model_config
from cmaclip_tf.models.tiny_clip import build_tiny_clip_preset
from cmaclip_tf.models.tiny_clip import cache_dir

VERSION = 1


def micro_model_config():
    """The micro model's config, a dict (its `clip_preset` a local folder)."""
    config = get_model_config("tiny")
    config["name"] = "micro"
    config["description"] = "tiny with one layer per tower and in the fusion (tests)."
    for part in (config["clip_architecture"]["vision"],
                 config["clip_architecture"]["text"], config["fusion"]):
        part["num_layers"] = 1
    preset = os.path.join(cache_dir(), f"test_micro_clip_v{VERSION}")
    if not os.path.isfile(os.path.join(preset, "config.json")):
        build_tiny_clip_preset(preset, architecture=config["clip_architecture"])
    config["clip_preset"] = preset
    return config


def micro_model_path():
    """The micro model's config as a JSON file, for `--model PATH`."""
    config = micro_model_config()
    path = os.path.join(os.path.dirname(config["clip_preset"]),
                        f"test_micro_model_v{VERSION}.json")
    if not os.path.isfile(path):
        staging = f"{path}.{os.getpid()}"
        with open(staging, "w") as f:
            json.dump(config, f, indent=2)
        os.replace(staging, path)  # Readers never see half a file.
    return path
