"""A stage's learning-rate schedule: linear warm-up, then cosine or constant.

What open_clip (`cosine_lr`) and big_vision (`warmup_cosine`) give: the rate
rises linearly from 0 to the group's peak over `warmup_steps` optimizer steps,
then follows a half cosine down to 0 at the stage's last step, or stays at the
peak. Built on Keras's `CosineDecay` (a constant is its `alpha=1`), evaluated
on each optimizer's own step counter, which the checkpoint holds, so a resumed
stage continues where it stopped.
"""

import dataclasses

import keras

DECAYS = ("cosine", "constant")


@dataclasses.dataclass(frozen=True)
class WarmupSchedule:
    """The shape of a stage's learning rate; each module group scales it.

    Args:
        total_steps: int. Optimizer steps in the stage (epochs times steps
            per epoch).
        warmup_steps: int. Steps of linear warm-up from 0 (0: none).
        decay: `"cosine"` (to 0 at `total_steps`) or `"constant"`.

    Example:
    ```python
    shape = WarmupSchedule(total_steps=1000, warmup_steps=100)
    optimizer = keras.optimizers.AdamW(learning_rate=shape(1e-5))
    float(shape(1e-5)(50))  # 5e-06, halfway up
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
        warmup = min(self.warmup_steps, self.total_steps)
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else peak_rate,
            decay_steps=max(self.total_steps - warmup, 1),
            alpha=1.0 if self.decay == "constant" else 0.0,
            warmup_target=peak_rate if warmup else None,
            warmup_steps=warmup,
        )
