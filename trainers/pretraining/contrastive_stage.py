"""Contrastive training of CLIP as a stage: epochs, checkpoints, resume, TensorBoard.

What `trainers/pretrain.py` runs, and what `trainers/run.py --variant
finetuned_clip` runs before classifying zero-shot. In `STAGE_DIR`
(`WORKDIR/contrastive/`): `latest/` (model, optimizer, epoch and step,
resumable after a kill), `best.weights.h5` and `best.json` (the epoch with
the best validation retrieval recall, the starting point included),
`start.json` (the starting point's recall) and `done.json`. The learning
rate warms up over the first 5% of the steps, then decays on a cosine to 0. TensorBoard
(`WORKDIR/tensorboard/contrastive/`): `loss/contrastive`, `logit_scale`
(the logits' scale, `exp` of the learned log-scale) and
`learning_rate/clip` on train; `image_to_text_recall@K` and
`text_to_image_recall@K` on validation, step 0 being the start.
"""

import dataclasses
import json
import os

import keras

from trainers.pretraining.contrastive_trainer import ContrastiveTrainer
from trainers.pretraining.contrastive_trainer import selection_score
from trainers.training.checkpoints import StageCheckpoints
from trainers.training.checkpoints import write_json
from trainers.training.fused_adamw import weight_decay_setting

STAGE = "contrastive"


@dataclasses.dataclass
class ContrastiveSettings:
    """How a contrastive stage trains.

    Attributes:
        epochs, batch_size (global): as named.
        weight_decay: a number (decoupled) or `{"kind", "rate"}` (`FusedAdamW`).
        learning_rate: the peak of the schedule (warmup, then cosine to 0
            at the last step).
        warmup_fraction: share of all steps spent warming up.
        steps_per_epoch: optional cap on the steps of an epoch.
        checkpoint_every: steps between mid-epoch checkpoints.
        jit_compile: XLA-compile the train step.
    """

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    warmup_fraction: float = 0.05
    steps_per_epoch: int = None
    checkpoint_every: int = 50
    jit_compile: bool = False


class ContrastiveStage:
    """Trains a CLIP backbone contrastively on a run's image-text pairs.

    Args:
        backbone: `keras_hub.models.CLIPBackbone`, built under
            `strategy.scope()`; left holding the best weights.
        data: `trainers.training.input_data.RunData`, prepared for this CLIP; its
            labels, if any, are ignored.
        strategy: `tf.distribute.Strategy`.
        settings: `ContrastiveSettings`.
        workdir: the run's folder (`contrastive/` and `tensorboard/` go in).
        logger: `trainers.training.run_logger.RunLogger`.
        log: prints a line (on the chief only).
        chief, worker: this worker's role (`trainers.training.distribution`).
        verbosity: the progress bar's (0: none).
        hparams: extra hyperparameters for TensorBoard.
    """

    def __init__(self, backbone, data, strategy, settings, workdir, logger, log,
                 chief=True, worker=0, verbosity=0, hparams=None):
        self.backbone = backbone
        self.data = data
        self.strategy = strategy
        self.settings = settings
        self.stage_dir = os.path.join(workdir, STAGE)
        self.logger = logger
        self.log = log
        self.chief = chief
        self.worker = worker
        self.verbosity = verbosity
        self.hparams = dict(hparams or {})
        self._best = None  # (weights, best.json record) once a best is saved.

    def run(self):
        """Trains (or resumes, or skips a finished stage); returns its result.

        Result: `{"start": recall, "best": recall, "best_epoch": int,
        "best_score": float}`, each recall over the whole validation split.
        """
        settings = self.settings
        os.makedirs(self.stage_dir, exist_ok=True)
        steps = self.data.steps_per_epoch(settings.batch_size,
                                          settings.steps_per_epoch)
        total_steps = steps * settings.epochs
        trainer = ContrastiveTrainer(
            self.backbone, self.strategy, settings.learning_rate,
            settings.weight_decay, total_steps=total_steps,
            warmup_steps=round(settings.warmup_fraction * total_steps),
            jit_compile=settings.jit_compile,
        )
        checkpoints = StageCheckpoints(
            self.stage_dir, self.backbone, {"clip": trainer.optimizer},
            write=self.chief, worker=self.worker,
        )
        if checkpoints.is_done():
            self.log(f"[{STAGE}] Already finished in {self.stage_dir}; skipping.")
            self.backbone.load_weights(checkpoints.best_weights_path)
            return _read_json(checkpoints.done_path)

        validation = self.strategy.experimental_distribute_dataset(
            self.data.eval_batches("validation", settings.batch_size)
        )
        start_path = os.path.join(self.stage_dir, "start.json")
        if checkpoints.restore_latest():
            self.log(
                f"[{STAGE}] Resuming from {checkpoints.manager.latest_checkpoint} "
                f"(epoch {int(checkpoints.epoch)}, step {int(checkpoints.step)})."
            )
            start = _read_json(start_path)
        else:
            start = trainer.evaluate(validation)
            self.log(f"[{STAGE}] validation at the start: {_recall_text(start)}")
            # The start competes for best: training may not beat it.
            self._save_best(checkpoints, selection_score(start),
                            {"epoch": 0, "validation": start})
            if self.chief:
                write_json(start_path, start)
            decay_kind, decay_rate = weight_decay_setting(settings.weight_decay)
            self.logger.hparams(STAGE, {
                **self.hparams, "epochs": settings.epochs,
                "batch_size": settings.batch_size,
                "learning_rate": settings.learning_rate,
                "weight_decay": decay_rate, "weight_decay_kind": decay_kind,
                "replicas": self.strategy.num_replicas_in_sync,
            })
            self.logger.scalars(STAGE, "validation", 0, _recall_scalars(start))

        for epoch in range(int(checkpoints.epoch), settings.epochs):
            first_step = int(checkpoints.step) if epoch == int(checkpoints.epoch) else 0
            dataset = self.strategy.experimental_distribute_dataset(
                self.data.train_batches(epoch, settings.batch_size,
                                        skip_batches=first_step)
            )
            self.log(f"[{STAGE}] Epoch {epoch + 1}/{settings.epochs}")
            progress = keras.utils.Progbar(steps, verbose=self.verbosity,
                                           stateful_metrics=["loss", "scale"])
            if first_step:
                progress.update(first_step)

            def on_step(step, loss, epoch=epoch, first_step=first_step):
                done = first_step + step + 1
                progress.update(done, [("loss", loss), ("scale", trainer.scale)])
                if done % settings.checkpoint_every == 0 and done < steps:
                    checkpoints.save_latest(epoch, done)

            loss = trainer.train_steps(dataset, steps - first_step, on_step)
            if trainer.steps_run < steps - first_step:
                self.log(f"[{STAGE}] The training data ended after "
                         f"{first_step + trainer.steps_run} of {steps} steps.")
            recall = trainer.evaluate(validation)
            score = selection_score(recall)
            self.log(f"[{STAGE}] loss {loss:.4f}, scale {trainer.scale:.1f}; "
                     f"validation {_recall_text(recall)}")
            if score > float(checkpoints.best_score):
                self._save_best(checkpoints, score,
                                {"epoch": epoch + 1, "validation": recall})
                self.log(f"[{STAGE}] New best checkpoint (epoch {epoch + 1}).")
            checkpoints.save_latest(epoch + 1, 0)
            # Logging comes after the checkpoints: it can never cost an epoch.
            global_step = (epoch + 1) * steps
            self.logger.scalars(STAGE, "train", global_step, {
                "loss/contrastive": loss, "logit_scale": trainer.scale,
                "learning_rate/clip": trainer.learning_rate,
            })
            self.logger.scalars(STAGE, "validation", global_step,
                                _recall_scalars(recall))

        best = self._restore_best(checkpoints)
        result = {"start": start, "best": best["validation"],
                  "best_epoch": best["epoch"],
                  "best_score": float(checkpoints.best_score)}
        checkpoints.mark_done(result)
        return result

    def _save_best(self, checkpoints, score, info):
        """Saves the best weights (the chief, to disk) and keeps them here.

        Every worker keeps its own copy, the same on all (the score comes
        from embeddings gathered from every replica), so no worker waits
        for the chief's file at the end.
        """
        checkpoints.save_best(score, info, info["epoch"])
        self._best = (self.backbone.get_weights(), info)

    def _restore_best(self, checkpoints):
        """Puts the best weights back; returns their `best.json` record."""
        if self._best is not None:
            self.backbone.set_weights(self._best[0])
            return self._best[1]
        # Resumed, and no epoch since beat the best: the chief's files.
        self.backbone.load_weights(checkpoints.best_weights_path)
        return _read_json(os.path.join(self.stage_dir, "best.json"))


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def _recall_scalars(recall):
    return {k: v for k, v in recall.items() if "_recall@" in k}


def _recall_text(recall):
    """`i->t r@1 0.120 r@5 0.400, t->i r@1 ...` of a recall dict."""
    parts = []
    for direction, short in (("image_to_text", "i->t"), ("text_to_image", "t->i")):
        values = " ".join(
            f"r@{k.split('@')[1]} {v:.3f}" for k, v in recall.items()
            if k.startswith(f"{direction}_recall@")
        )
        parts.append(f"{short} {values}")
    return ", ".join(parts) + f" ({recall.get('count', 0):,} pairs)"
