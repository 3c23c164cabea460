"""Noise robustness of a trained run: the paper's Table 5 as a measurement.

    python trainers/suites/noise_robustness.py --workdir runs/full

Evaluates the run's final model (`WORKDIR/inference/`, or CLIP with class
prompts for a `--variant zero_shot` run) on the test split under each
condition of `cmaclip_tf.datasets.synthetic.title_perturbations.PERTURBATIONS`: as is,
attribute words removed from the titles, the correct attribute words put in,
and noise images. Writes `WORKDIR/noise_robustness.json`: `{condition: {task:
{accuracy, recall_at_90_precision, image_weight_mean, ...}}}`, with λ and
accuracy also apart for titles that name the task and titles that do not
(`image_weight_mean_named`, `image_weight_mean_unnamed`, ...), and prints a
table. The test split is read with the run's own data flags (`WORKDIR/run.json`:
dataset, files, seed, sizes), so it is the one the run was evaluated on; flags
given here override them.
"""

import argparse
import json
import os
import sys

if __package__ in (None, ""):
    # Run as a script: make the repository (three folders up) importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))

from trainers.training.run_record import read_run_record  # noqa: E402

RESULT_FILE = "noise_robustness.json"
# trainers/run.py flags that pick the data, as `load_dataset` arguments.
DATA_FLAGS = {
    "dataset": "name", "data_dir": "data_dir", "manifest": "manifest",
    "val_manifest": "val_manifest", "test_manifest": "test_manifest",
    "seed": "seed", "num_examples": "num_examples", "val_size": "val_size",
    "val_fraction": "val_fraction",
}


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", required=True, help="A finished run's workdir.")
    data = parser.add_argument_group(
        "data", "Default: the run's own (WORKDIR/run.json); as for trainers/run.py.")
    data.add_argument("--dataset")
    data.add_argument("--data-dir")
    data.add_argument("--manifest")
    data.add_argument("--val-manifest")
    data.add_argument("--test-manifest")
    data.add_argument("--seed", type=int)
    data.add_argument("--num-examples", type=int)
    data.add_argument("--val-size", type=int)
    data.add_argument("--val-fraction", type=float)
    parser.add_argument("--model", help="Zero-shot runs: the model config "
                        "(default: the run's).")
    parser.add_argument("--prompt", help="Zero-shot runs: the class prompt "
                        "template (default: the run's).")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output", help=f"Default: WORKDIR/{RESULT_FILE}.")
    return parser


def load_run_model(workdir, model_config=None, prompt=None):
    """`(model, text_preprocessor, image_preprocessor, class names)` of a run.

    A trained run has an inference bundle; a zero-shot run has none, so its
    model is rebuilt from CLIP and the class prompts, as the trainer built it
    (its model config, CLIP preset and prompt from `run.json`, unless given;
    a `finetuned_clip` run's CLIP from its `preset/`).
    """
    from cmaclip_tf.inference.inference_bundle import load_inference_bundle

    bundle_dir = os.path.join(workdir, "inference")
    if os.path.isdir(bundle_dir):
        bundle = load_inference_bundle(bundle_dir)
        return (bundle.model, bundle.text_preprocessor, bundle.image_preprocessor,
                bundle.label_vocabularies)
    if not os.path.isfile(os.path.join(workdir, "zero_shot", "done.json")):
        raise FileNotFoundError(
            f"{workdir} has neither an inference bundle (inference/) nor a "
            "zero-shot result; train it first with trainers/run.py."
        )
    from cmaclip_tf.datasets import LabelVocabularies
    from cmaclip_tf.models import get_model_config
    from cmaclip_tf.models import load_clip
    from cmaclip_tf.models.zero_shot_clip import DEFAULT_PROMPT
    from cmaclip_tf.models.zero_shot_clip import ZeroShotCLIP
    from cmaclip_tf.models.zero_shot_clip import class_prompts
    from cmaclip_tf.preprocessing import ImagePreprocessor
    from cmaclip_tf.preprocessing import TextPreprocessor

    run = read_run_record(workdir)
    config = get_model_config(model_config or run.get("model") or "tiny")
    # A fine-tuned CLIP (--variant finetuned_clip) is in the run's preset/.
    tuned = os.path.join(workdir, "preset")
    clip = load_clip(tuned if os.path.isdir(tuned)
                     else run.get("clip_preset") or config["clip_preset"])
    prompt = prompt or run.get("prompt")
    text_preprocessor = TextPreprocessor.from_tokenizer(
        clip.tokenizer, config["sequence_length"]
    )
    image_preprocessor = ImagePreprocessor.from_image_converter(clip.image_converter)
    names = {t: list(v.names) for t, v in LabelVocabularies.load(workdir).items()}
    prompt_ids = {
        task: text_preprocessor(class_prompts(classes, prompt or DEFAULT_PROMPT))[
            "token_ids"
        ].numpy()
        for task, classes in names.items()
    }
    return (ZeroShotCLIP(clip.backbone, prompt_ids), text_preprocessor,
            image_preprocessor, names)


def run_data_options(workdir, overrides=None):
    """The `load_dataset` arguments of a run: its `run.json`, then `overrides`.

    Args:
        workdir: the run's workdir.
        overrides: `{trainers/run.py flag name: value}`; `None` values are
            not overrides.
    """
    record = read_run_record(workdir)
    options = {"name": "synthetic", "seed": 0}
    options.update({DATA_FLAGS[k]: v for k, v in record.items()
                    if k in DATA_FLAGS and v is not None})
    if record.get("misleading_title") is not None or record.get(
            "irrelevant_image") is not None:
        # The generator's noise dials make the run's test split too.
        from trainers.training.input_data import synthetic_noise_config

        options["synthetic_config"] = synthetic_noise_config(
            argparse.Namespace(**record))
    for flag, value in (overrides or {}).items():
        if value is not None:
            options[DATA_FLAGS[flag]] = value
    return options


def evaluate_noise_robustness(
    workdir, data_options=None, model_config=None, prompt=None, batch_size=64,
    split="test",
):
    """Metrics and mean λ per task under each perturbation of `split`.

    Args:
        workdir: a finished run.
        data_options: `load_dataset` arguments (`name`, files, `seed`,
            sizes); default: the run's (`run_data_options(workdir)`).

    Returns:
        `{condition: {task: metrics}}`, metrics as `evaluate_predictions`'.
    """
    from cmaclip_tf.datasets import load_dataset
    from cmaclip_tf.datasets.synthetic.title_perturbations import PERTURBATIONS
    from cmaclip_tf.datasets.synthetic.title_perturbations import TitlePerturbation
    from cmaclip_tf.datasets.synthetic.title_perturbations import attribute_words
    from cmaclip_tf.datasets.synthetic.title_perturbations import perturb_split
    from cmaclip_tf.preprocessing.input_pipeline import make_batches
    from trainers.training.evaluation import Evaluator
    from trainers.training.evaluation import evaluate_predictions

    model, text_preprocessor, image_preprocessor, names = load_run_model(
        workdir, model_config, prompt
    )
    options = dict(data_options or run_data_options(workdir))
    dataset = options.pop("name")
    data = load_dataset(
        dataset, **options,
        tasks=list(names), label_vocabularies=os.path.join(
            workdir, "label_vocabularies.json"
        ),
        image_size=image_preprocessor.image_size,
    )
    seed = options.get("seed", 0)
    words = attribute_words(names, dataset)
    evaluator = Evaluator(lambda features: model(features, training=False), names)
    results = {}
    for condition in PERTURBATIONS:
        raw = perturb_split(data.split(split), condition, names, words, seed=seed)
        batches = make_batches(
            raw, text_preprocessor, image_preprocessor, batch_size, training=False
        )
        predictions = evaluator.predict(batches)
        results[condition] = evaluate_predictions(predictions, list(names))
        texts = [e["text"].decode("utf-8") for e in raw.as_numpy_iterator()]
        add_mention_split(results[condition], predictions, texts,
                          TitlePerturbation(words))
    return results


def add_mention_split(metrics, predictions, texts, perturbation):
    """Adds λ and accuracy apart for titles that name the task and the rest.

    Keys per task: `named_share` (share of labelled examples whose title
    names some class of the task), `image_weight_mean_named` /
    `_unnamed`, `accuracy_named` / `_unnamed` (absent where a group is empty).
    Modality attention should weigh the image more where the title is silent.
    """
    import numpy as np

    for task, values in metrics.items():
        if not predictions:
            continue
        labels = predictions[f"{task}_label"]
        labelled = labels >= 0
        named = np.array([perturbation.names_task(t, task) for t in texts])[labelled]
        weights = predictions[f"{task}_image_weight"][labelled]
        correct = (
            predictions[f"{task}_probabilities"][labelled].argmax(-1)
            == labels[labelled]
        )
        if not labelled.any():
            continue
        values["named_share"] = float(named.mean())
        for group, mask in (("named", named), ("unnamed", ~named)):
            if mask.any():
                values[f"image_weight_mean_{group}"] = float(weights[mask].mean())
                values[f"accuracy_{group}"] = float(correct[mask].mean())


def format_table(results):
    """A text table: condition, task, accuracy, R@P90, mean λ (all, titles
    naming the task, the rest)."""
    lines = [f"{'condition':<24} {'task':<12} {'accuracy':>9} {'R@P90':>7} "
             f"{'λ mean':>7} {'named':>6} {'λ named':>8} {'λ silent':>9}"]
    for condition, tasks in results.items():
        for task, m in tasks.items():
            lines.append(
                f"{condition:<24} {task:<12} {m.get('accuracy', 0):>9.3f} "
                f"{m.get('recall_at_90_precision', 0):>7.3f} "
                f"{m.get('image_weight_mean', 0):>7.3f} "
                f"{m.get('named_share', float('nan')):>6.2f} "
                f"{m.get('image_weight_mean_named', float('nan')):>8.3f} "
                f"{m.get('image_weight_mean_unnamed', float('nan')):>9.3f}"
            )
    return "\n".join(lines)


def main(argv=None):
    args = build_parser().parse_args(argv)
    options = run_data_options(
        args.workdir, {flag: getattr(args, flag) for flag in DATA_FLAGS}
    )
    results = evaluate_noise_robustness(
        args.workdir, options, args.model, args.prompt, args.batch_size,
    )
    output = args.output or os.path.join(args.workdir, RESULT_FILE)
    with open(output, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(format_table(results))
    print(f"Wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
