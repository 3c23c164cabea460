"""The paper's fine-tuned CLIP baseline (`--variant finetuned_clip`).

CLIP trained contrastively on the training split's image-title pairs, then
classifying with class prompts. `trainers/run.py` hands `run_finetuned_clip`
to `TrainingRun`, so the training package never imports this one.
"""

import os

from cmaclip_tf.models import get_model_config
from cmaclip_tf.models import load_clip
from cmaclip_tf.models.clip_components import save_clip_preset
from trainers.pretraining.contrastive_stage import ContrastiveSettings
from trainers.pretraining.contrastive_stage import ContrastiveStage
from trainers.training.zero_shot_run import run_zero_shot


def run_finetuned_clip(run):
    """The paper's fine-tuned CLIP: contrastive training on train's
    image-title pairs (`WORKDIR/contrastive/`, the CLIP left in
    `WORKDIR/preset/`), then zero-shot classification with it.

    It trains for the recipe's end2end epochs, at its batch size, learning
    rate and end2end weight decay: as long and as hard as CMA-CLIP's own
    end-to-end stage.
    """
    args = run.args
    config = run.model_config = get_model_config(args.model)
    with run.strategy.scope():
        clip = load_clip(args.clip_preset or config["clip_preset"])
    run.data.prepare(clip, config)
    recipe = run.recipe
    end2end = recipe["stages"]["end2end"]
    settings = ContrastiveSettings(
        epochs=end2end["epochs"],
        batch_size=recipe["batch_size"],
        learning_rate=recipe["learning_rate"],
        weight_decay=end2end["weight_decay"],
        steps_per_epoch=args.steps_per_epoch,
        checkpoint_every=args.checkpoint_every, jit_compile=args.jit_compile,
    )
    ContrastiveStage(
        clip.backbone, run.data, run.strategy, settings, run.workdir,
        run.logger, run.log, chief=run.chief, worker=run.worker,
        verbosity=run.progress_verbosity(),
        hparams={"variant": args.variant, "dataset": args.dataset,
                 "seed": args.seed},
    ).run()
    if run.chief:
        save_clip_preset(clip, os.path.join(run.workdir, "preset"))
    return run_zero_shot(run, clip)
