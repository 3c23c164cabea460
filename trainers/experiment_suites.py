"""The experiment suites as data: methods, their trainers/run.py calls, labels.

`trainers/experiments.py` runs a suite; `trainers/experiment_report.py` writes
its report.
"""

SUITES = {"ablation": ("zero_shot", "clip_linear", "no_ma_sa", "no_ma", "full")}
METHOD_LABELS = {
    "zero_shot": "Zero-shot CLIP",
    "clip_linear": "Fine-tuned CLIP",
    "no_ma_sa": "CMA-CLIP w/o (MA + SA)",
    "no_ma": "CMA-CLIP w/o MA",
    "full": "CMA-CLIP",
}
# Per method, the trainers/run.py calls in order (after the shared flags).
METHOD_RUNS = {
    "zero_shot": [["--variant", "zero_shot"]],
    "clip_linear": [
        ["--variant", "clip_linear", "--stage", "warmup"],
        ["--variant", "clip_linear", "--stage", "end2end"],
    ],
    "no_ma_sa": [["--variant", "no_ma_sa", "--stage", "all"]],
    "no_ma": [["--variant", "no_ma", "--stage", "all"]],
    "full": [["--variant", "full", "--stage", "all"]],
}
# Methods whose λ is learned (the others' is a constant).
LEARNED_IMAGE_WEIGHT = ("full",)
# The stage whose best checkpoint is a run's final model: the last one run.
FINAL_STAGE_ORDER = ("zero_shot", "tuning", "end2end", "warmup")
DONE_FILE = "suite_run.json"
SUITE_FILE = "suite.json"
CONDITION_LABELS = {
    "as_is": "as is",
    "no_attribute_words": "attribute words removed",
    "correct_attribute_words": "correct attribute words",
    "noise_image": "noise image",
}
