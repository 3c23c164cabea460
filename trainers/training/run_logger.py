"""TensorBoard logging of a run: losses, metrics, learning rates, λ, hparams,
bad records and attention maps.

Writes `WORKDIR/tensorboard/<stage>/{train,validation}` with the
`tf.summary` APIs and the hparams plugin.
"""

import os

import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api


class RunLogger:
    """Summary writers per stage and split; a no-op on non-chief workers."""

    def __init__(self, workdir, enabled=True):
        self.root = os.path.join(workdir, "tensorboard")
        self.enabled = enabled
        self._writers = {}

    def _writer(self, stage, split):
        key = (stage, split)
        if key not in self._writers:
            self._writers[key] = tf.summary.create_file_writer(
                os.path.join(self.root, stage, split)
            )
        return self._writers[key]

    def hparams(self, stage, values):
        if not self.enabled:
            return
        with self._writer(stage, "train").as_default():
            hparams_api.hparams(values, trial_id=f"{stage}")

    def learning_rates(self, stage, step, rates):
        """Each module group's current learning rate (`{group: rate}`)."""
        if not self.enabled:
            return
        with self._writer(stage, "train").as_default():
            for group, rate in rates.items():
                tf.summary.scalar(f"learning_rate/{group}", rate, step=step)

    def epoch(self, stage, step, train_losses, metrics, predictions,
              weighted_losses=None):
        """An epoch's train losses and validation metrics.

        `weighted_losses` (`{name: (weight, loss)}`, e.g. the contrastive
        auxiliary loss) log as `loss/<name>`, and count weighted in
        `loss/total`.
        """
        if not self.enabled:
            return
        weighted_losses = weighted_losses or {}
        with self._writer(stage, "train").as_default():
            for task, loss in train_losses.items():
                tf.summary.scalar(f"loss/{task}", loss, step=step)
            for name, (_, loss) in weighted_losses.items():
                tf.summary.scalar(f"loss/{name}", loss, step=step)
            total = sum(train_losses.values()) + sum(
                weight * loss for weight, loss in weighted_losses.values())
            tf.summary.scalar("loss/total", total, step=step)
        with self._writer(stage, "validation").as_default():
            for task, values in metrics.items():
                for name, value in values.items():
                    if name != "count":
                        tf.summary.scalar(f"{name}/{task}", value, step=step)
                key = f"{task}_image_weight"
                if predictions and key in predictions:
                    labelled = predictions[f"{task}_label"] >= 0
                    tf.summary.histogram(
                        f"image_weight/{task}", predictions[key][labelled], step=step
                    )
        for writer in self._writers.values():
            writer.flush()

    def scalars(self, stage, split, step, values):
        """Logs `{tag: number}` to the stage's `split` writer."""
        if not self.enabled:
            return
        writer = self._writer(stage, split)
        with writer.as_default():
            for tag, value in values.items():
                tf.summary.scalar(tag, value, step=step)
        writer.flush()

    def bad_records(self, stage, step, counts, recovered=None):
        """Records skipped (`{split: {reason: n}}`) and kept by a fallback."""
        if not self.enabled:
            return
        with self._writer(stage, "train").as_default():
            for tag, values in (("bad_records", counts),
                                ("recovered_records", recovered or {})):
                for split, reasons in values.items():
                    for reason, count in reasons.items():
                        tf.summary.scalar(f"{tag}/{split}/{reason}", count,
                                          step=step)

    def attention_maps(self, stage, step, model, data, num_examples=4):
        """Logs the attention maps of the first validation examples.

        Args:
            model: the model being trained; variants without sequence-wise
                attention log nothing.
            data: `trainers.training.input_data.RunData`, prepared.
            num_examples: how many of the first good validation records.
        """
        if not self.enabled or getattr(model, "sequence_attention", None) is None:
            return
        from cmaclip_tf.inference.attention_map import attention_map_figures

        features, texts = data.preview("validation", num_examples)
        if not texts:
            return
        preprocess = data.image_preprocessor
        figures = attention_map_figures(
            model, features, texts, data.text_preprocessor, preprocess.mean,
            preprocess.std,
        )
        self.image(stage, "attention_maps", figures, step)

    def image(self, stage, name, images, step):
        """Logs images `[N, H, W, C]` in [0, 1] (e.g. attention maps)."""
        if not self.enabled:
            return
        with self._writer(stage, "validation").as_default():
            tf.summary.image(name, images, step=step, max_outputs=len(images))
