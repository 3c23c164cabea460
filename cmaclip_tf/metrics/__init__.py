"""Evaluation metrics: the paper's recall at a precision; retrieval recall@K."""

from cmaclip_tf.metrics.recall_at_precision import recall_at_precision
from cmaclip_tf.metrics.recall_at_precision import score_threshold_at_precision
from cmaclip_tf.metrics.retrieval_recall import retrieval_recall
