"""What the command-line tools share: argument types, the data and system
flags, a quiet console, and errors reported in one line.

Imports no TensorFlow: `quiet_tensorflow` must run before it is imported.
"""

import argparse
import sys

from cmaclip_tf.runtime.tensorflow_logs import quiet_tensorflow  # noqa: F401

from cmaclip_tf.limits.serving_limits import MAX_IMAGE_PIXELS


def positive_int(text):
    """argparse type: an integer >= 1."""
    return _bounded(text, int, 1, "an integer >= 1")


def non_negative_int(text):
    """argparse type: an integer >= 0."""
    return _bounded(text, int, 0, "an integer >= 0")


def positive_float(text):
    """argparse type: a number > 0."""
    value = _number(text, float, "a number > 0")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0; got {text}")
    return value


def non_negative_float(text):
    """argparse type: a number >= 0."""
    return _bounded(text, float, 0.0, "a number >= 0")


def fraction(text):
    """argparse type: a number strictly between 0 and 1."""
    value = _number(text, float, "a number between 0 and 1")
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(
            f"must be between 0 and 1 (exclusive); got {text}"
        )
    return value


def unit_interval(text):
    """argparse type: a number in [0, 1)."""
    value = _number(text, float, "a number in [0, 1)")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1); got {text}")
    return value


def rate(text):
    """argparse type: a number between 0 and 1, both included."""
    value = _number(text, float, "a number between 0 and 1")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1; got {text}")
    return value


def task_rates(text):
    """argparse type: a rate for every task (`0.2`), or `task=rate` pairs.

    Returns a float, or `{task: rate}`.
    """
    if "=" not in text:
        return rate(text)
    rates = {}
    for pair in text.split(","):
        task, _, value = pair.partition("=")
        if not task.strip():
            raise argparse.ArgumentTypeError(f"expected task=rate; got {pair!r}")
        rates[task.strip()] = rate(value)
    return rates


def loss_spec(text):
    """argparse type: a loss name, `task=name` pairs, or a JSON spec.

    Returns what `cmaclip_tf.losses.task_losses` takes: a name, a dict with
    a `"name"` and parameters, or `{task: spec}`.
    """
    import json

    text = text.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise argparse.ArgumentTypeError(f"invalid JSON: {error}") from None
    if "=" in text:
        return {task.strip(): name.strip() for task, _, name in
                (pair.partition("=") for pair in text.split(","))}
    return text


def recipe_setting(text):
    """argparse type: `key=value` for one recipe value, the value as JSON
    (`null`, numbers) or else a string.

    Returns `(key, value)`, e.g. `("stages.end2end.warmup_steps", 500)`.
    """
    import json

    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(
            f"expected key=value (e.g. stages.end2end.warmup_steps=500); got {text!r}"
        )
    try:
        value = json.loads(value)
    except json.JSONDecodeError:
        pass  # A plain string, e.g. schedule=cosine.
    return key.strip(), value


def _number(text, kind, what):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}") from None


def _bounded(text, kind, minimum, what):
    value = _number(text, kind, what)
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}; got {text}")
    return value


def add_data_arguments(parser, dataset_help, labels=True,
                       default_dataset="synthetic"):
    """The `data` flags of `trainers/run.py` and `trainers/pretrain.py`.

    Args:
        parser: `argparse.ArgumentParser`.
        dataset_help: the `--dataset` help (which datasets the tool reads).
        labels: add the flags that only a labelled run needs (`--tasks`,
            `--test-manifest`).
        default_dataset: `--dataset`'s default.
    """
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default=default_dataset, help=dataset_help)
    data.add_argument("--data-dir", help="Folder of the dataset's raw files, "
                      "or a TFDS data_dir holding a built dataset.")
    data.add_argument("--manifest", help="Training manifest (CSV or JSONL).")
    data.add_argument("--val-manifest", help="Validation manifest.")
    if labels:
        data.add_argument("--test-manifest", help="Test manifest.")
        data.add_argument("--tasks", help="Comma-separated tasks to train "
                          "(default: all the dataset has).")
    data.add_argument("--num-examples", type=positive_int,
                      help="Generated datasets: number of training examples "
                      "(validation and test scale with it); files: read only "
                      "the first N of each split.")
    data.add_argument("--val-size", type=non_negative_int,
                      help="Validation examples carved out of train where the "
                      "dataset has no validation split (food101, fashion_gen, "
                      "a manifest without --val-manifest). Default: 5,000 for "
                      "food101 and fashion_gen (as MMBT), or 10%% of a train "
                      "split too small for that; 10%% for a manifest.")
    data.add_argument("--val-fraction", type=fraction,
                      help="Share of train for validation instead of "
                      "--val-size (the paper: 0.2).")
    data.add_argument("--on-bad-record", default="skip", choices=["skip", "error"],
                      help="skip (and count) corrupt or unlabelled records, or "
                      "stop at the first with its file and row.")
    data.add_argument("--max-image-pixels", type=non_negative_int,
                      default=MAX_IMAGE_PIXELS,
                      help="An image file over this many pixels (read from its "
                      "header before decoding; GIF frames counted) is a bad "
                      "record, image_too_large. Default: %(default)s (8192 x "
                      "8192); 0: no limit.")
    return data


def add_system_arguments(parser):
    """The `system` flags every trainer has: strategy, XLA, console."""
    system = parser.add_argument_group("system")
    system.add_argument("--strategy", default="auto",
                        choices=["auto", "one_device", "mirrored",
                                 "multi_worker", "tpu"],
                        help="tf.distribute strategy (multi_worker reads "
                        "TF_CONFIG).")
    system.add_argument("--tpu", help="TPU name or address for --strategy tpu.")
    system.add_argument("--jit-compile", action="store_true",
                        help="XLA-compile the train step.")
    system.add_argument("--quiet", action="store_true", help="No progress bars.")
    system.add_argument("--debug", action="store_true",
                        help="TensorFlow's own log lines, and the full "
                        "traceback of an error.")
    return system


# --mixed-precision to Keras's dtype policy (variables stay float32).
DTYPE_POLICIES = {None: "float32", "bfloat16": "mixed_bfloat16",
                  "float16": "mixed_float16"}


def add_mixed_precision_argument(group):
    """`--mixed-precision` (`DTYPE_POLICIES`), for `trainers/run.py` and
    `trainers/pretrain.py`."""
    group.add_argument("--mixed-precision", nargs="?", const="bfloat16",
                       choices=["bfloat16", "float16"],
                       help="Compute in bfloat16 (the flag alone; TPUs and "
                       "GPUs from Ampere on) or float16 (older GPUs; the "
                       "loss is scaled), weights in float32.")


def check_dataset_name(parser, name):
    """Exits with a usage error for a dataset `load_dataset` does not know.

    Imports TensorFlow: call it after `quiet_tensorflow`.
    """
    from cmaclip_tf.datasets import registry

    if not registry.is_dataset_name(name):
        parser.error(
            f"argument --dataset: unknown dataset {name!r}; use one of "
            f"{', '.join(registry.available_datasets())} or tfds:<builder>"
        )


def run_reporting_errors(run, debug=False):
    """Runs `run()`; a user error prints one line and returns 2.

    User errors: a missing file (`OSError`), a bad value or bad record
    (`ValueError`, `BadRecordError`), and TensorFlow errors from the data.
    With `debug`, they raise with their traceback instead. Ctrl-C returns
    130 with a note that the same command resumes.
    """
    try:
        return run()
    except KeyboardInterrupt:
        print("\nInterrupted; run the same command again to resume.",
              file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 (filtered below)
        if debug or not _is_user_error(error):
            raise
        print(f"error: {_one_line(error)}", file=sys.stderr)
        print("(--debug shows the traceback)", file=sys.stderr)
        return 2


def _is_user_error(error):
    if isinstance(error, (OSError, ValueError)):
        return True
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(error, tf.errors.OpError)


def _one_line(error):
    """Our errors as written; TensorFlow's without the graph dump."""
    if not isinstance(error, (OSError, ValueError)):
        lines = [s.strip() for s in error.message.splitlines() if s.strip()]
        first = lines[0] if lines else type(error).__name__
        if first.startswith("{{") and "}}" in first:
            first = first.split("}}", 1)[1].strip()
        return first
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error) or type(error).__name__
