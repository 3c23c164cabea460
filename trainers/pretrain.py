"""Pretrains (or adapts) CLIP contrastively on image-text pairs.

  python trainers/pretrain.py --manifest pairs.csv --clip-preset tiny_clip \
      --workdir runs/pretrain --epochs 10 --batch-size 64
  python trainers/pretrain.py --dataset caption_corpus --num-examples 8000 \
      --clip-preset tiny_clip --workdir runs/pretrain

CLIP's objective: the symmetric InfoNCE of every image against every text of
the global batch (all replicas' embeddings all-gathered), with CLIP's
learnable temperature, clamped after each step. A manifest needs only the
columns `image` and `text` (task columns are ignored), so a catalogue of
images and titles without labels is enough.

Outputs land in --workdir: preset/ (a keras-hub preset folder: pass it to
`trainers/run.py --clip-preset` or `cmaclip_tf.models.load_clip`; its
training.json records this command and the validation recall),
contrastive/ (best and latest checkpoints; the same command resumes after a
kill), tensorboard/, metrics.json and run.json.
"""

import argparse
import os
import sys

if __package__ in (None, ""):
    # Run as a script: make the repository importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainers import command_line  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    command_line.add_data_arguments(
        parser,
        "manifest (the default with --manifest): CSV/JSONL manifests of "
        "image and text; caption_corpus (the default otherwise): generated "
        "image-caption pairs (no files needed); synthetic: the "
        "generated products' image-title pairs; food101, fashion_gen, "
        "tfds:upmc_food101, tfds:fashion_gen: their image-text pairs (labels "
        "ignored).",
        labels=False, default_dataset=None,
    )

    model = parser.add_argument_group("model")
    model.add_argument("--model", default="tiny",
                       help="Model config (tiny, vit_b32 or a JSON file): "
                       "image size, text length, default CLIP preset.")
    model.add_argument("--clip-preset",
                       help="The CLIP to start from: a keras-hub preset name, "
                       "a local preset folder, tiny_clip (random) or "
                       "tiny_clip_pretrained (default: the model config's).")

    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=command_line.non_negative_int,
                          default=10, help="Epochs (0: only evaluate and "
                          "write the starting CLIP as a preset).")
    training.add_argument("--steps-per-epoch", type=command_line.positive_int,
                          help="Cap on steps per epoch (quick runs).")
    training.add_argument("--batch-size", type=command_line.positive_int,
                          default=64, help="Global batch size: each image "
                          "is contrasted with this many texts.")
    training.add_argument("--learning-rate", type=command_line.positive_float,
                          default=1e-3, help="Peak AdamW learning rate (a "
                          "linear warmup over 5%% of the steps, then a cosine "
                          "decay to 0).")
    training.add_argument("--weight-decay",
                          type=command_line.non_negative_float, default=0.1,
                          help="AdamW weight decay (not on biases, norms and "
                          "the temperature).")
    training.add_argument("--checkpoint-every", type=command_line.positive_int,
                          default=50, help="Steps between mid-epoch checkpoints.")
    training.add_argument("--seed", type=int, default=0,
                          help="Seeds generated data, the validation split "
                          "and the epochs' order.")
    training.add_argument("--workdir", default="runs/pretrain",
                          help="Where the preset, checkpoints and TensorBoard go.")
    system = command_line.add_system_arguments(parser)
    command_line.add_mixed_precision_argument(system)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dataset is None:
        args.dataset = "manifest" if args.manifest else "caption_corpus"
    command_line.quiet_tensorflow(args.debug)
    command_line.check_dataset_name(parser, args.dataset)

    def run():
        from trainers.pretraining.pretraining_run import PretrainingRun

        return PretrainingRun(args, argv).run()

    return command_line.run_reporting_errors(run, args.debug)


if __name__ == "__main__":
    sys.exit(main())
