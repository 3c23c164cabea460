"""The baselines that are not a `CMACLIP`: zero-shot and fine-tuned CLIP.

`TrainingRun.run` calls these for `--variant zero_shot` and
`--variant finetuned_clip`; they use the run's data, strategy, recipe and
logger, and write `WORKDIR/<stage>/done.json` as the CMA-CLIP stages do.
"""

import os

from cmaclip_tf.models import get_model_config
from cmaclip_tf.models import load_clip
from cmaclip_tf.models.clip_components import save_clip_preset
from trainers.training.checkpoints import write_json
from trainers.training.evaluation import Evaluator


def run_zero_shot(run, clip=None):
    """Evaluates CLIP (the run's preset, or `clip`) with class prompts;
    nothing trains. Returns `{split: metrics}`."""
    from cmaclip_tf.models.zero_shot_clip import ZeroShotCLIP
    from cmaclip_tf.models.zero_shot_clip import class_prompts

    args = run.args
    config = run.model_config = get_model_config(args.model)
    with run.strategy.scope():
        clip = clip or load_clip(args.clip_preset or config["clip_preset"])
        run.data.prepare(clip, config)
        prompt_ids = {
            task: run.data.text_preprocessor(
                class_prompts(names, args.prompt)
            )["token_ids"].numpy()
            for task, names in run.data.tasks.items()
        }
        model = ZeroShotCLIP(clip.backbone, prompt_ids)
    evaluator = Evaluator(
        lambda features: model(features, training=False), run.tasks,
        run.strategy,
    )
    batch_size = run.micro_batch_size(run.recipe["batch_size"])
    result = {}
    for split in ("validation", "test"):
        dataset = run.strategy.experimental_distribute_dataset(
            run.data.eval_batches(split, batch_size)
        )
        result[split] = evaluator.evaluate(dataset)
    if run.chief:
        stage_dir = os.path.join(run.workdir, "zero_shot")
        os.makedirs(stage_dir, exist_ok=True)
        write_json(os.path.join(stage_dir, "done.json"), result)
    return result


def run_finetuned_clip(run):
    """The paper's fine-tuned CLIP: contrastive training on train's
    image-title pairs (`WORKDIR/contrastive/`, the CLIP left in
    `WORKDIR/preset/`), then zero-shot classification with it.

    It trains for the recipe's end2end epochs, at its batch size, learning
    rate and end2end weight decay: as long and as hard as CMA-CLIP's own
    end-to-end stage.
    """
    from trainers.pretraining.contrastive_stage import ContrastiveSettings
    from trainers.pretraining.contrastive_stage import ContrastiveStage

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
