"""Evaluation metrics of the paper: accuracy and recall at a precision."""

from cmaclip_tf.metrics.recall_at_precision import recall_at_precision
from cmaclip_tf.metrics.recall_at_precision import score_threshold_at_precision
