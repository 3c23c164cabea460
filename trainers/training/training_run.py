"""A training run: data, model, strategy, and the stages in order."""

import json
import os
import shutil
import sys
import time

import keras
import numpy as np

from cmaclip_tf.configs.variants import BASELINES
from cmaclip_tf.losses import task_losses
from cmaclip_tf.models import create_cma_clip
from cmaclip_tf.models.lora import enable_clip_lora
from cmaclip_tf.models.lora import parameter_count
from cmaclip_tf.runtime.atomic_files import atomic_path
from trainers.command_line import DTYPE_POLICIES
from trainers.training import distribution
from trainers.training.checkpoints import WISE_FT_WEIGHTS_FILE
from trainers.training.checkpoints import StageCheckpoints
from trainers.training.checkpoints import stage_best_weights
from trainers.training.checkpoints import write_json
from trainers.training.checkpoint_selection import CheckpointSelection
from trainers.training.data_summary import class_summary
from trainers.training.evaluation import TARGET_PRECISION
from trainers.training.evaluation import evaluate_predictions
from trainers.training.evaluation import score_thresholds
from trainers.training.input_data import load_run_data
from trainers.training.learning_rate_schedule import WarmupSchedule
from trainers.training.recipe import default_recipe
from trainers.training.recipe import fitted_batch_size
from trainers.training.recipe import recipe_overrides
from trainers.training.recipe import resolve_recipe
from trainers.training.recipe import stage_epochs
from trainers.training.recipe import stage_schedule
from trainers.training.recipe import stage_warmup_steps
from trainers.training.recipe import write_recipe
from trainers.training.run_logger import RunLogger
from trainers.training.run_record import RUN_FILE
from trainers.training.run_record import run_record
from trainers.training.stage_schedule import STAGE_ORDER
from trainers.training.stage_schedule import previous_stage
from trainers.training.stage_trainer import StageTrainer
from trainers.training.stage_trainer import check_contrastive_options
from trainers.training.weight_average import averaged_weights
from trainers.training.wise_ft import START_WEIGHTS_FILE
from trainers.training.wise_ft import choose_alpha
from trainers.training.wise_ft import wise_ft_alphas
from trainers.training.workdir_state import check_workdir
from trainers.training.workdir_state import clear_workdir
from trainers.training.workdir_state import data_record
from trainers.training.workdir_state import write_data_record
from trainers.training.zero_shot_run import run_zero_shot
from trainers.training.zero_shot_initialization import start_from_zero_shot

BAD_RECORDS_FILE = "bad_records.csv"
# A stage's validation metrics at its start (WORKDIR/<stage>/start.json).
START_FILE = "start.json"


class TrainingRun:
    """Runs the stages that `args.stage` asks for, resuming where it can.

    Args:
        args: `trainers/run.py`'s parsed flags.
        finetuned_clip: callable, `run -> {split: metrics}`, that runs
            `--variant finetuned_clip` (`trainers.pretraining.
            finetuned_clip_run.run_finetuned_clip`, which `trainers/run.py`
            passes: the training package does not import the pretraining
            one, which builds on it).
    """

    def __init__(self, args, finetuned_clip=None):
        self.args = args
        self.finetuned_clip = finetuned_clip
        self.workdir = args.workdir
        # A bad recipe or override stops the run before anything is written.
        self.recipe = resolve_recipe(args.recipe or default_recipe(args.dataset),
                                     recipe_overrides(args))
        # Always set: runs in one process (experiment suites) must not
        # inherit an earlier run's policy.
        keras.mixed_precision.set_global_policy(
            DTYPE_POLICIES[args.mixed_precision])
        self.strategy = distribution.create_strategy(args.strategy, args.tpu)
        self.check_contrastive_options()
        self.chief = distribution.is_chief(self.strategy)
        self.worker = distribution.worker_id(self.strategy)
        keras.utils.set_random_seed(args.seed)
        # Data first, every record checked: a missing file, a bad argument,
        # empty data or a bad record under --on-bad-record error leaves no
        # workdir. Label vocabularies come from the data, never the workdir:
        # a workdir of other data is refused, not silently reused.
        self.data = load_run_data(args, reuse_labels=False,
                                  augmentation=self.recipe["augmentation"])
        self.split_sizes = self.data.dataset.num_examples
        self.check_not_empty()
        self.tasks = {task: len(names) for task, names in self.data.tasks.items()}
        self.batch_size = self.fit_batch_size()
        self.data_record = data_record(args, self.data.dataset)
        if getattr(args, "overwrite", False):
            if self.chief:
                clear_workdir(self.workdir)
        else:
            check_workdir(self.workdir, self.data_record, self.data.dataset.tasks)
        # A run that fails before its first step removes the workdir it made.
        self.fresh_workdir = (not os.path.isdir(self.workdir)
                              or not os.listdir(self.workdir))
        self.trained = False
        os.makedirs(self.workdir, exist_ok=True)
        self.model_config = None
        self.starts = {}  # What each stage's fresh model started from.
        self.logger = RunLogger(self.workdir, enabled=self.chief)

    def fit_batch_size(self):
        """The recipe's batch fitted to the training split (a note if changed)."""
        recipe = self.recipe
        multiple = self.args.accumulate_steps * self.strategy.num_replicas_in_sync
        batch = fitted_batch_size(recipe, self.data.num_train_examples, multiple,
                                  given=self.args.batch_size is not None)
        if batch != recipe["batch_size"]:
            self.data.dataset.notes.append(
                f"batch size {batch} (the {recipe['name']} recipe's "
                f"{recipe['batch_size']} fitted to "
                f"{self.data.num_train_examples:,} training examples)")
            recipe["batch_size"] = batch
        return batch

    def check_contrastive_options(self):
        """Refuses, before anything runs, flags the contrastive loss cannot
        run with in a stage that will use it (`check_contrastive_options`)."""
        args = self.args
        stages = STAGE_ORDER if args.stage == "all" else [args.stage]
        contrastive = args.variant == "finetuned_clip" or (
            args.variant not in BASELINES
            and getattr(args, "contrastive_weight", 0.0) and any(
                not stage_schedule(self.recipe, s).clip_frozen() for s in stages))
        check_contrastive_options(
            contrastive, args.jit_compile,
            1 if args.variant == "finetuned_clip" else args.accumulate_steps,
            self.strategy.num_replicas_in_sync)

    def log(self, message):
        if self.chief:
            print(message, flush=True)

    def progress_verbosity(self):
        """A live bar on a terminal, one line per epoch in a log file."""
        if self.args.quiet or not self.chief:
            return 0
        return 1 if sys.stdout.isatty() else 2

    # --- Stages. ---

    def stages_to_run(self):
        if self.args.stage != "all":
            return [self.args.stage]
        stages = ["warmup", "end2end"]
        if len(self.tasks) > 1:
            stages.append("tuning")  # Only multi-task runs tune (section 4.2.3).
        return stages

    def stage_epochs(self, stage):
        return self.recipe["stages"][stage]["epochs"]

    def check_not_empty(self):
        """Raises `ValueError` naming the input of a split with no usable
        example (validation may be empty only by --val-size 0)."""
        args = self.args
        train_source = args.manifest or args.data_dir or f"--dataset {args.dataset}"
        sources = {
            "train": train_source,
            "validation": args.val_manifest
            or f"{train_source} (validation is carved out of train)",
            "test": getattr(args, "test_manifest", None),
        }
        counter = self.data.dataset.bad_records
        for split, source in sources.items():
            if self.split_sizes[split] or source is None or (
                    split == "validation" and args.val_size == 0):
                continue
            bad = counter.counts().get(split, {})
            if bad:
                first = counter.messages(split)[0]
                why = (f"all {sum(bad.values())} rows are bad records "
                       f"({', '.join(f'{r} {n}' for r, n in sorted(bad.items()))};"
                       f" the first: {first})")
            else:
                why = "it has no rows"
            raise ValueError(f"No usable {split} example in {source}: {why}.")

    def run(self):
        """Runs the stages; a run that fails before its first training step
        in a workdir it created leaves no workdir."""
        try:
            return self._run()
        except Exception:
            if self.chief and self.fresh_workdir and not self.trained:
                shutil.rmtree(self.workdir, ignore_errors=True)
            raise

    def _run(self):
        started = time.time()
        self.log_data_summary()
        if self.chief:
            self.data.save_labels(self.workdir)
            write_json(os.path.join(self.workdir, RUN_FILE), run_record(self.args))
            write_data_record(self.workdir, self.data_record)
            write_recipe(self.workdir, self.recipe)
            if self.data.dataset.bad_records.total():
                self.data.dataset.bad_records.write_csv(
                    os.path.join(self.workdir, BAD_RECORDS_FILE))
        results = {}
        if self.args.variant == "zero_shot":
            results["zero_shot"] = run_zero_shot(self)
        elif self.args.variant == "finetuned_clip":
            if self.finetuned_clip is None:
                raise ValueError("--variant finetuned_clip needs the "
                                 "pretraining program; run it with "
                                 "trainers/run.py.")
            results["zero_shot"] = self.finetuned_clip(self)
        else:
            for stage in self.stages_to_run():
                results[stage] = self.run_stage(stage)
        self.write_metrics()
        self.log(self.summary_table(results))
        self.log(f"Done in {time.time() - started:.0f} s; workdir: {self.workdir}")
        if self.args.export and self.chief:
            self.export()
        elif self.args.variant not in BASELINES:
            self.log(
                "Export it for TF Serving: python -m serving.export --workdir "
                f"{self.workdir} --model-base-path models --model-name cmaclip"
            )
        return 0

    def log_data_summary(self):
        """Once per run: the splits' sizes, each task's classes, classes
        rare in train or unseen there, notes, and the records skipped."""
        dataset = self.data.dataset
        sizes = ", ".join(f"{s} {n:,}" for s, n in self.split_sizes.items())
        self.log(f"[data] {dataset.name}: {sizes}; tasks "
                 + ", ".join(f"{t} ({n})" for t, n in self.tasks.items()))
        for line in class_summary(dataset):
            self.log(f"[data] {line}")
        for note in dataset.notes:
            self.log(f"[data] {note}")
        bad = self.data.bad_record_counts()
        if any(bad.values()):
            counter = dataset.bad_records
            self.log("[data] bad records skipped: " + _counts_text(
                bad, {split: counter.first_locations(split) for split in bad}))
            self.log("[data] every bad record, with why: "
                     + os.path.join(self.workdir, BAD_RECORDS_FILE))
        recovered = self.data.recovered_record_counts()
        if any(recovered.values()):
            self.log("[data] records kept by a fallback: "
                     + _counts_text(recovered))

    def build_model(self):
        with self.strategy.scope():
            model, clip, config = create_cma_clip(
                self.args.model,
                self.tasks,
                variant=self.args.variant,
                clip_preset=self.args.clip_preset,
            )
        self.model_config = config
        return model, clip, config

    def initial_weights(self, stage, model):
        """Loads the best checkpoint of the nearest earlier stage that has
        one (end2end, else warmup: a stage run for 0 epochs is skipped); a
        fresh model starts where zero-shot CLIP stands where it can."""
        before = previous_stage(stage)
        missing = []
        while before is not None:
            path = stage_best_weights(self.workdir, before)
            if path is not None:
                model.load_weights(path)
                skipped = "".join(f"No {m} checkpoint; " for m in missing)
                self.log(f"[{stage}] {skipped}Starting from the best {before} "
                         f"checkpoint: {path}")
                return
            missing.append(before)
            before = previous_stage(before)
        if missing:
            self.log(f"[{stage}] No {' or '.join(missing)} checkpoint in "
                     f"{self.workdir}: starting from the pretrained CLIP.")
        else:
            self.log(f"[{stage}] Starting from the pretrained CLIP.")
        if getattr(model, "zero_shot_start", False):
            self.starts[stage] = start_from_zero_shot(
                model, self.data, self.args.prompt, self.log,
                batch_size=self.micro_batch_size(self.batch_size))
        else:
            self.log(f"[{stage}] The fusion and heads start at random (the "
                     "model config has no zero_shot_start).")

    def run_stage(self, stage):
        args = self.args
        recipe = self.recipe
        plan = recipe["stages"][stage]
        model, clip, config = self.build_model()
        if plan["lora_rank"]:
            with self.strategy.scope():  # The factors are new variables.
                enable_clip_lora(model, plan["lora_rank"])
        schedule = stage_schedule(recipe, stage, model_widths(model))
        learning_rate = recipe["learning_rate"]
        weight_decay = plan["weight_decay"]
        batch_size = self.batch_size
        micro_batch_size = self.micro_batch_size(batch_size)
        stage_dir = os.path.join(self.workdir, stage)
        os.makedirs(stage_dir, exist_ok=True)
        steps = self.data.steps_per_epoch(batch_size, args.steps_per_epoch)
        epochs = stage_epochs(plan, steps)
        warmup_steps = stage_warmup_steps(plan, epochs * steps)

        trainer = StageTrainer(
            model, schedule, self.strategy, learning_rate, weight_decay,
            jit_compile=args.jit_compile,
            task_losses=task_losses(recipe["loss"], list(self.tasks), default="ce",
                                    label_smoothing=recipe["label_smoothing"]),
            contrastive_weight=getattr(args, "contrastive_weight", 0.0),
            steps_per_execution=args.steps_per_execution,
            accumulate_steps=args.accumulate_steps,
            clip_norm=plan["clip_norm"],
            learning_rate_schedule=WarmupSchedule(
                total_steps=epochs * steps,
                warmup_steps=warmup_steps,
                decay=plan["schedule"],
            ),
            optimizer_options=recipe["optimizer"],
            ema_decay=plan["ema_decay"],
        )
        if plan["lora_rank"]:
            self.log_lora(stage, plan["lora_rank"], model, trainer)
        selection = self.checkpoint_selection(model, schedule)
        checkpoints = StageCheckpoints(
            stage_dir, model, trainer.optimizers, write=self.chief,
            worker=self.worker, weight_average=trainer.weight_average,
            selection=selection,
        )
        if checkpoints.is_done():
            self.log(f"[{stage}] Already finished in {stage_dir}; skipping.")
            with open(checkpoints.done_path) as f:
                return json.load(f)

        self.data.prepare(clip, config)
        resumed = checkpoints.restore_latest()
        if resumed:
            self.log(
                f"[{stage}] Resuming from {checkpoints.manager.latest_checkpoint} "
                f"(epoch {int(checkpoints.epoch)}, step {int(checkpoints.step)})."
            )
        else:
            self.initial_weights(stage, model)
        if wise_ft_alphas(plan["wise_ft"]) and self.chief and not resumed:
            # WiSE-FT's θ_0: the stage's start (a resumed stage wrote it).
            with atomic_path(os.path.join(stage_dir, START_WEIGHTS_FILE)) as tmp:
                model.save_weights(tmp)

        cache = None
        if (args.cache_features and trainer.input_depth != "raw"
                and self.recipe["augmentation"]):
            self.log(f"[{stage}] No feature cache: it would hold un-augmented "
                     f"features, and --augment {self.recipe['augmentation']} "
                     "needs the images; reading them instead.")
        elif args.cache_features and trainer.input_depth != "raw":
            cache_dir = os.path.join(stage_dir, "feature_cache")
            if not self.chief:
                cache_dir = os.path.join(cache_dir, f"worker_{self.worker}")
            started = time.time()
            cache = self.data.cache_features(trainer, micro_batch_size, cache_dir)
            self.log(f"[{stage}] Feature cache ({trainer.input_depth}, "
                     f"{len(cache):,} examples) in {cache_dir} "
                     f"({time.time() - started:.0f} s).")
        self.logger.hparams(stage, self.hparams(stage, plan, batch_size, epochs,
                                                warmup_steps))
        validation = self.strategy.experimental_distribute_dataset(
            self.data.eval_batches("validation", micro_batch_size)
        )
        self.log(f"[{stage}] {epochs} epoch(s) of {steps} steps at batch "
                 f"{batch_size}; peak rates "
                 + ", ".join(f"{g} {r:.2g}" for g, r in
                             self.peak_rates(schedule, learning_rate, model).items()))
        if epochs and not int(checkpoints.epoch) and not int(checkpoints.step):
            self.evaluate_start(stage, trainer, validation, checkpoints, selection)

        for epoch in range(int(checkpoints.epoch), epochs):
            if self.stops_early(stage, epoch, checkpoints, plan):
                break
            first_step = int(checkpoints.step) if epoch == int(checkpoints.epoch) else 0
            dataset = self.data.train_batches(
                epoch, batch_size, skip_batches=first_step, cached=cache,
            )
            dataset = self.strategy.experimental_distribute_dataset(dataset)
            self.log(f"[{stage}] Epoch {epoch + 1}/{epochs}")
            progress = keras.utils.Progbar(
                steps, verbose=self.progress_verbosity(),
                stateful_metrics=[f"{t}_loss" for t in self.tasks],
            )
            if first_step:
                progress.update(first_step)

            def on_step(step, losses, epoch=epoch, first_step=first_step):
                # Once per execution (--steps-per-execution steps).
                self.trained = True
                done = first_step + step + 1
                progress.update(done, [(f"{t}_loss", v) for t, v in losses.items()])
                self.logger.learning_rates(stage, epoch * steps + done,
                                           trainer.learning_rates)
                if done % args.checkpoint_every == 0 and done < steps:
                    checkpoints.save_latest(epoch, done)

            train_losses = trainer.train_steps(
                dataset, steps - first_step, on_step,
                sync_every=args.checkpoint_every, first_step=first_step,
            )
            contrastive = trainer.contrastive_loss()
            if trainer.steps_run < steps - first_step:
                self.log(f"[{stage}] The training data ended after "
                         f"{first_step + trainer.steps_run} of {steps} steps.")
            # With an EMA, the average is what is validated and kept best.
            with averaged_weights(trainer):
                predictions = trainer.predict(validation)
                metrics = evaluate_predictions(predictions, self.tasks)
                global_step = (epoch + 1) * steps
                keep, score, kept_metrics, notes = selection.consider(
                    metrics, epoch + 1, float(checkpoints.best_score))
                self.log(f"[{stage}] validation{' (EMA)' * bool(plan['ema_decay'])} "
                         f"{self.metrics_text(metrics)}; score "
                         f"{selection.score(metrics):.4f}")
                for note in notes:
                    self.log(f"[{stage}] {note}")
                if keep:
                    with selection.best_model():
                        checkpoints.save_best(
                            score,
                            {"epoch": epoch + 1, "score": score,
                             "validation": kept_metrics,
                             **({"task_epochs": selection.task_epochs()}
                                if selection.per_task else {})},
                            epoch + 1,
                        )
                    self.log(f"[{stage}] New best checkpoint (epoch {epoch + 1}"
                             f"{', combined per task' * selection.per_task}; "
                             f"score {score:.4f}).")
            checkpoints.save_latest(epoch + 1, 0)
            # Logging comes after the checkpoints: it can never cost an epoch.
            self.logger.epoch(
                stage, global_step, train_losses, metrics, predictions,
                weighted_losses=None if contrastive is None else
                {"contrastive": (trainer.contrastive_weight, contrastive)},
            )
            self.logger.bad_records(stage, global_step,
                                    self.data.bad_record_counts(),
                                    self.data.recovered_record_counts())
            self.logger.attention_maps(stage, global_step, model, self.data)

        record = None
        if epochs:
            record = self.learning_record(
                stage, checkpoints, epochs * steps,
                self.peak_rates(schedule, learning_rate, model))
            if selection.per_task:
                record["task_epochs"] = selection.task_epochs()
        result = self.finish_stage(stage, model, trainer, checkpoints, clip,
                                   config, micro_batch_size, plan, record)
        if cache is not None and not args.keep_feature_cache:
            cache.delete()
        return result

    def checkpoint_selection(self, model, schedule):
        """The stage's `CheckpointSelection`: the recipe's `task_selection`,
        per task where the stage trains only per-task weights."""
        trained = [group for group, variables in model.module_groups().items()
                   if variables and schedule.learning_rate_multipliers.get(group)
                   is not None]
        per_task = (bool(trained) and hasattr(model, "task_variables")
                    and set(trained) <= {"modality_attention", "heads"})
        return CheckpointSelection(
            list(self.tasks), self.selection_score,
            rule=self.recipe["task_selection"],
            task_variables=model.task_variables() if per_task else None,
        )

    def evaluate_start(self, stage, trainer, validation, checkpoints, selection):
        """Scores the stage's starting model on validation and keeps it as
        the best so far (epoch 0): a stage never ends below where it began."""
        metrics = evaluate_predictions(trainer.predict(validation), self.tasks)
        score = selection.start(metrics)
        checkpoints.start_score.assign(score)
        if self.chief:
            write_json(os.path.join(checkpoints.stage_dir, START_FILE),
                       {"score": score, "validation": metrics})
        checkpoints.save_best(score, {"epoch": 0, "score": score,
                                      "validation": metrics}, 0)
        self.log(f"[{stage}] validation at the start: "
                 + self.metrics_text(metrics) + f"; score {score:.4f}")

    def learning_record(self, stage, checkpoints, total_steps, peak_rates):
        """Whether the stage beat its start on validation; says so if not."""
        start = float(checkpoints.start_score)
        best = float(checkpoints.best_score)
        learned = int(checkpoints.best_epoch) > 0
        if not learned:
            self.log(
                f"[{stage}] Did not learn: no epoch beat the start on "
                f"validation (score {start:.4f}) in {total_steps} steps at "
                "peak rates " + ", ".join(f"{g} {r:.2g}" for g, r in
                                          peak_rates.items())
                + "; the stage keeps its starting weights. More data, more "
                "epochs or a higher --learning-rate may help.")
        start_path = os.path.join(checkpoints.stage_dir, START_FILE)
        start_validation = None
        if os.path.isfile(start_path):
            with open(start_path) as f:
                start_validation = json.load(f)["validation"]
        return {"learned": learned, "start_score": start, "best_score": best,
                "start_validation": start_validation,
                "best_epoch": int(checkpoints.best_epoch),
                "steps": total_steps, "peak_learning_rates": peak_rates}

    @staticmethod
    def peak_rates(schedule, learning_rate, model=None):
        """`{group: peak rate}` of the groups a stage trains (and, given the
        model, that have weights: the pooled variants have no fusion)."""
        groups = model.module_groups() if model is not None else None
        return {group: learning_rate * factor for group, factor in
                schedule.learning_rate_multipliers.items()
                if factor and (groups is None or groups.get(group))}

    @staticmethod
    def metrics_text(metrics):
        return ", ".join(
            f"{t}: acc {m.get('accuracy', 0):.3f} r@p90 "
            f"{m.get('recall_at_90_precision', 0):.3f} "
            f"λ {m.get('image_weight_mean', 0):.2f}"
            for t, m in metrics.items())

    def micro_batch_size(self, batch_size):
        """What one replica's forward pass sees at once, times the replicas:
        the batch split into --accumulate-steps micro-batches."""
        parts = self.args.accumulate_steps
        replicas = self.strategy.num_replicas_in_sync
        if batch_size % (parts * replicas):
            raise ValueError(
                f"The batch of {batch_size} does not split into "
                f"--accumulate-steps {parts} micro-batches over {replicas} "
                f"replica(s); pass a --batch-size that is a multiple of "
                f"{parts * replicas}."
            )
        return batch_size // parts

    def stops_early(self, stage, epoch, checkpoints, plan):
        """True (and says so) when the stage's patience ran out before `epoch`."""
        patience = plan["early_stopping_patience"]
        best_epoch = int(checkpoints.best_epoch)
        if not patience or epoch == 0 or epoch - best_epoch < patience:
            return False
        best = f"epoch {best_epoch}" if best_epoch else "the start"
        self.log(f"[{stage}] Early stop after epoch {epoch}: no better "
                 f"validation score in {patience} epochs (best: {best}).")
        return True

    def log_lora(self, stage, rank, model, trainer):
        """How much of the model LoRA leaves to train."""
        trained = parameter_count(
            v for group in trainer.group_variables.values() for v in group)
        lora = parameter_count(trainer.group_variables.get("clip", []))
        backbone = model.clip_backbone
        towers = parameter_count(
            v for tower in (backbone.vision_encoder, backbone.text_encoder)
            for v in tower.weights
            if "float" in str(v.dtype) and "lora_kernel" not in v.path)
        self.log(f"[{stage}] LoRA rank {rank} on CLIP's query and value "
                 f"projections: trains {trained:,} parameters, {lora:,} of them "
                 f"in CLIP (its towers hold {towers:,}); without LoRA: "
                 f"{trained - lora + towers:,}.")

    def finish_stage(self, stage, model, trainer, checkpoints, clip, config,
                     batch_size, plan=None, training_record=None):
        if os.path.isfile(checkpoints.best_weights_path):
            model.load_weights(checkpoints.best_weights_path)
        result = {"best_score": float(checkpoints.best_score)}
        if training_record is not None:
            result["training"] = training_record
        alphas = wise_ft_alphas((plan or {}).get("wise_ft"))
        start = os.path.join(checkpoints.stage_dir, START_WEIGHTS_FILE)
        if alphas and not os.path.isfile(start):
            self.log(f"[{stage}] No WiSE-FT: the stage began without it, so "
                     f"its start weights ({start}) were not kept.")
        elif alphas and os.path.isfile(checkpoints.best_weights_path):
            result["wise_ft"] = self.wise_ft(stage, model, trainer, checkpoints,
                                             start, alphas, batch_size)
        for split in ("validation", "test"):
            dataset = self.strategy.experimental_distribute_dataset(
                self.data.eval_batches(split, batch_size)
            )
            predictions = trainer.predict(dataset)
            result[split] = evaluate_predictions(predictions, self.tasks)
            if split == "validation":
                thresholds = score_thresholds(predictions, self.tasks)
        result["score_thresholds"] = thresholds
        if self.chief:
            write_json(os.path.join(self.workdir, "score_thresholds.json"), thresholds)
            self.data.save_inference_bundle(
                os.path.join(self.workdir, "inference"), model, clip, config,
                {"stage": stage, "variant": self.args.variant,
                 "model": config["name"], "dataset": self.args.dataset,
                 "score_thresholds": thresholds,
                 "target_precision": TARGET_PRECISION},
            )
        checkpoints.mark_done(result)
        return result

    def wise_ft(self, stage, model, trainer, checkpoints, start, alphas,
                batch_size):
        """Picks WiSE-FT's α on validation; the model keeps that CLIP, and
        the stage's weights file for later stages (`wise_ft.weights.h5`)
        too. Returns what done.json records."""
        validation = self.strategy.experimental_distribute_dataset(
            self.data.eval_batches("validation", batch_size))

        def score():
            return self.selection_score(evaluate_predictions(
                trainer.predict(validation), self.tasks))

        alpha, scores = choose_alpha(model, start, checkpoints.best_weights_path,
                                     alphas, score)
        self.log(f"[{stage}] WiSE-FT, validation score by α (CLIP = (1-α) "
                 "start + α fine-tuned): "
                 + ", ".join(f"{a:g}: {s:.4f}" for a, s in scores.items())
                 + f"; chose α = {alpha:g}.")
        if self.chief:
            with atomic_path(os.path.join(checkpoints.stage_dir,
                                          WISE_FT_WEIGHTS_FILE)) as tmp:
                model.save_weights(tmp)
        return {"alpha": alpha,
                "validation_scores": {f"{a:g}": s for a, s in scores.items()}}

    # --- Metrics and reports. ---

    def selection_metric(self):
        """The recipe's (--selection-metric is folded in); `auto`: accuracy
        for one task (the paper's Fashion-Gen and Food-101 metric), recall
        at 90% precision for several (its retail metric)."""
        name = self.recipe["selection_metric"]
        if name == "auto":
            return "accuracy" if len(self.tasks) == 1 else "recall_at_90_precision"
        return name

    def selection_score(self, metrics):
        """Mean over tasks of the selection metric; accuracy breaks ties."""
        name = self.selection_metric()
        values = [m.get(name, 0.0) for m in metrics.values()]
        accuracy = [m.get("accuracy", 0.0) for m in metrics.values()]
        return float(np.mean(values)) + 1e-3 * float(np.mean(accuracy))

    def hparams(self, stage, plan, batch_size, epochs, warmup_steps):
        return {
            "stage": stage, "model": self.model_config["name"],
            "variant": self.args.variant, "dataset": self.args.dataset,
            "recipe": self.recipe["name"],
            "learning_rate": self.recipe["learning_rate"],
            "lr_schedule": plan["schedule"],
            "warmup_steps": warmup_steps,
            "weight_decay": plan["weight_decay"]["rate"],
            "weight_decay_kind": plan["weight_decay"]["kind"],
            "clip_norm": plan["clip_norm"] or 0.0,
            "batch_size": batch_size, "epochs": epochs,
            "accumulate_steps": self.args.accumulate_steps,
            "steps_per_execution": self.args.steps_per_execution,
            "seed": self.args.seed,
            "replicas": self.strategy.num_replicas_in_sync,
            "cache_features": bool(self.args.cache_features),
            "loss": json.dumps(self.recipe["loss"]),
            "label_noise": self.args.label_noise,
            "contrastive_weight": getattr(self.args, "contrastive_weight", 0.0),
            "mixed_precision": self.args.mixed_precision or "none",
            "augmentation": self.recipe["augmentation"] or "none",
            "label_smoothing": float(self.recipe["label_smoothing"]),
            "ema_decay": float(plan["ema_decay"] or 0.0),
            "wise_ft": json.dumps(plan["wise_ft"]),
            "lora_rank": int(plan["lora_rank"] or 0),
        }

    def write_metrics(self):
        if not self.chief:
            return
        payload = {"stages": {}, "bad_records": self.data.bad_record_counts(),
                   "recovered_records": self.data.recovered_record_counts(),
                   "batch_size": self.batch_size}
        if self.starts:
            payload["start"] = self.starts
        for stage in (*STAGE_ORDER, "contrastive", "zero_shot"):
            path = os.path.join(self.workdir, stage, "done.json")
            if os.path.isfile(path):
                with open(path) as f:
                    payload["stages"][stage] = json.load(f)
        write_json(os.path.join(self.workdir, "metrics.json"), payload)

    def summary_table(self, results):
        lines = [f"{'stage':<8} {'split':<10} {'task':<12} {'accuracy':>9} "
                 f"{'R@P90':>7} {'λ mean':>7}"]
        for stage, result in results.items():
            for split in ("validation", "test"):
                for task, m in result.get(split, {}).items():
                    lines.append(
                        f"{stage:<8} {split:<10} {task:<12} "
                        f"{m.get('accuracy', 0):>9.3f} "
                        f"{m.get('recall_at_90_precision', 0):>7.3f} "
                        f"{m.get('image_weight_mean', 0):>7.3f}"
                    )
        return "\n".join(lines)

    def export(self):
        from cmaclip_tf.inference.export import export_saved_model

        path = export_saved_model(
            os.path.join(self.workdir, "inference"), self.args.export,
            self.args.model_name,
        )
        self.log(f"Exported a SavedModel to {path}")


def model_widths(model):
    """`{group: width}` of the groups a recipe may scale by width."""
    widths = {"clip": model.clip_backbone.vision_encoder.hidden_dim}
    if getattr(model, "sequence_attention", None) is not None:
        widths["fusion"] = model.sequence_attention.hidden_dim
    return widths


def _counts_text(counts, locations=None):
    """`{split: {reason: n}}` as `train: missing_image 1, corrupt_image 2; ...`,
    each reason with its first rows from `locations` (`{split: {reason:
    [location]}}`): `missing_image 2 (train.csv:7, train.csv:9)`."""
    locations = locations or {}

    def reason_text(split, reason, n):
        first = locations.get(split, {}).get(reason)
        more = ", ..." if first and n > len(first) else ""
        return f"{reason} {n}" + (f" ({', '.join(first)}{more})" if first else "")

    return "; ".join(
        f"{split}: " + ", ".join(reason_text(split, reason, n)
                                 for reason, n in sorted(c.items()))
        for split, c in sorted(counts.items()) if c
    )
