"""A pretraining run: image-text pairs, a CLIP, contrastive training, a preset."""

import os
import shlex
import sys
import time

import keras

from cmaclip_tf.models import get_model_config
from cmaclip_tf.models import load_clip
from cmaclip_tf.models.clip_components import save_clip_preset
from trainers.command_line import DTYPE_POLICIES
from trainers.pretraining.contrastive_stage import STAGE
from trainers.pretraining.contrastive_stage import ContrastiveSettings
from trainers.pretraining.contrastive_stage import ContrastiveStage
from trainers.training import distribution
from trainers.training.checkpoints import write_json
from trainers.training.input_data import load_run_data
from trainers.training.run_logger import RunLogger
from trainers.training.run_record import RUN_FILE
from trainers.training.run_record import run_record
from trainers.training.stage_trainer import check_contrastive_options

PRESET_DIR = "preset"
# Datasets that may hold image-text pairs only: read no labels from them.
PAIRS_ONLY_DATASETS = ("manifest", "caption_corpus")


class PretrainingRun:
    """Trains CLIP contrastively on `args.dataset` and writes `WORKDIR/preset/`.

    Args:
        args: `trainers/pretrain.py`'s flags.
        argv: the command line's arguments, recorded with the preset.
    """

    def __init__(self, args, argv=()):
        self.args = args
        self.argv = list(argv)
        self.workdir = args.workdir
        # Always set: runs in one process must not inherit another's policy.
        keras.mixed_precision.set_global_policy(
            DTYPE_POLICIES[getattr(args, "mixed_precision", None)])
        self.strategy = distribution.create_strategy(args.strategy, args.tpu)
        check_contrastive_options(True, args.jit_compile, 1,
                                  self.strategy.num_replicas_in_sync)
        self.chief = distribution.is_chief(self.strategy)
        keras.utils.set_random_seed(args.seed)
        tasks = () if args.dataset in PAIRS_ONLY_DATASETS else None
        # Data first, every record checked: a bad argument leaves no workdir.
        self.data = load_run_data(args, tasks=tasks)
        os.makedirs(self.workdir, exist_ok=True)
        self.logger = RunLogger(self.workdir, enabled=self.chief)

    def log(self, message):
        if self.chief:
            print(message, flush=True)

    def run(self):
        started = time.time()
        args = self.args
        dataset = self.data.dataset
        sizes = ", ".join(f"{s} {n:,}" for s, n in dataset.num_examples.items())
        self.log(f"[data] {dataset.name}: {sizes} image-text pairs")
        for line in [*dataset.notes, *dataset.bad_records.summary().splitlines()]:
            self.log(f"[data] {line}")
        if self.chief:
            write_json(os.path.join(self.workdir, RUN_FILE), run_record(args))

        config = get_model_config(args.model)
        preset = args.clip_preset or config["clip_preset"]
        with self.strategy.scope():
            clip = load_clip(preset)
        self.data.prepare(clip, config)
        self.log(f"[{STAGE}] Starting from CLIP preset {preset}.")
        settings = ContrastiveSettings(
            epochs=args.epochs, batch_size=args.batch_size,
            learning_rate=args.learning_rate, weight_decay=args.weight_decay,
            steps_per_epoch=args.steps_per_epoch,
            checkpoint_every=args.checkpoint_every, jit_compile=args.jit_compile,
        )
        verbosity = 0 if args.quiet or not self.chief else (
            1 if sys.stdout.isatty() else 2)
        result = ContrastiveStage(
            clip.backbone, self.data, self.strategy, settings, self.workdir,
            self.logger, self.log, chief=self.chief,
            worker=distribution.worker_id(self.strategy), verbosity=verbosity,
            hparams={"dataset": args.dataset, "clip_preset": str(preset),
                     "seed": args.seed},
        ).run()

        preset_dir = os.path.join(self.workdir, PRESET_DIR)
        if self.chief:
            save_clip_preset(clip, preset_dir, training={
                "command": shlex.join(["python", "trainers/pretrain.py",
                                       *self.argv]),
                "flags": run_record(args),
                "train_pairs": self.data.num_train_examples,
                "validation": result,
            })
            write_json(os.path.join(self.workdir, "metrics.json"), {
                "stages": {STAGE: result},
                "bad_records": self.data.bad_record_counts(),
            })
        self.log(self.summary_table(result))
        self.log(f"Done in {time.time() - started:.0f} s; preset: {preset_dir}")
        self.log(f"Train CMA-CLIP from it: python trainers/run.py --clip-preset "
                 f"{preset_dir} ...")
        return 0

    def summary_table(self, result):
        """Validation recall@K at the start and of the best epoch."""
        keys = [k for k in result["start"] if "_recall@" in k]
        lines = [f"{'validation':<28} {'start':>7} {'best':>7}"]
        for key in keys:
            lines.append(f"{key:<28} {result['start'][key]:>7.3f} "
                         f"{result['best'][key]:>7.3f}")
        lines.append(f"(best: epoch {result['best_epoch']}; "
                     f"{result['start'].get('count', 0):,} validation pairs)")
        return "\n".join(lines)
