"""Configs as data: a built-in name in a folder of JSON files, or a path."""

import json
import os


def available_names(folder):
    """The built-in names of `folder`: its `*.json` files without `.json`."""
    return sorted(n[: -len(".json")] for n in os.listdir(folder) if n.endswith(".json"))


def load_named_json(name_or_path, folder, kind):
    """The JSON object of `name_or_path`: an existing file, else
    `folder/<name>.json`.

    Args:
        name_or_path: a built-in name or the path of a JSON file.
        folder: the built-in configs' folder.
        kind: what it is, for errors ("model config", "recipe").

    Raises:
        ValueError: one line, for an unknown name (listing the built-in
            ones) or a file that is not valid JSON.
    """
    path = name_or_path
    if not os.path.isfile(path):
        path = os.path.join(folder, f"{name_or_path}.json")
    if not os.path.isfile(path):
        raise ValueError(
            f"Unknown {kind} {name_or_path!r}: use one of "
            f"{', '.join(available_names(folder))} or the path of a JSON file."
        )
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{kind.capitalize()} {path} is not valid JSON: {error}"
            ) from None
