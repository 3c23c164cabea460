"""Training losses beyond per-task cross-entropy.

- `contrastive_loss`, `global_batch_contrastive_loss`: CLIP's symmetric
  InfoNCE on one device, and its share per replica of the global batch's
  loss under `tf.distribute`; `clamp_logit_scale` keeps CLIP's temperature
  in range after a step.
"""

from cmaclip_tf.losses.contrastive_loss import INITIAL_LOGIT_SCALE
from cmaclip_tf.losses.contrastive_loss import MAX_LOGIT_SCALE
from cmaclip_tf.losses.contrastive_loss import clamp_logit_scale
from cmaclip_tf.losses.contrastive_loss import contrastive_loss
from cmaclip_tf.losses.contrastive_loss import global_batch_contrastive_loss
