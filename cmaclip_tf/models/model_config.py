"""Named model configurations (`tiny`, `vit_b32`) as data, or a JSON path."""

import copy
import json
import os

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs")


def available_model_configs():
    """Names of the built-in model configs."""
    return sorted(
        name[: -len(".json")]
        for name in os.listdir(CONFIG_DIR)
        if name.endswith(".json")
    )


def get_model_config(name_or_path):
    """Returns a model config dict from a built-in name or a JSON file path.

    Raises:
        ValueError: for a name that is neither built in nor an existing file.
    """
    if isinstance(name_or_path, dict):
        return copy.deepcopy(name_or_path)
    path = name_or_path
    if not os.path.isfile(path):
        path = os.path.join(CONFIG_DIR, f"{name_or_path}.json")
    if not os.path.isfile(path):
        raise ValueError(
            f"Unknown model config {name_or_path!r}: expected one of "
            f"{available_model_configs()} or a path to a JSON file."
        )
    with open(path) as f:
        return json.load(f)
