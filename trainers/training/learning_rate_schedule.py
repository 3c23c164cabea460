"""A stage's learning-rate schedule: linear warm-up, then cosine or constant.

What open_clip (`cosine_lr`) and big_vision (`warmup_cosine`) give: the rate
rises linearly to the group's peak over `warmup_steps` optimizer steps, step
`s` at `peak * (s + 1) / warmup_steps` (open_clip's `_warmup_lr`: the first
step already trains, the last warm-up step is at the peak), then follows a
half cosine from the peak at step `warmup_steps` down to 0 at the stage's
last step, or stays at the peak. Evaluated on each optimizer's own step
counter, which the checkpoint holds, so a resumed stage continues where it
stopped.
"""

import dataclasses
import math

import keras
from keras import ops

DECAYS = ("cosine", "constant")


@dataclasses.dataclass(frozen=True)
class WarmupSchedule:
    """The shape of a stage's learning rate; each module group scales it.

    Args:
        total_steps: int. Optimizer steps in the stage (epochs times steps
            per epoch).
        warmup_steps: int. Steps of linear warm-up (0: none); step `s < warmup_steps`
            runs at `peak * (s + 1) / warmup_steps`.
        decay: `"cosine"` (to 0 at `total_steps`) or `"constant"`.

    Example:
    ```python
    shape = WarmupSchedule(total_steps=1000, warmup_steps=100)
    optimizer = keras.optimizers.AdamW(learning_rate=shape(1e-5))
    float(shape(1e-5)(0))   # 1e-07: step 0 is the first of 100 up
    float(shape(1e-5)(49))  # 5e-06, halfway up
    ```
    """

    total_steps: int
    warmup_steps: int = 0
    decay: str = "cosine"

    def __post_init__(self):
        if self.decay not in DECAYS:
            raise ValueError(
                f"Unknown learning-rate schedule {self.decay!r}; use one of {DECAYS}."
            )
        if self.total_steps < 0 or self.warmup_steps < 0:
            raise ValueError(
                f"Steps must be >= 0; got total_steps={self.total_steps}, "
                f"warmup_steps={self.warmup_steps}."
            )

    def __call__(self, peak_rate):
        """A `keras.optimizers.schedules.LearningRateSchedule` peaking at `peak_rate`."""
        return WarmupCosineDecay(
            peak_rate, total_steps=self.total_steps,
            warmup_steps=min(self.warmup_steps, self.total_steps),
            alpha=1.0 if self.decay == "constant" else 0.0,
        )


@keras.saving.register_keras_serializable(package="cmaclip_tf")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """open_clip's `cosine_lr`: linear warm-up, then a cosine to `alpha * peak`.

    Step `s < warmup_steps` runs at `peak * (s + 1) / warmup_steps`; step
    `s >= warmup_steps` at `peak * (alpha + (1 - alpha) * (1 + cos(pi * p)) / 2)`
    with `p = (s - warmup_steps) / (total_steps - warmup_steps)` (at most 1).
    `alpha=1` is a constant rate after the warm-up.

    Args:
        peak: float. The rate at the end of the warm-up.
        total_steps: int. Steps of the whole schedule.
        warmup_steps: int. Steps of linear warm-up (0: none).
        alpha: float. The final rate, as a fraction of `peak`.

    Example:
    ```python
    schedule = WarmupCosineDecay(1e-3, total_steps=10, warmup_steps=2)
    [float(schedule(s)) for s in (0, 1, 2, 6, 10)]  # 5e-4, 1e-3, 1e-3, 5e-4, 0
    ```
    """

    def __init__(self, peak, total_steps, warmup_steps=0, alpha=0.0):
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.alpha = float(alpha)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = float(max(self.warmup_steps, 1))
        warming = self.peak * ops.minimum(step + 1.0, warmup) / warmup
        progress = ops.clip(
            (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1),
            0.0, 1.0,
        )
        cosine = 0.5 * (1.0 + ops.cos(math.pi * progress))
        decayed = self.peak * (self.alpha + (1.0 - self.alpha) * cosine)
        return ops.where(step < self.warmup_steps, warming, decayed)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "alpha": self.alpha}
