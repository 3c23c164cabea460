"""Best and latest checkpoints of a stage, written atomically.

`WORKDIR/<stage>/latest/` is a `tf.train.CheckpointManager` (model,
optimizers, the dropout layers' random states, epoch and step counters, the
best score and its epoch): TensorFlow writes the data files first
and the `checkpoint` index last with an atomic rename, so a process killed at
any moment (even SIGKILL) leaves the previous checkpoint readable.
`WORKDIR/<stage>/best.weights.h5` holds the model weights with the best
validation score, written to a temporary file and renamed into place.
"""

import os

import tensorflow as tf

from cmaclip_tf.runtime import atomic_files
from cmaclip_tf.runtime.atomic_files import atomic_path

# The stage's weights after WiSE-FT; later stages start from it.
WISE_FT_WEIGHTS_FILE = "wise_ft.weights.h5"


def write_json(path, value):
    """A run's record (best.json, done.json, metrics.json), atomically, keys sorted."""
    atomic_files.write_json(path, value, sort_keys=True)


class StageCheckpoints:
    """Latest (resumable) and best (model only) checkpoints of one stage.

    Args:
        stage_dir: `WORKDIR/<stage>`.
        model: the model.
        optimizers: dict of group name to optimizer.
        write: bool. False on non-chief workers, which save to a scratch
            folder so every worker runs the same collective save.
        weight_average: optional `trainers.training.weight_average.WeightAverage`,
            checkpointed with the optimizers.
        selection: optional `trainers.training.checkpoint_selection.
            CheckpointSelection`, whose per-task record is checkpointed too.
    """

    def __init__(self, stage_dir, model, optimizers, write=True, worker=0,
                 weight_average=None, selection=None):
        self.stage_dir = stage_dir
        self.model = model
        self.write = write
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.best_score = tf.Variable(
            -1.0, dtype=tf.float64, trainable=False, name="best_score"
        )
        self.best_epoch = tf.Variable(
            0, dtype=tf.int64, trainable=False, name="best_epoch"
        )
        # The validation score of the stage's starting model (-1: not yet).
        self.start_score = tf.Variable(
            -1.0, dtype=tf.float64, trainable=False, name="start_score"
        )
        self.checkpoint = tf.train.Checkpoint(
            model=model,
            optimizers=dict(optimizers),
            # Not among the model's checkpointed objects: without them a
            # resumed run would draw the dropout masks of its first steps.
            random_states=random_states(model),
            # Every variable by its path: TensorFlow's checkpoint does not
            # follow a Keras model's lists of layers (heads, modality
            # attentions, fusion blocks), and the optimizers hold only the
            # trained ones: without this a resumed run would lose
            # non-trainable state such as a head's zero-shot logit scale.
            model_variables={v.path: v for v in model.variables},
            epoch=self.epoch,
            step=self.step,
            best_score=self.best_score,
            best_epoch=self.best_epoch,
            start_score=self.start_score,
            **({} if weight_average is None
               else {"weight_average": weight_average}),
            **({} if selection is None
               else {"selection": selection.trackables()}),
        )
        latest_dir = os.path.join(stage_dir, "latest")
        if not write:
            latest_dir = os.path.join(stage_dir, f".worker_{worker}", "latest")
        os.makedirs(latest_dir, exist_ok=True)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, latest_dir, max_to_keep=1
        )

    @property
    def best_weights_path(self):
        return os.path.join(self.stage_dir, "best.weights.h5")

    @property
    def done_path(self):
        return os.path.join(self.stage_dir, "done.json")

    def restore_latest(self):
        """Restores the latest checkpoint; returns True if there was one."""
        path = self.manager.latest_checkpoint
        if path is None:
            return False
        self.checkpoint.restore(path).assert_existing_objects_matched()
        return True

    def save_latest(self, epoch, step):
        self.epoch.assign(epoch)
        self.step.assign(step)
        self.manager.save()

    def save_best(self, score, info, epoch):
        """Records `score` of `epoch` (1-based; 0: the start) as the best;
        writes the weights."""
        self.best_score.assign(score)
        self.best_epoch.assign(epoch)
        if not self.write:
            return
        with atomic_path(self.best_weights_path) as tmp:
            self.model.save_weights(tmp)
        write_json(os.path.join(self.stage_dir, "best.json"), info)

    def mark_done(self, payload):
        if self.write:
            write_json(self.done_path, payload)

    def is_done(self):
        return os.path.isfile(self.done_path)


def random_states(model):
    """The states of the model's random-seed generators (its dropout layers)."""
    # Keras names every `SeedGenerator`'s state variable so.
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def stage_best_weights(workdir, stage):
    """The best weights file of a finished or running stage, or None: after
    WiSE-FT (`trainers.training.wise_ft`), the interpolated one."""
    for name in (WISE_FT_WEIGHTS_FILE, "best.weights.h5"):
        path = os.path.join(workdir, stage, name)
        if os.path.isfile(path):
            return path
    return None

