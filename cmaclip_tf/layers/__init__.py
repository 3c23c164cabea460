"""Keras layers of CMA-CLIP: the two cross-modality attentions."""

from cmaclip_tf.layers.average_fusion import AverageFusion
from cmaclip_tf.layers.average_fusion import ConcatenationFusion
from cmaclip_tf.layers.mlp_head import MLPHead
from cmaclip_tf.layers.modality_attention import ModalityAttention
from cmaclip_tf.layers.sequence_wise_attention import SequenceWiseAttention

__all__ = [
    "AverageFusion",
    "ConcatenationFusion",
    "MLPHead",
    "ModalityAttention",
    "SequenceWiseAttention",
]
