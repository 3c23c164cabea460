"""Input-pipeline throughput against what training consumes.

Measures examples per second of `make_batches` (training mode: shuffle,
decode, resize, normalize, tokenize, batch) for

- the generated product dataset (first epoch draws; later epochs are cached),
- a manifest of JPEG files at the tiny model's image size (first epoch also
  checks every image; later epochs reuse the checks),

and the tiny CMA-CLIP's training step (forward, backward, update) on the
same batches, then prints a table and JSON. The pipeline should deliver at
least 3 times what training consumes.

    python -m benchmarks.input_pipeline_benchmark --examples 2000 \
        --json-out FILE
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

from benchmarks.result_table import print_json  # noqa: E402
from cmaclip_tf.datasets import SyntheticProducts  # noqa: E402
from cmaclip_tf.datasets import SyntheticProductsConfig  # noqa: E402
from cmaclip_tf.datasets import load_dataset  # noqa: E402
from cmaclip_tf.models import get_model_config  # noqa: E402
from cmaclip_tf.models import load_clip  # noqa: E402
from cmaclip_tf.preprocessing import ImagePreprocessor  # noqa: E402
from cmaclip_tf.preprocessing import TextPreprocessor  # noqa: E402
from cmaclip_tf.preprocessing.input_pipeline import make_batches  # noqa: E402
from trainers.training.recipe import resolve_recipe  # noqa: E402


def pipeline_rate(raw_split, text, image, batch_size, epoch):
    """One full training epoch of `make_batches`.

    Returns:
        dict: `startup_s` (building the pipeline and its first batch, which
        includes filling the shuffle buffer), `steady` (examples per second
        after the first batch) and `epoch` (examples per second overall).
    """
    start = time.perf_counter()
    batches = iter(
        make_batches(
            raw_split,
            text,
            image,
            batch_size,
            training=True,
            seed=0,
            epoch=epoch,
        )
    )
    first, _ = next(batches)
    started = time.perf_counter()
    count = 0
    for features, _ in batches:
        count += int(features["images"].shape[0])
    end = time.perf_counter()
    total = count + int(first["images"].shape[0])
    return {
        "startup_s": started - start,
        "steady": count / max(end - started, 1e-9),
        "epoch": total / (end - start),
    }


def training_rate(batches, tasks, steps):
    """Examples per second of the tiny CMA-CLIP's train step (AdamW, one
    cross-entropy per task; what the trainer's step does)."""
    import keras

    from cmaclip_tf.models import create_cma_clip

    model, _, _ = create_cma_clip("tiny", tasks)
    optimizer = keras.optimizers.AdamW(1e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(features, labels):
        with tf.GradientTape() as tape:
            outputs = model(features, training=True)
            loss = tf.add_n(
                [
                    loss_fn(
                        tf.maximum(labels[t], 0),
                        outputs[f"{t}_logits"],
                        sample_weight=tf.cast(labels[t] >= 0, tf.float32),
                    )
                    for t in tasks
                ]
            )
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    batches = list(batches.take(steps + 2))
    step(*batches[0])  # Trace.
    step(*batches[1])
    start = time.perf_counter()
    count = 0
    for features, labels in batches[2:]:
        step(features, labels).numpy()
        count += int(features["images"].shape[0])
    return count / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)

    config = get_model_config("tiny")
    size, length = config["image_size"], config["sequence_length"]
    batch_size = args.batch_size or resolve_recipe("synthetic")["batch_size"]
    clip = load_clip(config["clip_preset"])
    text = TextPreprocessor.from_tokenizer(clip.tokenizer, length)
    image = ImagePreprocessor.from_image_converter(clip.image_converter)
    sizes = {"train": args.examples, "validation": 1, "test": 1}

    results = {
        "batch_size": batch_size,
        "image_size": size,
        "examples": args.examples,
        "cpus": os.cpu_count(),
        "pipeline": {},
    }
    synthetic = load_dataset("synthetic", num_examples=sizes, image_size=size)
    for epoch, label in (
        (0, "synthetic, epoch 1 (drawing)"),
        (1, "synthetic, epoch 2+ (cached)"),
    ):
        results["pipeline"][label] = pipeline_rate(
            synthetic.splits["train"], text, image, batch_size, epoch
        )

    with tempfile.TemporaryDirectory() as folder:
        products = SyntheticProducts(SyntheticProductsConfig(image_size=size))
        manifests = products.write(
            folder, {"train": args.examples}, image_format="jpeg"
        )
        files = load_dataset(
            "manifest",
            manifest=manifests["train"],
            val_size=0,
            label_vocabularies=products.tasks,
        )
        for epoch, label in (
            (0, "JPEG manifest, epoch 1 (checks images)"),
            (1, "JPEG manifest, epoch 2+"),
        ):
            results["pipeline"][label] = pipeline_rate(
                files.splits["train"], text, image, batch_size, epoch
            )
        assert files.bad_records.total() == 0

    train = training_rate(
        make_batches(
            synthetic.splits["train"], text, image, batch_size, training=True
        ),
        synthetic.num_classes,
        args.train_steps,
    )
    results["training_examples_per_second"] = train
    steady = [r for k, r in results["pipeline"].items() if "epoch 2+" in k]
    results["steady_over_training"] = min(r["steady"] for r in steady) / train
    results["epoch_over_training"] = min(r["epoch"] for r in steady) / train

    print(
        f"\nInput pipeline, tiny model ({size}x{size}, {length} tokens, batch "
        f"{batch_size}, {args.examples} examples, {os.cpu_count()} CPUs)"
    )
    print(
        f"{'source':40s} {'startup s':>9s} {'steady ex/s':>11s} {'x train':>7s} "
        f"{'epoch ex/s':>10s} {'x train':>7s}"
    )
    for label, r in results["pipeline"].items():
        print(
            f"{label:40s} {r['startup_s']:9.2f} {r['steady']:11.0f} "
            f"{r['steady'] / train:7.1f} {r['epoch']:10.0f} {r['epoch'] / train:7.1f}"
        )
    print(
        f"{'tiny CMA-CLIP training step':40s} {'':9s} {train:11.0f} {1.0:7.1f}"
    )
    print_json(results, args.json_out)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
