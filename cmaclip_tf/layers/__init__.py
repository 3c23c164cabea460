"""Keras layers of CMA-CLIP: the two cross-modality attentions, the fixed
fusions of the ablations, the task heads; attention projections as 2-D
matmuls; CLIP's pooling and unit vectors."""

from cmaclip_tf.layers.average_fusion import AverageFusion
from cmaclip_tf.layers.concatenation_fusion import ConcatenationFusion
from cmaclip_tf.layers.end_of_text import end_of_text_embedding
from cmaclip_tf.layers.l2_normalize import l2_normalize
from cmaclip_tf.layers.matmul_einsum_dense import MatmulEinsumDense
from cmaclip_tf.layers.matmul_einsum_dense import use_matmul_projections
from cmaclip_tf.layers.mlp_head import MLPHead
from cmaclip_tf.layers.modality_attention import ModalityAttention
from cmaclip_tf.layers.sequence_wise_attention import SequenceWiseAttention

__all__ = [
    "AverageFusion",
    "ConcatenationFusion",
    "MLPHead",
    "MatmulEinsumDense",
    "ModalityAttention",
    "SequenceWiseAttention",
    "end_of_text_embedding",
    "l2_normalize",
    "use_matmul_projections",
]
