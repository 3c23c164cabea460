"""The run's data: the dataset's splits as model batches, and feature caches."""

import json
import os

import tensorflow as tf

from cmaclip_tf.datasets import SyntheticProductsConfig
from cmaclip_tf.datasets import load_dataset
from cmaclip_tf.datasets.label_noise import with_label_noise
from cmaclip_tf.inference.inference_bundle import save_inference_bundle
from cmaclip_tf.limits.serving_limits import MAX_IMAGE_PIXELS
from cmaclip_tf.models import get_model_config
from cmaclip_tf.preprocessing import ImagePreprocessor
from cmaclip_tf.preprocessing import TextPreprocessor
from cmaclip_tf.preprocessing.image_augmentation import ImageAugmentation
from cmaclip_tf.preprocessing.input_pipeline import epoch_permutation
from cmaclip_tf.preprocessing.input_pipeline import make_batches
from trainers.training.feature_cache import FeatureCache
from trainers.training.feature_cache import weights_fingerprint


def load_run_data(args, tasks=None, reuse_labels=True, augmentation=None):
    """Loads `args.dataset` with the run's tasks, seed and bad-record policy.

    Args:
        args: the trainer's flags.
        tasks: the tasks to read instead of `args.tasks`; `()` reads no
            labels (image-text pairs, for contrastive training).
        reuse_labels: read the label vocabularies `args.workdir` holds, if
            any, instead of building them from train.
        augmentation: optional training image augmentation, a kind of
            `cmaclip_tf.preprocessing.image_augmentation.AUGMENTATIONS`.
    """
    config = get_model_config(args.model)
    if tasks is None and getattr(args, "tasks", None):
        tasks = args.tasks.split(",")
    labels = os.path.join(args.workdir, "label_vocabularies.json")
    if not reuse_labels:
        labels = ""
    dataset = load_dataset(
        args.dataset,
        data_dir=args.data_dir,
        manifest=args.manifest,
        val_manifest=args.val_manifest,
        test_manifest=getattr(args, "test_manifest", None),
        tasks=tasks,
        seed=args.seed,
        num_examples=args.num_examples,
        val_size=getattr(args, "val_size", None),
        val_fraction=args.val_fraction,
        on_bad_record=args.on_bad_record,
        max_image_pixels=getattr(args, "max_image_pixels", MAX_IMAGE_PIXELS),
        label_vocabularies=labels if os.path.isfile(labels) else None,
        image_size=config["image_size"],
        synthetic_config=synthetic_noise_config(args),
    )
    return RunData(dataset, seed=args.seed,
                   label_noise=getattr(args, "label_noise", 0.0),
                   augmentation=augmentation)


def synthetic_noise_config(args):
    """The generator's config with the run's modality-noise dials, or None."""
    # Flag name to the generator's dial.
    dials = {
        dial: getattr(args, flag, None)
        for flag, dial in (("misleading_title", "misleading_title"),
                           ("irrelevant_image", "irrelevant_image"),
                           ("title_mention", "mention"))
    }
    if all(value is None for value in dials.values()):
        return None
    if args.dataset != "synthetic":
        raise ValueError(
            "--misleading-title, --irrelevant-image and --title-mention set "
            "the generator's noise; they apply to --dataset synthetic only."
        )
    config = SyntheticProductsConfig()
    for dial, value in dials.items():
        if isinstance(value, dict):
            for task, rate in value.items():
                config = config.with_rate(dial, rate, tasks=[task])
        elif value is not None:
            config = config.with_rate(dial, value)
    return config


class RunData:
    """Batches of one `MultiTaskDataset` for training and evaluation.

    Args:
        dataset: `MultiTaskDataset`.
        seed: the run's seed (epoch orders, label noise).
        label_noise: share of training labels flipped per task (0: none);
            the same labels in every epoch and in the feature cache.
        augmentation: optional kind of training image augmentation
            (`ImageAugmentation`), seeded by `seed`, the epoch and the
            example's position: raw training batches only, never
            evaluation or a feature cache.
    """

    def __init__(self, dataset, seed=0, label_noise=0.0, augmentation=None):
        self.dataset = dataset
        self.seed = seed
        self.label_noise = label_noise
        self.augmentation = (ImageAugmentation(augmentation, seed)
                             if augmentation else None)
        self.text_preprocessor = None
        self.image_preprocessor = None
        self._eval_batches = {}

    @property
    def tasks(self):
        """Task name to class names, in logit order."""
        return {task: list(v.names) for task, v in self.dataset.tasks.items()}

    @property
    def num_train_examples(self):
        """Good training records (bad ones are already left out)."""
        return int(self.dataset.num_examples["train"])

    def steps_per_epoch(self, batch_size, cap=None):
        """Full global batches of train in an epoch, at most `cap`.

        Raises:
            ValueError: not one full batch (the flag to change is named).
        """
        steps = self.num_train_examples // batch_size
        if cap:
            steps = min(steps, cap)
        if steps == 0:
            raise ValueError(
                f"--batch-size {batch_size} exceeds the "
                f"{self.num_train_examples} usable training examples; pass "
                "a smaller --batch-size."
            )
        return steps

    def save_labels(self, workdir):
        self.dataset.save(workdir)

    def bad_record_counts(self):
        return self.dataset.bad_records.counts()

    def recovered_record_counts(self):
        return self.dataset.bad_records.recovered_counts()

    def prepare(self, clip, config):
        """Builds the tokenizer and image preprocessing of the loaded CLIP.

        Every stage loads the same CLIP preset: the preprocessors (and the
        evaluation pipelines built with them) are kept when nothing changed.
        """
        key = (config["sequence_length"], json.dumps(
            clip.image_converter.get_config(), sort_keys=True, default=str),
            len(clip.tokenizer.vocabulary), tuple(clip.tokenizer.merges[:8]))
        if key == getattr(self, "_prepared_for", None):
            return
        self._prepared_for = key
        self.sequence_length = config["sequence_length"]
        self._eval_batches = {}  # Built with these preprocessors.
        self.text_preprocessor = TextPreprocessor.from_tokenizer(
            clip.tokenizer, self.sequence_length
        )
        self.image_preprocessor = ImagePreprocessor.from_image_converter(
            clip.image_converter
        )

    def _batches(self, raw_split, batch_size, training, **augmentation):
        return make_batches(
            raw_split,
            self.text_preprocessor,
            self.image_preprocessor,
            batch_size,
            training=training,
            **augmentation,
        )

    def train_batches(self, epoch, batch_size, skip_batches=0, cached=None):
        """Epoch `epoch`'s batches (same order on every run), from `skip_batches`.

        The order is a full permutation of the training records, seeded by
        the run's seed and the epoch. With `cached` (a `FeatureCache`), the
        same examples in the same order, as features at the trainer's input
        depth.
        """
        skip = skip_batches * batch_size
        if cached is None:
            raw = self.dataset.epoch_split("train", self.seed, epoch, skip)
            augmentation = {}
            if self.augmentation is not None:
                augmentation = {"augment": self.augmentation.for_epoch(epoch),
                                "first_position": skip}
            dataset = self._batches(self._noisy(raw), batch_size, training=True,
                                    **augmentation)
        else:
            order = epoch_permutation(len(cached), self.seed, epoch)[skip:]
            dataset = cached.batches(order, batch_size)
        return dataset.prefetch(tf.data.AUTOTUNE)

    def _noisy(self, raw_train):
        """Train's raw examples with the run's label noise (keyed by id)."""
        if not self.label_noise:
            return raw_train
        return with_label_noise(raw_train, self.dataset.tasks.num_classes,
                                self.label_noise, self.seed)

    def eval_batches(self, split, batch_size):
        """Every example of `split`, in file order (built once per size)."""
        key = (split, batch_size)
        if key not in self._eval_batches:
            self._eval_batches[key] = self._batches(
                self.dataset.split(split), batch_size, False
            )
        return self._eval_batches[key]

    def sample_batches(self, split, num_examples, batch_size):
        """At most `num_examples` of `split`, a seeded random sample, batched
        for evaluation (epoch 0's order of the run's seed)."""
        raw = self.dataset.epoch_split(split, self.seed, 0).take(num_examples)
        return self._batches(raw, batch_size, False)

    def preview(self, split, num_examples):
        """`(features, texts)` of the first `num_examples` good records."""
        for features, _ in self._batches(
            self.dataset.split(split).take(num_examples), num_examples, False
        ).take(1):
            texts = [
                t.decode("utf-8", errors="replace")
                for t in self.dataset.split(split)
                .take(num_examples)
                .map(lambda e: e["text"])
                .as_numpy_iterator()
            ]
            return features, texts
        return None, []

    def cache_features(self, trainer, batch_size, directory):
        """The frozen front of the model over train, on disk (`FeatureCache`).

        Reuses a complete cache in `directory` with the same
        `cache_fingerprint` (after a restart, say).
        """
        return FeatureCache.build(
            directory,
            self._batches(self._noisy(self.dataset.split("train")), batch_size,
                          training=False),
            tf.function(trainer.features_at_depth, autograph=False),
            self.cache_fingerprint(trainer),
        )

    def cache_fingerprint(self, trainer):
        """A hash of everything a cached feature depends on: the frozen
        weights and the depth, the records (and their label noise), the
        text and image preprocessing (sequence length, tokenizer, image
        size, resizing, normalization) and the dtype policy computing it."""
        return weights_fingerprint(
            trainer.frozen_variables(), trainer.input_depth,
            self.dataset.name, self.num_train_examples, self.dataset.description,
            self.seed, self.label_noise, self._prepared_for,
            [f"{layer.path}:{layer.dtype_policy.name}"
             for layer in trainer.model._flatten_layers()],
        )

    def save_inference_bundle(self, directory, model, clip, config, metadata):
        save_inference_bundle(
            directory, model, clip.tokenizer, clip.image_converter,
            self.tasks, config["sequence_length"], metadata=metadata,
        )
