"""Per-task classification losses with missing labels (-1) masked.

- `masked_cross_entropy_sum` (`"ce"`): the paper's loss.
- `masked_generalized_cross_entropy_sum` (`"gce"`) and
  `masked_symmetric_cross_entropy_sum` (`"sce"`): robust to noisy labels.
- `get_loss(spec)`, `task_losses(spec, tasks)`: losses by name, parameters as
  data (`{"name": "gce", "q": 0.7}`).

Each returns `(loss_sum, count)` over the labelled rows, in `keras.ops` only.
"""

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
