"""trainers/run.py over the documented flags that combine: each combination
trains with a finite loss, or refuses at the start in one line that names
the conflict (`flag_matrix.py` runs them)."""

import json
import os
import subprocess
import sys

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
# What the contrastive loss cannot run with (`check_contrastive_options`),
# in a stage that trains CLIP (end2end here; warmup with --cache-features).
JIT_REFUSED = "--jit-compile cannot compile the contrastive loss on 2 replicas"
ACCUMULATION_REFUSED = "--contrastive-weight compares every pair of the batch"


def _matrix(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(TESTS), TESTS]),
               TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, os.path.join(TESTS, "flag_matrix.py"), *args],
        env=env, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines()
            if line.startswith("{")]


def _check(rows):
    assert rows
    for row in rows:
        flags = row["flags"]
        contrastive = flags["contrastive_weight"] > 0 and not flags["cache_features"]
        refusal = None
        if contrastive and flags["accumulate_steps"] > 1:
            refusal = ACCUMULATION_REFUSED
        elif contrastive and flags["strategy"] == "mirrored" and flags["jit_compile"]:
            refusal = JIT_REFUSED
        if refusal:
            # At the start: no step ran; one line (and the --debug hint).
            assert row["status"] == 2 and not row["losses"], row
            lines = row["stderr"].splitlines()
            assert lines[0].startswith(f"error: {refusal}"), row
            assert "--contrastive-weight" in lines[0] and len(lines) == 2, row
        else:
            assert row["status"] == 0 and row["stderr"] == "", row
            assert row["finite"] and row["losses"][0]["steps"] == 2, row


@pytest.mark.large  # Fourteen end-to-end runs of flag combinations: minutes.
def test_the_fast_combinations():
    _check(_matrix("fast"))


@pytest.mark.large
@pytest.mark.parametrize("strategy", ["one_device", "mirrored"])
def test_every_pair_of_flag_values(strategy):
    # Every value of each flag (jit, precision, contrastive, accumulation,
    # steps per execution, the feature cache, the strategy) meets every value
    # of every other at least once: `flag_matrix.py all` runs all 192, about
    # an hour and a half of CPU, too long for CI.
    rows = _matrix("pairwise", f"strategy={strategy}")
    assert len(rows) >= 4
    _check(rows)
