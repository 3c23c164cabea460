"""Training losses.

Per-task classification losses, with missing labels (-1) masked; each returns
`(loss_sum, count)` over the labelled rows, in `keras.ops` only:

- `masked_cross_entropy_sum` (`"ce"`): the paper's loss.
- `masked_generalized_cross_entropy_sum` (`"gce"`) and
  `masked_symmetric_cross_entropy_sum` (`"sce"`): robust to noisy labels.
- `get_loss(spec)`, `task_losses(spec, tasks)`: losses by name, parameters as
  data (`{"name": "gce", "q": 0.7}`).

CLIP's contrastive loss:

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
from cmaclip_tf.losses.cross_entropy import masked_cross_entropy_sum
from cmaclip_tf.losses.generalized_cross_entropy import (
    masked_generalized_cross_entropy_sum,
)
from cmaclip_tf.losses.label_log_probability import MISSING_LABEL
from cmaclip_tf.losses.loss_registry import LOSSES
from cmaclip_tf.losses.loss_registry import get_loss
from cmaclip_tf.losses.loss_registry import task_losses
from cmaclip_tf.losses.symmetric_cross_entropy import (
    masked_symmetric_cross_entropy_sum,
)
