"""The experiment suites as data: methods, their trainers/run.py calls, labels.

`trainers/experiments.py` runs a suite; `trainers/suites/experiment_report.py` writes
its report.
"""

SUITES = {
    "ablation": ("zero_shot", "finetuned_clip", "clip_linear", "no_ma_sa",
                 "no_ma", "full", "full_contrastive"),
    # One line per method (and loss) against the rate of one noise dial.
    "noise_sweep": ("no_ma_sa", "no_ma", "full"),
}
# A sweep's dials: the trainers/run.py flag that sets each.
DIALS = {
    "misleading_title": "--misleading-title",
    "irrelevant_image": "--irrelevant-image",
    "label_noise": "--label-noise",
}
DIAL_LABELS = {
    "misleading_title": "misleading titles (share per task)",
    "irrelevant_image": "irrelevant images (share per task)",
    "label_noise": "training label noise (share flipped per task)",
}
LOSS_LABELS = {"ce": "cross-entropy", "gce": "GCE", "sce": "SCE"}
# α of `full_contrastive`: CMA-CLIP plus α × CLIP's image-title InfoNCE in
# the end2end stage (the paper's future work, section 5).
CONTRASTIVE_WEIGHT = 0.1
METHOD_LABELS = {
    "zero_shot": "Zero-shot CLIP",
    "finetuned_clip": "Fine-tuned CLIP",
    "clip_linear": "CLIP + linear heads",
    "no_ma_sa": "CMA-CLIP w/o (MA + SA)",
    "no_ma": "CMA-CLIP w/o MA",
    "full": "CMA-CLIP",
    "full_contrastive": f"CMA-CLIP + InfoNCE (α = {CONTRASTIVE_WEIGHT:g})",
}
# Per method, the trainers/run.py calls in order (after the shared flags).
METHOD_RUNS = {
    "zero_shot": [["--variant", "zero_shot"]],
    "finetuned_clip": [["--variant", "finetuned_clip"]],
    "clip_linear": [
        ["--variant", "clip_linear", "--stage", "warmup"],
        ["--variant", "clip_linear", "--stage", "end2end"],
    ],
    "no_ma_sa": [["--variant", "no_ma_sa", "--stage", "all"]],
    "no_ma": [["--variant", "no_ma", "--stage", "all"]],
    "full": [["--variant", "full", "--stage", "all"]],
    "full_contrastive": [["--variant", "full", "--stage", "all",
                          "--contrastive-weight", str(CONTRASTIVE_WEIGHT)]],
}
# Methods whose λ is learned (the others' is a constant).
LEARNED_IMAGE_WEIGHT = ("full", "full_contrastive")
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


def sweep_point_name(dial, rate):
    """The folder of one rate of a sweep: `misleading_title_0.2`."""
    return f"{dial}_{rate:g}"


def sweep_config_name(method, loss, losses):
    """A line of a sweep: the method, and its loss when several are swept."""
    return method if list(losses) == ["ce"] else f"{method}-{loss}"
