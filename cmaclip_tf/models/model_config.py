"""Named model configurations (`tiny`, `vit_b32`) as data, or a JSON path."""

import copy
import os

from cmaclip_tf.runtime.named_json import available_names
from cmaclip_tf.runtime.named_json import load_named_json

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs")


def available_model_configs():
    """Names of the built-in model configs."""
    return available_names(CONFIG_DIR)


def get_model_config(name_or_path):
    """Returns a model config dict from a built-in name or a JSON file path.

    Raises:
        ValueError: for a name that is neither built in nor an existing file,
            or a file that is not valid JSON.
    """
    if isinstance(name_or_path, dict):
        return copy.deepcopy(name_or_path)
    return load_named_json(name_or_path, CONFIG_DIR, "model config")
