"""The run's data: the dataset's splits as model batches, and feature caches."""

import os

import numpy as np
import tensorflow as tf

from cmaclip_tf.data import ImagePreprocessor
from cmaclip_tf.data import TextPreprocessor
from cmaclip_tf.data import load_dataset
from cmaclip_tf.data import make_batches
from cmaclip_tf.data import shuffle_seed
from cmaclip_tf.inference_bundle import save_inference_bundle
from cmaclip_tf.models import get_model_config

SHUFFLE_BUFFER = 10_000


def load_run_data(args):
    """Loads `args.dataset` with the run's tasks, seed and bad-record policy."""
    config = get_model_config(args.model)
    tasks = args.tasks.split(",") if args.tasks else None
    # A resumed or later-stage run reuses the label vocabularies it saved.
    labels = os.path.join(args.workdir, "label_vocabularies.json")
    dataset = load_dataset(
        args.dataset,
        data_dir=args.data_dir,
        manifest=args.manifest,
        val_manifest=args.val_manifest,
        test_manifest=args.test_manifest,
        tasks=tasks,
        seed=args.seed,
        num_examples=args.num_examples,
        val_fraction=args.val_fraction,
        on_bad_record=args.on_bad_record,
        label_vocabularies=labels if os.path.isfile(labels) else None,
        image_size=config["image_size"],
    )
    return RunData(dataset, seed=args.seed)


class RunData:
    """Batches of one `MultiTaskDataset` for training and evaluation."""

    def __init__(self, dataset, seed=0):
        self.dataset = dataset
        self.seed = seed
        self.text_preprocessor = None
        self.image_preprocessor = None

    @property
    def tasks(self):
        """Task name to class names, in logit order."""
        return {task: list(v.names) for task, v in self.dataset.tasks.items()}

    @property
    def num_train_examples(self):
        return int(self.dataset.num_examples["train"])

    def save_labels(self, workdir):
        self.dataset.save(workdir)

    def bad_record_counts(self):
        return self.dataset.bad_records.counts()

    def prepare(self, clip, config):
        """Builds the tokenizer and image preprocessing of the loaded CLIP."""
        self.sequence_length = config["sequence_length"]
        self.text_preprocessor = TextPreprocessor.from_tokenizer(
            clip.tokenizer, self.sequence_length
        )
        self.image_preprocessor = ImagePreprocessor.from_image_converter(
            clip.image_converter
        )

    def _batches(self, split, batch_size, training, epoch=0):
        return make_batches(
            self.dataset.split(split),
            self.text_preprocessor,
            self.image_preprocessor,
            batch_size,
            training=training,
            seed=self.seed,
            epoch=epoch,
            shuffle_buffer_size=SHUFFLE_BUFFER,
        )

    def train_batches(self, epoch, batch_size, skip_batches=0, trainer=None,
                      cached=None):
        """Epoch `epoch`'s batches (same order on every run), from `skip_batches`.

        With `cached` (from `cache_features`), the same examples in the same
        order, as features at the trainer's input depth.
        """
        if cached is None:
            dataset = self._batches("train", batch_size, True, epoch)
        else:
            # The same shuffle as `make_batches` applies to the raw examples.
            dataset = cached.shuffle(
                SHUFFLE_BUFFER, seed=shuffle_seed(self.seed, epoch),
                reshuffle_each_iteration=False,
            ).batch(batch_size, drop_remainder=True)
        return dataset.skip(skip_batches).prefetch(tf.data.AUTOTUNE)

    def eval_batches(self, split, batch_size, trainer=None, cached=None):
        return self._batches(split, batch_size, training=False)

    def cache_features(self, trainer, batch_size):
        """Runs the frozen front of the model once over train, in order.

        Returns a dataset of per-example `(features, labels)` at the trainer's
        input depth, held in host memory.
        """
        compute = tf.function(trainer.features_at_depth)
        chunks = []
        for features, labels in self._batches("train", batch_size, training=False):
            outputs = compute(features)
            chunks.append((
                {k: v.numpy() for k, v in outputs.items()},
                {k: v.numpy() for k, v in labels.items()},
            ))
        features = {k: np.concatenate([c[0][k] for c in chunks]) for k in chunks[0][0]}
        labels = {k: np.concatenate([c[1][k] for c in chunks]) for k in chunks[0][1]}
        return tf.data.Dataset.from_tensor_slices((features, labels))

    def save_inference_bundle(self, directory, model, clip, config, metadata):
        save_inference_bundle(
            directory, model, clip.tokenizer, clip.image_converter,
            self.tasks, config["sequence_length"], metadata=metadata,
        )
