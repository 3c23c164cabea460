"""The programs that train and study CMA-CLIP; `cmaclip_tf` never imports them.

Command lines (run as scripts, `python trainers/run.py ...`): `run.py` (the
three-stage training), `pretrain.py` (contrastive pretraining of CLIP),
`experiments.py` (suites of runs and their reports), `learning_curve.py`,
`visualize.py` (attention maps); `command_line.py` is what they share.

- `training/`: the training program: recipes, the stage schedule and
  trainer, optimizers, checkpoints, the feature cache, evaluation, logging.
- `pretraining/`: the contrastive trainer and its stage.
- `suites/`: the experiment suites, noise robustness and the report writers.
"""
