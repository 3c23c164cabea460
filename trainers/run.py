"""Trains CMA-CLIP in the paper's three stages.

  python trainers/run.py --dataset synthetic --stage all
  python trainers/run.py --dataset fashion_gen --data-dir DIR --model vit_b32

Outputs land in --workdir: <stage>/ (best and latest checkpoints),
tensorboard/, metrics.json, label_vocabularies.json, run.json, data.json,
bad_records.csv and inference/ (what `python -m serving.export` turns into a
SavedModel).
"""

import argparse
import os
import sys

if __package__ in (None, ""):
    # Run as a script: make the repository importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cmaclip_tf.configs.variants import ALL_VARIANTS  # noqa: E402
from trainers import command_line  # noqa: E402
from trainers.training.stage_schedule import STAGE_ORDER  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    command_line.add_data_arguments(
        parser,
        "synthetic: generated product attributes (no files needed); "
        "manifest: CSV/JSONL manifests; food101: UPMC Food-101 folder; "
        "fashion_gen: Fashion-Gen HDF5 files; tfds:upmc_food101 or "
        "tfds:fashion_gen: a built TFDS dataset in --data-dir.",
    )

    noise = parser.add_argument_group(
        "noise", "Noise experiments (validation and test stay clean).")
    noise.add_argument("--label-noise", type=command_line.rate, default=0.0,
                       help="Flip this share of the training labels of every "
                       "task to another class, seeded by --seed (any dataset).")
    for dial, what in (("misleading-title", "titles that name a wrong value "
                        "for the task, as a compatible product's ('matches red "
                        "shoes')"),
                       ("irrelevant-image", "images that show another "
                        "product's value of the task"),
                       ("title-mention", "titles that name the task's value "
                        "(0: titles never name it; defaults 0.67 color, 0.25 "
                        "pattern, 0.15 style)")):
        noise.add_argument(f"--{dial}", type=command_line.task_rates,
                           help=f"synthetic: the share of {what}: a rate for "
                           "every task, or task=rate pairs (color=0.2,style=0.1).")

    model = parser.add_argument_group("model")
    model.add_argument("--model", default="tiny",
                       help="Model config: tiny, vit_b32, or a JSON file.")
    model.add_argument("--clip-preset", help="keras-hub CLIP preset name or "
                       "local preset folder (overrides the model config's).")
    model.add_argument("--variant", default="full",
                       choices=ALL_VARIANTS,
                       help="full CMA-CLIP; the paper's ablations no_ma "
                       "(without modality attention) and no_ma_sa (without "
                       "both attentions); the baselines clip_linear (CLIP + "
                       "linear heads: pooled embeddings into a linear head "
                       "per task), zero_shot (CLIP with class prompts, no "
                       "training) and finetuned_clip (the paper's fine-tuned "
                       "CLIP: CLIP trained contrastively on the training "
                       "split's image-title pairs for the end2end epochs, "
                       "then zero_shot).")
    model.add_argument("--prompt", default="a photo of a {label}",
                       help="zero_shot, finetuned_clip: the prompt template "
                       "of a class.")

    training = parser.add_argument_group("training")
    training.add_argument("--stage", default="all",
                          choices=list(STAGE_ORDER) + ["all"],
                          help="warmup: CLIP frozen; end2end: all trainable; "
                          "tuning: only modality attention and heads; all: the "
                          "three in order (tuning only with several tasks).")
    training.add_argument("--recipe",
                          help="Training recipe: a built-in name (synthetic, "
                          "retail, fashion_gen, food101) or a JSON file; "
                          "default: the dataset's (synthetic for synthetic, "
                          "retail for a manifest). The flags below override "
                          "single values; the run writes the result to "
                          "WORKDIR/recipe.json.")
    training.add_argument("--recipe-set", action="append", metavar="KEY=VALUE",
                          type=command_line.recipe_setting,
                          help="Set one recipe value, e.g. "
                          "stages.end2end.learning_rate_multipliers.clip=0.1 "
                          "or stages.*.warmup_steps=100 (repeatable).")
    training.add_argument("--epochs", type=command_line.non_negative_int,
                          help="Epochs for every stage (0: evaluate the "
                          "stage's starting point without training).")
    for stage in STAGE_ORDER:
        training.add_argument(f"--{stage}-epochs",
                              type=command_line.non_negative_int,
                              help=f"Epochs of the {stage} stage.")
    training.add_argument("--steps-per-epoch", type=command_line.positive_int,
                          help="Cap on steps per epoch (quick runs).")
    training.add_argument("--batch-size", type=command_line.positive_int,
                          help="Global batch size: examples per optimizer step.")
    training.add_argument("--accumulate-steps", type=command_line.positive_int,
                          default=1,
                          help="Split each step's batch into this many "
                          "micro-batches whose gradients add up, so a large "
                          "--batch-size fits the device (same update).")
    training.add_argument("--learning-rate", type=command_line.positive_float,
                          help="Base (peak) learning rate.")
    training.add_argument("--lr-schedule", choices=["cosine", "constant"],
                          help="After the warm-up: cosine decay to 0 at the "
                          "stage's end, or constant.")
    training.add_argument("--warmup-steps", type=command_line.non_negative_int,
                          help="Steps of linear learning-rate warm-up from 0 "
                          "at the start of every stage.")
    training.add_argument("--weight-decay", type=command_line.non_negative_float,
                          help="Weight-decay rate, of the recipe's kind (l2 in "
                          "the paper recipes, decoupled in synthetic; not on "
                          "LayerNorm scales, biases and the modality-attention "
                          "vector).")
    training.add_argument("--clip-norm", type=command_line.non_negative_float,
                          help="Clip gradients to this global norm (0: off).")
    training.add_argument("--early-stopping-patience",
                          type=command_line.non_negative_int,
                          help="Stop a stage after this many epochs without "
                          "a better validation score (0: never).")
    training.add_argument("--selection-metric", default="auto",
                          choices=["auto", "recall_at_90_precision", "accuracy"],
                          help="Validation metric that picks the best "
                          "checkpoint (auto: the recipe's: accuracy for "
                          "food101 and fashion_gen, recall at 90%% precision "
                          "otherwise).")
    training.add_argument("--task-selection", choices=["average", "every_task"],
                          help="What makes an epoch a stage's best: the "
                          "highest task-average score (average, the paper "
                          "recipes'), or that without any task's validation "
                          "accuracy below the stage's start, each task keeping "
                          "its own best epoch where only per-task weights train "
                          "(every_task, the default recipe's).")
    training.add_argument("--cache-features", action="store_true",
                          help="In frozen stages, compute the frozen front of "
                          "the model once, to disk (WORKDIR/<stage>/"
                          "feature_cache/), and read it every epoch.")
    training.add_argument("--keep-feature-cache", action="store_true",
                          help="Keep the feature cache when the stage ends "
                          "(default: delete it).")
    training.add_argument("--checkpoint-every", type=command_line.positive_int,
                          default=50,
                          help="Steps between mid-epoch checkpoints.")
    training.add_argument("--loss", type=command_line.loss_spec,
                          help="Per-task loss (default: the recipe's, ce in "
                          "every built-in one): ce (the paper's), gce "
                          "(generalized cross-entropy, q=0.7) or sce "
                          "(symmetric cross-entropy, alpha=0.1, beta=1); "
                          "task=name pairs (color=gce,style=ce), or JSON with "
                          "parameters ('{\"name\": \"gce\", \"q\": 0.5}').")
    training.add_argument("--contrastive-weight",
                          type=command_line.non_negative_float, default=0.0,
                          help="α: add α times CLIP's image-title InfoNCE "
                          "(global batch, CLIP's pooled embeddings) to the "
                          "classification loss in stages where CLIP trains "
                          "(end2end); 0, the paper's recipe, adds nothing.")
    tools = parser.add_argument_group(
        "fine-tuning tools", "Each sets a recipe field (see trainers/training/recipe.py); "
        "all are off by default.")
    tools.add_argument("--ema-decay", type=command_line.fraction,
                       help="Keep an exponential moving average of the trained "
                       "weights with this decay (e.g. 0.99; warmed up as "
                       "min(decay, (1+t)/(10+t))); validation, the best "
                       "checkpoint, the final evaluation and the export use "
                       "the average. Every stage.")
    tools.add_argument("--augment",
                       choices=["crop", "randaugment", "crop+randaugment"],
                       help="Augment training images (never evaluation or "
                       "export), seeded by --seed: crop (Keras RandomZoom + "
                       "RandomTranslation, a random resized crop), randaugment "
                       "(Keras RandAugment) or both. A stage reads raw images "
                       "then, even with --cache-features.")
    tools.add_argument("--label-smoothing", type=command_line.unit_interval,
                       help="Label smoothing ε of the cross-entropy (default "
                       "0): the target is (1-ε) one-hot + ε/classes.")
    tools.add_argument("--wise-ft", action="store_true",
                       help="WiSE-FT after end2end: CLIP's weights set to "
                       "(1-α) start + α fine-tuned, α in 0, 0.25, 0.5, 0.75, "
                       "1 picked on validation; fusion and heads stay "
                       "fine-tuned.")
    tools.add_argument("--lora-rank", type=command_line.positive_int,
                       help="end2end trains LoRA factors of this rank on "
                       "CLIP's query and value projections (both towers) "
                       "instead of CLIP's weights; merged into the kernels in "
                       "checkpoints and the export.")
    training.add_argument("--seed", type=int, default=0)
    training.add_argument("--workdir", default="runs/default",
                          help="Where checkpoints, metrics and TensorBoard go. "
                          "The same command again resumes there; a command "
                          "on other data (files, tasks, classes) is refused.")
    training.add_argument("--overwrite", action="store_true",
                          help="Delete the run in --workdir first and start "
                          "over.")

    system = command_line.add_system_arguments(parser)
    command_line.add_mixed_precision_argument(system)
    system.add_argument("--steps-per-execution", type=command_line.positive_int,
                        default=1,
                        help="Train steps per call into the accelerator: the "
                        "host syncs (losses, progress bar) once per N steps.")
    system.add_argument("--export", metavar="MODEL_BASE_PATH",
                        help="After training, export a SavedModel for TF "
                        "Serving to MODEL_BASE_PATH/<model-name>/<version>/.")
    system.add_argument("--model-name", default="cmaclip",
                        help="Model name for --export.")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    command_line.quiet_tensorflow(args.debug)
    command_line.check_dataset_name(parser, args.dataset)

    def run():
        from trainers.pretraining.finetuned_clip_run import run_finetuned_clip
        from trainers.training.training_run import TrainingRun

        return TrainingRun(args, finetuned_clip=run_finetuned_clip).run()

    return command_line.run_reporting_errors(run, args.debug)


if __name__ == "__main__":
    sys.exit(main())
