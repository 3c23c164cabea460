"""The zero-shot CLIP baseline: class prompts, nothing trains.

`TrainingRun.run` calls it for `--variant zero_shot` (and the fine-tuned
CLIP baseline, `trainers.pretraining.finetuned_clip_run`, with its adapted
CLIP); it uses the run's data, strategy and logger, and writes
`WORKDIR/zero_shot/done.json` as the CMA-CLIP stages write theirs.
"""

import os

from cmaclip_tf.models import get_model_config
from cmaclip_tf.models import load_clip
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
