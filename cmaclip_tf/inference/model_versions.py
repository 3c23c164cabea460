"""Which version of an exported model to load: TF Serving's `latest` policy.

A model folder holds integer version folders (`models/cmaclip/1/`, ...).
The highest version that loads is the one to use; a version folder counts
only once it looks complete (`saved_model.pb` and
`variables/variables.index`), and one that fails to load (half-copied,
corrupt) is skipped for the next lower one. `Predictor.load`,
`serving.predict --model` and the development server (`serving.server`,
which adds retries and a check that a folder has stopped changing) all pick
versions here. Imports nothing heavy, so that the server can read it alone.
"""

import os

SAVED_MODEL_FILE = "saved_model.pb"
VARIABLES_INDEX = os.path.join("variables", "variables.index")


class NoLoadableVersionError(ValueError):
    """No version of a model folder loads; the message says why, per version."""


def version_numbers(model_dir):
    """Integer version folders under `model_dir` holding `saved_model.pb`, ascending."""
    try:
        names = os.listdir(model_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(
        int(name) for name in names
        if name.isdigit()
        and os.path.isfile(os.path.join(model_dir, name, SAVED_MODEL_FILE))
    )


def incomplete_version(version_dir):
    """Why a version folder does not look complete yet, or None.

    TF's SavedModel writer (and a `cp -r` of one) may leave `saved_model.pb`
    before `variables/`; the variables' index is written last.
    """
    for name in (SAVED_MODEL_FILE, VARIABLES_INDEX):
        if not os.path.isfile(os.path.join(version_dir, name)):
            return f"no {name} yet (still being written?)"
    return None


def version_fingerprint(version_dir):
    """`(relative path, size, mtime)` of every file, sorted; None if incomplete.

    Equal fingerprints at two polls say a folder has stopped changing.
    """
    if incomplete_version(version_dir) is not None:
        return None
    files = []
    for folder, _, names in os.walk(version_dir):
        for name in names:
            path = os.path.join(folder, name)
            try:
                stat = os.stat(path)
            except OSError:  # Removed while walking: still changing.
                return None
            files.append(
                (os.path.relpath(path, version_dir), stat.st_size, stat.st_mtime_ns)
            )
    return tuple(sorted(files))


def load_highest_version(model_dir, load):
    """Loads the highest version of `model_dir` that loads.

    Args:
        model_dir: a folder of integer version folders.
        load: `version folder -> loaded object`; raises if it cannot load.

    Returns:
        `(version, loaded, skipped)`: `skipped` is `[(version, reason)]` of
        the higher versions that did not load, highest first.

    Raises:
        NoLoadableVersionError: no version loads (one line, every version's
            reason).

    Example:
    ```python
    version, module, skipped = load_highest_version(
        "models/cmaclip", tf.saved_model.load)
    ```
    """
    skipped = []
    for version in reversed(version_numbers(model_dir)):
        path = os.path.join(model_dir, str(version))
        reason = incomplete_version(path)
        if reason is None:
            try:
                return version, load(path), skipped
            except Exception as error:  # Any failure: try the next lower one.
                reason = load_error_line(error)
        skipped.append((version, reason))
    listed = "; ".join(f"version {v}: {reason}" for v, reason in skipped)
    raise NoLoadableVersionError(
        f"No version of {model_dir} loads ({listed or 'no version folders'}); "
        "export one again (python -m serving.export)."
    )


def skipped_versions_line(model_dir, version, skipped):
    """One line: which versions were skipped and why, and which was loaded."""
    listed = "; ".join(f"version {v} ({reason})" for v, reason in skipped)
    return f"{model_dir}: skipped {listed}; loaded version {version}."


def load_error_line(error):
    """An exception as one line: its type and the first line of its message."""
    message = str(getattr(error, "message", None) or error).strip()
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__
