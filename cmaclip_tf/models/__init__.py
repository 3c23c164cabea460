"""CLIP loading, the tiny CLIP preset and the CMA-CLIP model."""

from cmaclip_tf.models.clip_components import CLIPComponents
from cmaclip_tf.models.clip_components import build_clip_backbone
from cmaclip_tf.models.clip_loader import load_clip
from cmaclip_tf.models.cma_clip import CMACLIP
from cmaclip_tf.models.cma_clip_factory import create_cma_clip
from cmaclip_tf.models.model_config import get_model_config
from cmaclip_tf.models.tiny_clip import TINY_CLIP_PRESET
