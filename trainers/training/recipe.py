"""Training recipes as data: how to train, per dataset and per stage.

A recipe is a JSON file, apart from the architecture (`cmaclip_tf/configs/`),
as open_clip keeps model configs apart from its training parameters. The
built-in ones are `trainers/recipes/<name>.json`: `default` (what every
dataset gets: fine-tuning from a zero-shot start at any data size), the
paper's own `paper_retail` (multi-task attributes), `paper_fashion_gen`,
`paper_food101`, and `synthetic` (the earlier demo recipe: constant 1e-3).

    {
      "name": "...", "description": "...",
      "batch_size": 1024,          # examples per optimizer step (global), at most
      "min_steps_per_epoch": 32,   # optional: a smaller batch for small data
      "reference_widths": {"clip": 768, "fusion": 512},  # optional, see below
      "learning_rate": 1e-5,       # base (peak) rate; groups multiply it
      "selection_metric": "accuracy",   # "recall_at_90_precision", or "auto"
      "task_selection": "every_task",   # or "average" (the paper's, the default)
      "optimizer": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
      "stage_defaults": {...},     # stage fields every stage starts from
      "stages": {"warmup": {...}, "end2end": {...}, "tuning": {...}}
    }

The batch a run uses (`fitted_batch_size`) is the recipe's, made smaller
where the training split is small: never over the split, and, with
`min_steps_per_epoch`, the largest power of two that gives that many steps
per epoch (at least 8); the console says when it changed. `--batch-size`
is taken as given unless it exceeds the split.

Stage fields: `epochs` (`min_steps`: run more epochs until the stage has at
least this many steps; `--epochs` and `--<stage>-epochs` set it to 0);
`learning_rate_multipliers` (module group -> factor
of the base rate, `null` = frozen; groups left out keep the paper's table,
`trainers.training.stage_schedule.STAGES`); `schedule` (`cosine` or `constant`, after
`warmup_steps` of linear warm-up, or `warmup_fraction` of the stage's
steps if that is more); `weight_decay`, `{"kind": "l2" |
"decoupled", "rate": ...}` (`l2`: Adam with an L2 term in the gradient, as
PyTorch's `Adam(weight_decay=...)` and the paper; `decoupled`: AdamW's; a
plain number reads as decoupled; vectors never decay); `clip_norm` (global
gradient norm; 0 or `null`: no clipping); `early_stopping_patience` (epochs
without a better validation score before the stage stops; 0 or `null`:
never).

With `reference_widths`, the rates of those groups are for a model of those
widths (CLIP's vision tower, the fusion) and scale by reference / actual
width for another model (`stage_schedule`).

Fine-tuning tools, all off unless set: top fields `augmentation` (`null`,
`"crop"`, `"randaugment"` or `"crop+randaugment"`: training images only,
`cmaclip_tf.preprocessing.image_augmentation`) and `label_smoothing` (ε of
the `ce` loss, default 0); stage fields `ema_decay` (`null`, or the decay of
an exponential moving average of the trained weights, which validation and
the export then use: `trainers.training.weight_average`), and, in stages that train
CLIP, `wise_ft` (`false`, `true` for α in 0, 0.25, ..., 1, or a list of α:
`trainers.training.wise_ft`) and `lora_rank` (`null`, or LoRA of that rank on CLIP's
query and value projections instead of training CLIP's weights:
`cmaclip_tf.models.lora`).

`task_selection` is what makes an epoch a stage's best:
`"average"`, the highest selection score (a mean over tasks), or
`"every_task"`, the same without letting any task's validation accuracy fall
below the stage start's, and each task keeping its own best epoch in stages
that train only per-task weights (`trainers.training.checkpoint_selection`).

`resolve_recipe` loads one, applies overrides (`"stages.*.epochs"` sets every
stage's) and checks every value; the run writes the result to
`WORKDIR/recipe.json`.
"""

import copy
import math
import os

from cmaclip_tf.runtime.named_json import available_names
from cmaclip_tf.runtime.named_json import load_named_json
from trainers.training.checkpoint_selection import TASK_SELECTIONS
from trainers.training.learning_rate_schedule import DECAYS
from trainers.training.stage_schedule import STAGES
from trainers.training.stage_schedule import STAGE_ORDER
from trainers.training.stage_schedule import StageSchedule

# trainers/recipes/: beside the command lines that name them.
RECIPE_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes"
)
RECIPE_FILE = "recipe.json"
SELECTION_METRICS = ("accuracy", "recall_at_90_precision", "auto")
# The recipe every dataset gets without --recipe; the paper's are by name.
DEFAULT_RECIPE = "default"
# The smallest batch `fitted_batch_size` picks for small data (when the data
# has that many examples).
MIN_FITTED_BATCH = 8

# The fine-tuning tools (off by default), top-level and per stage.
TOP_TOOL_DEFAULTS = {"augmentation": None, "label_smoothing": 0.0}
STAGE_TOOL_DEFAULTS = {"ema_decay": None, "wise_ft": False, "lora_rank": None}
STAGE_TOOL_FIELDS = tuple(STAGE_TOOL_DEFAULTS)

TOP_FIELDS = ("name", "description", "batch_size", "learning_rate",
              "selection_metric", "loss", "optimizer", "stage_defaults",
              "stages", "min_steps_per_epoch", "reference_widths",
              "task_selection", *TOP_TOOL_DEFAULTS)
STAGE_FIELDS = ("epochs", "learning_rate_multipliers", "schedule",
                "warmup_steps", "weight_decay", "clip_norm",
                "early_stopping_patience", "min_steps", "warmup_fraction",
                *STAGE_TOOL_FIELDS)
OPTIMIZER_FIELDS = ("beta_1", "beta_2", "epsilon")


def available_recipes():
    """Names of the built-in recipes."""
    return available_names(RECIPE_DIR)


def default_recipe(dataset):
    """The built-in recipe for a `--dataset` name: `default` for every one
    (the paper's recipes assume a million products; see docs/recipes.md)."""
    del dataset
    return DEFAULT_RECIPE


def fitted_batch_size(recipe, num_examples, multiple=1, given=False):
    """The global batch a run uses on `num_examples` training examples.

    The recipe's batch, lowered to fit the data: never over `num_examples`,
    and, with the recipe's `min_steps_per_epoch` (unless the batch was
    `given` by a flag), the largest power of two with that many steps per
    epoch, at least `MIN_FITTED_BATCH`. The result is a multiple of
    `multiple` (replicas times accumulation micro-batches).

    Raises:
        ValueError: fewer examples than `multiple`.
    """
    batch = recipe["batch_size"]
    if num_examples < multiple:
        raise ValueError(
            f"{num_examples} usable training examples cannot fill one batch "
            f"split {multiple} ways; add training data or use fewer replicas "
            "or --accumulate-steps.")
    steps = recipe.get("min_steps_per_epoch")
    if steps and not given:
        batch = min(batch, max(MIN_FITTED_BATCH, num_examples // steps))
    if batch > num_examples or (steps and not given):
        batch = 2 ** int(math.log2(min(batch, num_examples)))
    return max(multiple, batch // multiple * multiple)


def stage_epochs(plan, steps_per_epoch):
    """A stage's epochs: its `epochs`, raised until it has `min_steps` steps
    (0 epochs, evaluation only, stays 0)."""
    epochs = plan["epochs"]
    if epochs and plan.get("min_steps") and steps_per_epoch:
        epochs = max(epochs, math.ceil(plan["min_steps"] / steps_per_epoch))
    return epochs


def stage_warmup_steps(plan, total_steps):
    """Warm-up steps: `warmup_steps`, or `warmup_fraction` of the stage."""
    return max(plan["warmup_steps"],
               int(round(plan.get("warmup_fraction", 0.0) * total_steps)))


def load_recipe(name_or_path):
    """A recipe as written (a dict), from a built-in name or a JSON path."""
    return load_named_json(name_or_path, RECIPE_DIR, "recipe")


def resolve_recipe(name_or_path, overrides=None):
    """The recipe with its overrides applied, complete and checked.

    Args:
        name_or_path: a built-in name, a JSON path, or a recipe dict.
        overrides: optional dict of dotted key to value, e.g.
            `{"batch_size": 8, "stages.*.epochs": 1,
            "stages.end2end.learning_rate_multipliers.clip": 0.1}`; `None`
            values are ignored.

    Returns:
        A dict with the top fields and, under `stages`, every stage with
        every field (`stage_defaults` folded in).

    Raises:
        ValueError: an unknown recipe, field, stage or group, or a bad value.

    Example:
    ```python
    recipe = resolve_recipe("paper_fashion_gen", {"stages.*.epochs": 1})
    recipe["stages"]["end2end"]["warmup_steps"]  # 500
    ```
    """
    raw = (copy.deepcopy(name_or_path) if isinstance(name_or_path, dict)
           else load_recipe(name_or_path))
    source = name_or_path if isinstance(name_or_path, str) else raw.get("name")
    _check_keys(raw, TOP_FIELDS, "the recipe")
    defaults = raw.get("stage_defaults", {})
    _check_keys(defaults, STAGE_FIELDS, "stage_defaults")
    stages = raw.get("stages", {})
    _check_keys(stages, STAGE_ORDER, "stages")
    resolved = {key: copy.deepcopy(raw[key]) for key in TOP_FIELDS
                if key in raw and key not in ("optimizer", "stage_defaults", "stages")}
    resolved.setdefault("selection_metric", "recall_at_90_precision")
    resolved.setdefault("task_selection", "average")
    resolved.setdefault("loss", "ce")
    for key, default in TOP_TOOL_DEFAULTS.items():
        resolved[key] = copy.deepcopy(raw.get(key, default))
    resolved["optimizer"] = dict(raw.get("optimizer", {}))
    resolved["stages"] = {}
    for stage in STAGE_ORDER:
        fields = copy.deepcopy(defaults)
        fields.update(copy.deepcopy(stages.get(stage, {})))
        _check_keys(fields, STAGE_FIELDS, f"stages.{stage}")
        multipliers = dict(STAGES[stage].learning_rate_multipliers)
        multipliers.update(fields.get("learning_rate_multipliers", {}))
        fields["learning_rate_multipliers"] = multipliers
        _normalize_weight_decay(fields, f"stages.{stage}")
        resolved["stages"][stage] = fields
    for key, value in (overrides or {}).items():
        if value is not None:
            _override(resolved, key, value)
    resolved["source"] = source
    _check(resolved)
    return resolved


def recipe_overrides(args):
    """What `trainers/run.py`'s flags set in the recipe (`resolve_recipe`'s
    `overrides`); flags not given are None and change nothing."""
    flag = lambda name: getattr(args, name, None)  # noqa: E731
    metric = flag("selection_metric")
    overrides = {
        "batch_size": flag("batch_size"),
        "learning_rate": flag("learning_rate"),
        "selection_metric": None if metric == "auto" else metric,
        "task_selection": flag("task_selection"),
        "loss": flag("loss"),
        "stages.*.epochs": flag("epochs"),
        # The rate only: the recipe's kind stays.
        "stages.*.weight_decay.rate": flag("weight_decay"),
        "stages.*.schedule": flag("lr_schedule"),
        "stages.*.warmup_steps": flag("warmup_steps"),
        # A flag's value is taken as given: no share, no minimum on top.
        "stages.*.warmup_fraction": None if flag("warmup_steps") is None else 0.0,
        "stages.*.min_steps": None if flag("epochs") is None else 0,
        "stages.*.clip_norm": flag("clip_norm"),
        "stages.*.early_stopping_patience": flag("early_stopping_patience"),
        "augmentation": flag("augment"),
        "label_smoothing": flag("label_smoothing"),
        "stages.*.ema_decay": flag("ema_decay"),
        "stages.end2end.wise_ft": flag("wise_ft") or None,
        "stages.end2end.lora_rank": flag("lora_rank"),
    }
    for stage in STAGE_ORDER:  # A stage's own flag wins over --epochs.
        overrides[f"stages.{stage}.epochs"] = flag(f"{stage}_epochs")
        if flag(f"{stage}_epochs") is not None:
            overrides[f"stages.{stage}.min_steps"] = 0
    overrides.update(dict(flag("recipe_set") or []))
    return overrides


def stage_schedule(recipe, stage, widths=None):
    """The `StageSchedule` (which groups train, at what factor) of a stage.

    With the recipe's `reference_widths` (`{group: width}`) and the model's
    `widths`, a group's factor is scaled by reference / actual width: the
    recipe's rate is for a model of the reference width, and Adam's best
    rate for hidden layers grows as they narrow (μP, Yang et al. 2021), so
    one recipe suits ViT-B/32 (CLIP width 768) and the tiny CLIP (64).
    """
    multipliers = dict(recipe["stages"][stage]["learning_rate_multipliers"])
    for group, reference in (recipe.get("reference_widths") or {}).items():
        width = (widths or {}).get(group)
        if width and multipliers.get(group) is not None:
            multipliers[group] *= reference / width
    return StageSchedule(stage, multipliers)


def write_recipe(workdir, recipe):
    """Writes the resolved recipe to `WORKDIR/recipe.json`; returns the path."""
    from cmaclip_tf.runtime.atomic_files import write_json

    path = os.path.join(workdir, RECIPE_FILE)
    write_json(path, recipe, sort_keys=True)
    return path


def _check_keys(mapping, allowed, where):
    if not isinstance(mapping, dict):
        raise ValueError(f"Recipe: {where} must be a JSON object; got {mapping!r}.")
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise ValueError(f"Recipe: unknown field {unknown[0]!r} in {where}; "
                         f"expected {', '.join(allowed)}.")


def _override(recipe, key, value):
    """Sets `key` (dotted; `stages.*.` for every stage) to `value`."""
    parts = key.split(".")
    if parts[:2] == ["stages", "*"]:
        for stage in STAGE_ORDER:
            _override(recipe, ".".join(["stages", stage, *parts[2:]]), value)
        return
    target = recipe
    for part in parts[:-1]:
        if not isinstance(target.get(part), dict):
            raise ValueError(f"Recipe: cannot set {key!r}: no field {part!r}.")
        target = target[part]
    target[parts[-1]] = value


def _check(recipe):
    _check_keys(recipe, (*TOP_FIELDS, "source"), "the recipe")
    _require(recipe, "batch_size", _is_int(1), "an integer >= 1")
    recipe.setdefault("reference_widths", None)
    if recipe["reference_widths"] is not None:
        _check_keys(recipe["reference_widths"], ("clip", "fusion"), "reference_widths")
        for group, width in recipe["reference_widths"].items():
            if not _is_int(1)(width):
                raise ValueError(f"Recipe: reference_widths.{group} must be an "
                                 f"integer >= 1; got {width!r}.")
    recipe.setdefault("min_steps_per_epoch", None)
    if recipe["min_steps_per_epoch"] is not None:
        _require(recipe, "min_steps_per_epoch", _is_int(1), "an integer >= 1 or null")
    _require(recipe, "learning_rate", _is_number(0.0, exclusive=True), "a number > 0")
    if recipe["selection_metric"] not in SELECTION_METRICS:
        raise ValueError(f"Recipe: selection_metric must be one of "
                         f"{SELECTION_METRICS}; got {recipe['selection_metric']!r}.")
    if recipe["task_selection"] not in TASK_SELECTIONS:
        raise ValueError(f"Recipe: task_selection must be one of "
                         f"{TASK_SELECTIONS}; got {recipe['task_selection']!r}.")
    _check_loss(recipe["loss"])
    _check_keys(recipe["optimizer"], OPTIMIZER_FIELDS, "optimizer")
    for name, value in recipe["optimizer"].items():
        if not _is_number(0.0)(value):
            raise ValueError(f"Recipe: optimizer.{name} must be a number >= 0; "
                             f"got {value!r}.")
    for stage, fields in recipe["stages"].items():
        where = f"stages.{stage}"
        _check_keys(fields, STAGE_FIELDS, where)
        _require(fields, "epochs", _is_int(0), "an integer >= 0", where)
        _require(fields, "warmup_steps", _is_int(0), "an integer >= 0", where)
        fields.setdefault("min_steps", 0)
        fields.setdefault("warmup_fraction", 0.0)
        _require(fields, "min_steps", _is_int(0), "an integer >= 0", where)
        _require(fields, "warmup_fraction", lambda v: _is_number(0.0)(v) and v < 1,
                 "a number in [0, 1)", where)
        _require(fields, "weight_decay", lambda v: v is not None,
                 'a number or {"kind": ..., "rate": ...}', where)
        _normalize_weight_decay(fields, where)
        if fields.get("schedule") not in DECAYS:
            raise ValueError(f"Recipe: {where}.schedule must be one of {DECAYS}; "
                             f"got {fields.get('schedule')!r}.")
        for name, test, what in (
            ("clip_norm", _is_number(0.0), "a number >= 0"),
            ("early_stopping_patience", _is_int(0), "an integer >= 0"),
        ):
            fields.setdefault(name, None)
            if fields[name] is not None and not test(fields[name]):
                raise ValueError(f"Recipe: {where}.{name} must be {what} or "
                                 f"null; got {fields[name]!r}.")
        multipliers = fields["learning_rate_multipliers"]
        _check_keys(multipliers, STAGES[stage].learning_rate_multipliers,
                    f"{where}.learning_rate_multipliers")
        for group, value in multipliers.items():
            if value is not None and not _is_number(0.0, exclusive=True)(value):
                raise ValueError(
                    f"Recipe: {where}.learning_rate_multipliers.{group} must be "
                    f"a number > 0, or null for frozen; got {value!r}.")
        if not StageSchedule(stage, multipliers).trainable_groups():
            raise ValueError(f"Recipe: {where} freezes every module group.")
        _check_stage_tools(fields, where, multipliers.get("clip") is None)
    _check_top_tools(recipe)


def _check_top_tools(recipe):
    from cmaclip_tf.preprocessing.image_augmentation import AUGMENTATIONS

    if recipe["augmentation"] not in (None, *AUGMENTATIONS):
        raise ValueError(f"Recipe: augmentation must be null or one of "
                         f"{AUGMENTATIONS}; got {recipe['augmentation']!r}.")
    smoothing = recipe["label_smoothing"]
    if not (_is_number(0.0)(smoothing) and smoothing < 1.0):
        raise ValueError(f"Recipe: label_smoothing must be a number in [0, 1); "
                         f"got {smoothing!r}.")
    spec = recipe["loss"]
    specs = (spec.values() if isinstance(spec, dict) and "name" not in spec
             else [spec])
    names = {one if isinstance(one, str) else one.get("name") for one in specs}
    if smoothing and names - {"ce"}:
        raise ValueError(f"Recipe: label_smoothing {smoothing} applies to the "
                         f"ce loss only; the loss is {spec!r}. Set "
                         "label_smoothing to 0 or use --loss ce.")


def _check_stage_tools(fields, where, clip_frozen):
    """ema_decay, wise_ft, lora_rank of one stage (defaults filled in)."""
    for name, default in STAGE_TOOL_DEFAULTS.items():
        fields.setdefault(name, default)
    decay = fields["ema_decay"]
    if decay is not None and not (_is_number(0.0, exclusive=True)(decay)
                                  and decay < 1.0):
        raise ValueError(f"Recipe: {where}.ema_decay must be a number in "
                         f"(0, 1) or null; got {decay!r}.")
    wise_ft = fields["wise_ft"]
    if not isinstance(wise_ft, bool) and not (
        isinstance(wise_ft, list) and wise_ft
        and all(_is_number(0.0)(a) and a <= 1.0 for a in wise_ft)
    ):
        raise ValueError(f"Recipe: {where}.wise_ft must be true, false or a "
                         f"list of α in [0, 1]; got {wise_ft!r}.")
    rank = fields["lora_rank"]
    if rank is not None and not _is_int(1)(rank):
        raise ValueError(f"Recipe: {where}.lora_rank must be an integer >= 1 "
                         f"or null; got {rank!r}.")
    for name, on in (("wise_ft", wise_ft), ("lora_rank", rank)):
        if on and clip_frozen:
            raise ValueError(f"Recipe: {where}.{name} acts on CLIP's weights, "
                             f"which {where} freezes; set it in a stage that "
                             "trains CLIP (end2end).")


def _normalize_weight_decay(fields, where):
    """`fields["weight_decay"]` as `{"kind", "rate"}` (a number: decoupled)."""
    from trainers.training.fused_adamw import weight_decay_setting  # TensorFlow: late.

    if "weight_decay" not in fields:
        return
    try:
        kind, rate = weight_decay_setting(fields["weight_decay"])
    except ValueError as error:
        raise ValueError(f"Recipe: {where}.{error}") from None
    fields["weight_decay"] = {"kind": kind, "rate": rate}


def _check_loss(spec):
    """A loss spec `cmaclip_tf.losses.task_losses` takes: a name, a dict with
    a `"name"` and parameters, or `{task: spec}` (tasks are checked when the
    run knows them)."""
    from cmaclip_tf.losses import get_loss  # Keras: only once a recipe is checked.

    per_task = isinstance(spec, dict) and "name" not in spec
    specs = spec.items() if per_task else [(None, spec)]
    for task, one in specs:
        where = f"loss.{task}" if task else "loss"
        try:
            get_loss(one)
        except (ValueError, TypeError) as error:
            raise ValueError(f"Recipe: {where}: {error}") from None


def _require(mapping, name, test, what, where=None):
    label = f"{where}.{name}" if where else name
    if name not in mapping:
        raise ValueError(f"Recipe: {label} is missing; it must be {what}.")
    if not test(mapping[name]):
        raise ValueError(f"Recipe: {label} must be {what}; got {mapping[name]!r}.")


def _is_int(minimum):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def _is_number(minimum, exclusive=False):
    def test(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return value > minimum if exclusive else value >= minimum
    return test
