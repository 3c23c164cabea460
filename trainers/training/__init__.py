"""The training program behind `trainers/run.py`: the recipe, the stage
schedule and trainer, optimizers and schedules, checkpoints, the feature
cache, evaluation and the run's logs."""
