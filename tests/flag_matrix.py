"""trainers/run.py over combinations of the flags that combine, as JSON lines.

Run as a script (`python tests/flag_matrix.py fast|all [--filter K=V ...]`) by
`test_flag_matrix.py`: it splits the CPU into two logical devices (for
`--strategy mirrored`), which only works before TensorFlow initializes, so
it needs its own process; every combination then runs `trainers.run.main`
in it, one after the other, on the micro model (`micro_model.py`), 2 steps
of one epoch of one stage: `end2end` (CLIP trains, so the contrastive loss
counts), or `warmup` with `--cache-features` (the cache serves frozen
stages only).

For each combination it prints one JSON line: its flags, the exit status,
what it wrote to stderr, and the mean loss per task of every execution of
steps (`StageTrainer.train_steps`, recorded on the way).
"""

import contextlib
import io
import itertools
import json
import math
import os
import sys
import tempfile

import two_logical_cpus  # noqa: F401  (first: before TensorFlow starts)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from micro_model import micro_model_path  # noqa: E402  (tests/)

from trainers import run as run_cli  # noqa: E402
from trainers.training import distribution  # noqa: E402
from trainers.training import stage_trainer  # noqa: E402

# Flag: its values in the matrix (the first: the flag left out).
FLAGS = {
    "strategy": ("one_device", "mirrored"),
    "jit_compile": (False, True),
    "mixed_precision": (None, "bfloat16", "float16"),
    "contrastive_weight": (0.0, 0.5),
    "accumulate_steps": (1, 2),
    "steps_per_execution": (1, 2),
    "cache_features": (False, True),
}
# The default tier's share: every flag on at least once, and the refusals.
FAST = [
    {"strategy": "mirrored", "jit_compile": True, "mixed_precision": "bfloat16",
     "contrastive_weight": 0.0, "accumulate_steps": 2, "steps_per_execution": 2,
     "cache_features": True},
    {"strategy": "one_device", "jit_compile": True, "mixed_precision": "float16",
     "contrastive_weight": 0.5, "accumulate_steps": 1, "steps_per_execution": 1,
     "cache_features": False},
    {"strategy": "mirrored", "jit_compile": True, "mixed_precision": None,
     "contrastive_weight": 0.5, "accumulate_steps": 1, "steps_per_execution": 1,
     "cache_features": False},
    {"strategy": "one_device", "jit_compile": False, "mixed_precision": None,
     "contrastive_weight": 0.5, "accumulate_steps": 2, "steps_per_execution": 1,
     "cache_features": False},
]


def all_combinations():
    for values in itertools.product(*FLAGS.values()):
        yield dict(zip(FLAGS, values))


def pairwise_combinations():
    """Combinations in which every value of every flag meets every value of
    every other flag at least once (greedy all-pairs cover: 9 of the 192)."""
    names = list(FLAGS)

    def pairs(combination):
        return {(a, combination[a], b, combination[b])
                for i, a in enumerate(names) for b in names[i + 1:]}

    candidates = list(all_combinations())
    uncovered = set().union(*(pairs(c) for c in candidates))
    chosen = []
    while uncovered:
        best = max(candidates, key=lambda c: len(pairs(c) & uncovered))
        chosen.append(best)
        uncovered -= pairs(best)
    return chosen


def argv(combination, workdir):
    flags = ["--dataset", "synthetic", "--num-examples", "24", "--batch-size", "8",
             "--epochs", "1", "--steps-per-epoch", "2", "--quiet", "--seed", "1",
             "--model", micro_model_path(), "--workdir", workdir,
             "--stage", "warmup" if combination["cache_features"] else "end2end",
             "--strategy", combination["strategy"],
             "--contrastive-weight", str(combination["contrastive_weight"]),
             "--accumulate-steps", str(combination["accumulate_steps"]),
             "--steps-per-execution", str(combination["steps_per_execution"])]
    if combination["jit_compile"]:
        flags.append("--jit-compile")
    if combination["mixed_precision"]:
        flags += ["--mixed-precision", combination["mixed_precision"]]
    if combination["cache_features"]:
        flags.append("--cache-features")
    return flags


def main(args):
    which, filters = args[0], dict(a.split("=", 1) for a in args[1:])
    combinations = {"fast": lambda: FAST, "pairwise": pairwise_combinations,
                    "all": lambda: list(all_combinations())}[which]()
    combinations = [c for c in combinations
                    if all(str(c[k]) == v for k, v in filters.items())]
    losses = []
    train_steps = stage_trainer.StageTrainer.train_steps

    def recording(self, *a, **kw):
        result = train_steps(self, *a, **kw)
        losses.append({"steps": self.steps_run, **result})
        return result

    stage_trainer.StageTrainer.train_steps = recording
    # One strategy of each kind per process, as in a user's run: several
    # MirroredStrategy objects in one process can mismatch their
    # collectives' instance keys.
    strategies = {}
    create_strategy = distribution.create_strategy
    distribution.create_strategy = lambda name, tpu=None: strategies.setdefault(
        name, create_strategy(name, tpu))
    for combination in combinations:
        losses.clear()
        stderr = io.StringIO()
        with tempfile.TemporaryDirectory() as workdir, \
                contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(stderr):
            try:
                status = run_cli.main(argv(combination, os.path.join(workdir, "run")))
            except Exception as error:  # noqa: BLE001 (reported, not raised)
                status = f"{type(error).__name__}: {str(error)[:2000]}"
        print(json.dumps({
            "flags": combination, "status": status,
            "stderr": stderr.getvalue()[-3000:], "losses": losses,
            "finite": bool(losses) and all(
                math.isfinite(v) for step in losses for v in step.values()),
        }), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
