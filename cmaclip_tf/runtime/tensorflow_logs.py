"""TensorFlow's own console output, hidden for the command-line tools.

TensorFlow logs at import and at run time from C++ (CUDA probing on a CPU
machine prints `failed call to cuInit`, a failed file read in `tf.data`
one `NOT_FOUND` line per row): noise to a user, so every command hides it
unless `--debug`. Imports no TensorFlow itself.
"""

import logging
import os
import sys
import warnings


def debug_requested(argv=None):
    """Whether the command line (default `sys.argv`) has `--debug`."""
    return "--debug" in (sys.argv[1:] if argv is None else argv)


def quiet_tensorflow(debug=False):
    """Imports TensorFlow without its start-up and C++ log lines.

    Call before anything imports TensorFlow. With `debug`, nothing is hidden.
    """
    if debug:
        return
    # C++ logs at run time (CUDA probing on CPU machines, libjpeg warnings):
    # "cuInit" failures are logged as errors, hence level 3.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    # At import, TensorFlow logs before its log level applies ("Could not
    # find cuda drivers"): silence the process's stderr just for the import.
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module="keras")
