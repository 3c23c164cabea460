"""Noise robustness of a trained run: the paper's Table 5 as a measurement.

    python trainers/noise_robustness.py --workdir runs/full --dataset synthetic \
        --seed 0 [--num-examples N]

Evaluates the run's final model (`WORKDIR/inference/`, or CLIP with class
prompts for a `--variant zero_shot` run) on the test split under each
condition of `cmaclip_tf.data.title_perturbations.PERTURBATIONS`: as is,
attribute words removed from the titles, the correct attribute words put in,
and noise images. Writes `WORKDIR/noise_robustness.json`: `{condition: {task:
{accuracy, recall_at_90_precision, image_weight_mean, ...}}}`, with λ and
accuracy also apart for titles that name the task and titles that do not
(`image_weight_mean_named`, `image_weight_mean_unnamed`, ...), and prints a
table. Pass the same `--dataset`, `--seed` and `--num-examples` as the run, so
the test split is the one it was evaluated on.
"""

import argparse
import json
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RESULT_FILE = "noise_robustness.json"


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", required=True, help="A finished run's workdir.")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--data-dir", help="As for trainers/run.py.")
    parser.add_argument("--seed", type=int, default=0,
                        help="The run's --seed (picks the generated data).")
    parser.add_argument("--num-examples", type=int,
                        help="The run's --num-examples.")
    parser.add_argument("--model", default="tiny",
                        help="Model config (used by zero-shot runs only).")
    parser.add_argument("--prompt", default="a photo of a {label}",
                        help="Zero-shot runs: the class prompt template.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output", help=f"Default: WORKDIR/{RESULT_FILE}.")
    return parser


def load_run_model(workdir, model_config="tiny", prompt=None):
    """`(model, text_preprocessor, image_preprocessor, class names)` of a run.

    A trained run has an inference bundle; a zero-shot run has none, so its
    model is rebuilt from CLIP and the class prompts, as the trainer built it.
    """
    from cmaclip_tf.inference_bundle import load_inference_bundle

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
    from cmaclip_tf.data import ImagePreprocessor
    from cmaclip_tf.data import LabelVocabularies
    from cmaclip_tf.data import TextPreprocessor
    from cmaclip_tf.models import get_model_config
    from cmaclip_tf.models import load_clip
    from cmaclip_tf.models.zero_shot_clip import DEFAULT_PROMPT
    from cmaclip_tf.models.zero_shot_clip import ZeroShotCLIP
    from cmaclip_tf.models.zero_shot_clip import class_prompts

    config = get_model_config(model_config)
    clip = load_clip(config["clip_preset"])
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


def predict(forward, batches):
    """`StageTrainer.predict`'s arrays (probabilities, λ, labels).

    Args:
        forward: the model's inference call, `features -> outputs`.
        batches: `make_batches` output.
    """
    import numpy as np
    import tensorflow as tf

    chunks = []
    for features, labels in batches:
        outputs = forward(features)
        chunk = {}
        for task in labels:
            chunk[f"{task}_probabilities"] = tf.nn.softmax(
                outputs[f"{task}_logits"], axis=-1
            ).numpy()
            chunk[f"{task}_image_weight"] = outputs[f"{task}_image_weight"].numpy()
            chunk[f"{task}_label"] = labels[task].numpy()
        chunks.append(chunk)
    return {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}


def evaluate_noise_robustness(
    workdir, dataset="synthetic", seed=0, num_examples=None, data_dir=None,
    model_config="tiny", prompt=None, batch_size=64, split="test",
):
    """Metrics and mean λ per task under each perturbation of `split`.

    Returns:
        `{condition: {task: metrics}}`, metrics as `evaluate_predictions`'.
    """
    import tensorflow as tf

    from cmaclip_tf.data import load_dataset
    from cmaclip_tf.data import make_batches
    from cmaclip_tf.data.title_perturbations import PERTURBATIONS
    from cmaclip_tf.data.title_perturbations import TitlePerturbation
    from cmaclip_tf.data.title_perturbations import attribute_words
    from cmaclip_tf.data.title_perturbations import perturb_split
    from trainers.stage_trainer import evaluate_predictions

    model, text_preprocessor, image_preprocessor, names = load_run_model(
        workdir, model_config, prompt
    )
    data = load_dataset(
        dataset, data_dir=data_dir, seed=seed, num_examples=num_examples,
        tasks=list(names), label_vocabularies=os.path.join(
            workdir, "label_vocabularies.json"
        ),
        image_size=image_preprocessor.image_size,
    )
    words = attribute_words(names, dataset)
    forward = tf.function(lambda features: model(features, training=False))
    results = {}
    for condition in PERTURBATIONS:
        raw = perturb_split(data.split(split), condition, names, words, seed=seed)
        batches = make_batches(
            raw, text_preprocessor, image_preprocessor, batch_size, training=False
        )
        predictions = predict(forward, batches)
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
    results = evaluate_noise_robustness(
        args.workdir, args.dataset, args.seed, args.num_examples, args.data_dir,
        args.model, args.prompt, args.batch_size,
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
