"""Evaluation on any strategy: per-task predictions, metrics and thresholds.

`Evaluator` runs a model's inference over a (distributed) dataset and
gathers per-task probabilities, λ and labels; `evaluate_predictions` turns
them into accuracy, recall at 90% precision, loss and λ statistics;
`score_thresholds` picks each task's acceptance threshold on validation.
"""

import numpy as np
import tensorflow as tf

from cmaclip_tf.metrics import recall_at_precision
from cmaclip_tf.metrics import score_threshold_at_precision

TARGET_PRECISION = 0.9


class Evaluator:
    """Per-task probabilities, λ and labels of a model over a dataset.

    Args:
        forward: features -> model outputs in inference mode
            (`{task}_logits`, `{task}_image_weight`).
        tasks: task names.
        strategy: `tf.distribute.Strategy` (default: the current one); give
            `predict` a dataset it distributed, or a plain one on the
            default strategy.
    """

    def __init__(self, forward, tasks, strategy=None):
        self.forward = forward
        self.tasks = list(tasks)
        self.strategy = strategy or tf.distribute.get_strategy()
        # Traced once per dataset spec, whose batch size is unknown, so the
        # smaller last batch needs no trace of its own (`predict`); without
        # a spec, one more trace for it, not one per shape. No AutoGraph:
        # nothing here branches on tensors.
        self._eval_step = tf.function(self._distributed_step,
                                      reduce_retracing=True, autograph=False)

    def _replica_step(self, features, labels):
        outputs = self.forward(features)
        result = {}
        for task in self.tasks:
            result[f"{task}_probabilities"] = tf.nn.softmax(
                tf.cast(outputs[f"{task}_logits"], tf.float32), axis=-1
            )
            result[f"{task}_image_weight"] = outputs[f"{task}_image_weight"]
            result[f"{task}_label"] = tf.cast(labels[task], tf.int32)
        return result

    def _distributed_step(self, features, labels):
        per_replica = self.strategy.run(self._replica_step, args=(features, labels))
        return {
            key: self.strategy.gather(value, axis=0)
            for key, value in per_replica.items()
        }

    def predict(self, dataset):
        """`{task}_probabilities`, `_image_weight`, `_label` arrays (numpy);
        `{}` for an empty dataset."""
        spec = getattr(dataset, "element_spec", None)
        if spec is not None:
            self._eval_step.get_concrete_function(*spec)
        chunks = [
            {k: v.numpy() for k, v in self._eval_step(features, labels).items()}
            for features, labels in dataset
        ]
        if not chunks:
            return {}
        return {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}

    def evaluate(self, dataset):
        """Accuracy, recall at 90% precision, loss and λ per task."""
        return evaluate_predictions(self.predict(dataset), self.tasks)


def evaluate_predictions(predictions, tasks, precision=TARGET_PRECISION):
    """Per-task metrics from `StageTrainer.predict`'s arrays."""
    metrics = {}
    for task in tasks:
        if not predictions:
            metrics[task] = {"count": 0}
            continue
        labels = predictions[f"{task}_label"]
        labelled = labels >= 0
        probabilities = predictions[f"{task}_probabilities"][labelled]
        labels = labels[labelled]
        image_weight = predictions[f"{task}_image_weight"][labelled]
        count = int(labelled.sum())
        if count == 0:
            metrics[task] = {"count": 0}
            continue
        top1 = probabilities.argmax(-1)
        scores = probabilities.max(-1)
        correct = top1 == labels
        picked = probabilities[np.arange(count), labels]
        metrics[task] = {
            "count": count,
            "accuracy": float(correct.mean()),
            "recall_at_90_precision": recall_at_precision(scores, correct, precision),
            "loss": float(-np.log(np.maximum(picked, 1e-12)).mean()),
            "image_weight_mean": float(image_weight.mean()),
            "image_weight_std": float(image_weight.std()),
        }
    return metrics


def score_thresholds(predictions, tasks, precision=TARGET_PRECISION):
    """Per task, the lowest top-1 score at which predictions reach `precision`.

    Picked on validation predictions; `None` where no threshold reaches it
    (then nothing is accepted).
    """
    thresholds = {}
    for task in tasks:
        if not predictions:
            thresholds[task] = None
            continue
        labels = predictions[f"{task}_label"]
        labelled = labels >= 0
        probabilities = predictions[f"{task}_probabilities"][labelled]
        correct = probabilities.argmax(-1) == labels[labelled]
        threshold = score_threshold_at_precision(
            probabilities.max(-1), correct, precision
        )
        thresholds[task] = None if np.isinf(threshold) else threshold
    return thresholds
