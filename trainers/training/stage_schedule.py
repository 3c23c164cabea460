"""The three training stages as data: which module groups train, at what rate.

As in big_vision, freezing is declared, not coded. Each stage maps the model's
module groups (`CMACLIP.module_groups()`) to a learning-rate multiplier of the
run's base rate, or `None` for frozen: frozen groups get no gradients and no
optimizer state. Paper, section 4.2.2 and Algorithm 1.
"""

import dataclasses

STAGE_ORDER = ("warmup", "end2end", "tuning")


@dataclasses.dataclass(frozen=True)
class StageSchedule:
    """One stage: a name and a learning-rate multiplier per module group."""

    name: str
    learning_rate_multipliers: dict

    def trainable_groups(self):
        return [
            group
            for group, multiplier in self.learning_rate_multipliers.items()
            if multiplier is not None
        ]

    def frozen_groups(self):
        return [
            group
            for group, multiplier in self.learning_rate_multipliers.items()
            if multiplier is None
        ]

    def clip_frozen(self):
        return self.learning_rate_multipliers["clip"] is None

    def fusion_frozen(self):
        return self.clip_frozen() and self.learning_rate_multipliers["fusion"] is None


STAGES = {
    # CLIP frozen; train the fusion transformer, modality attentions, heads.
    "warmup": StageSchedule(
        "warmup",
        {"clip": None, "fusion": 1.0, "modality_attention": 1.0, "heads": 1.0},
    ),
    # Everything trains.
    "end2end": StageSchedule(
        "end2end",
        {"clip": 1.0, "fusion": 1.0, "modality_attention": 1.0, "heads": 1.0},
    ),
    # Only the per-task modality attentions and heads.
    "tuning": StageSchedule(
        "tuning",
        {"clip": None, "fusion": None, "modality_attention": 1.0, "heads": 1.0},
    ),
}


def previous_stage(stage):
    """The stage whose best checkpoint `stage` starts from, or None."""
    index = STAGE_ORDER.index(stage)
    return STAGE_ORDER[index - 1] if index > 0 else None
