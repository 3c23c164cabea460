"""`WORKDIR/run.json`: a run's flags, for the tools that reread its data."""

import json
import os

RUN_FILE = "run.json"


def run_record(args):
    """The flags of `args` (an argparse namespace) that JSON can hold."""
    return {key: value for key, value in sorted(vars(args).items())
            if isinstance(value, (str, int, float, bool, dict, list, type(None)))}


def read_run_record(workdir):
    """The flags `trainers/run.py` recorded in `workdir`, or `{}`."""
    path = os.path.join(workdir, RUN_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)
