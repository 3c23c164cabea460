"""The inference bundle: what a trained run hands to the exporter.

A folder with everything needed to rebuild inference exactly as trained,
in plain formats:

- `model.keras`: the `CMACLIP` model (architecture and weights);
- `vocab.json`, `merges.txt`: CLIP's BPE tokenizer files;
- `preprocessing.json`: sequence length and the image converter (size,
  scale, offset, interpolation, cropping);
- `labels.json`: per task, the class names in logit order;
- `metadata.json`: free-form run information (config name, checkpoint,
  metrics), plus the bundle's format version.

The trainer writes one to `WORKDIR/inference/` with `save_inference_bundle`;
`cmaclip_tf.inference.export` (`python -m serving.export`) reads it back with
`load_inference_bundle` and builds the preprocessing from the same
`cmaclip_tf.preprocessing` classes the training pipeline uses.
"""

import dataclasses
import json
import os

import keras

from cmaclip_tf.runtime.atomic_files import write_json

BUNDLE_FORMAT_VERSION = 1
MODEL_FILE = "model.keras"
VOCABULARY_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
PREPROCESSING_FILE = "preprocessing.json"
LABELS_FILE = "labels.json"
METADATA_FILE = "metadata.json"


@dataclasses.dataclass
class InferenceBundle:
    """What `load_inference_bundle` returns.

    Attributes:
        model: the `CMACLIP` model.
        text_preprocessor: `cmaclip_tf.preprocessing.TextPreprocessor` (strings to
            `token_ids` and `padding_mask`).
        image_preprocessor: `cmaclip_tf.preprocessing.ImagePreprocessor` (encoded
            image bytes to CLIP-normalized float images).
        label_vocabularies: dict of task to its class names, in logit order.
        metadata: dict, as saved (with `format_version`).
        preprocessing: dict, the contents of `preprocessing.json`.
        directory: the bundle's folder.
    """

    model: keras.Model
    text_preprocessor: object
    image_preprocessor: object
    label_vocabularies: dict
    metadata: dict
    preprocessing: dict
    directory: str

    @property
    def tasks(self):
        return dict(self.model.tasks)

    @property
    def sequence_length(self):
        return int(self.preprocessing["sequence_length"])

    @property
    def image_size(self):
        return tuple(self.preprocessing["image_size"])


def save_inference_bundle(
    directory,
    model,
    clip_tokenizer,
    image_converter,
    label_vocabularies,
    sequence_length,
    metadata=None,
):
    """Writes an inference bundle to `directory` (created if missing).

    Args:
        directory: string. The bundle folder, e.g. `WORKDIR/inference`.
        model: a `CMACLIP` model, with the weights to serve.
        clip_tokenizer: `keras_hub.models.CLIPTokenizer` used in training.
        image_converter: `keras_hub.layers.CLIPImageConverter` used in
            training.
        label_vocabularies: dict of task name to its class names (list of
            strings) in logit order; must cover exactly `model.tasks`.
        sequence_length: int. Packed text length used in training.
        metadata: optional JSON-serializable dict (config name, checkpoint,
            metrics, ...).

    Returns:
        `directory`.

    Example:
    ```python
    model, clip, config = create_cma_clip("tiny", {"color": 3, "pattern": 2})
    save_inference_bundle(
        "runs/demo/inference", model, clip.tokenizer, clip.image_converter,
        {"color": ["red", "green", "blue"], "pattern": ["plain", "striped"]},
        sequence_length=config["sequence_length"],
        metadata={"model_config": "tiny"},
    )
    bundle = load_inference_bundle("runs/demo/inference")
    ```
    """
    label_vocabularies = check_label_vocabularies(model.tasks, label_vocabularies)
    metadata = dict(metadata or {})
    try:
        json.dumps(metadata)
    except TypeError as error:
        raise ValueError(f"`metadata` must be JSON-serializable: {error}") from None
    os.makedirs(directory, exist_ok=True)

    model.save(os.path.join(directory, MODEL_FILE))
    # Same file formats as keras-hub's `BytePairTokenizer.save_assets`.
    with open(os.path.join(directory, VOCABULARY_FILE), "w", encoding="utf-8") as f:
        json.dump(dict(clip_tokenizer.vocabulary), f, ensure_ascii=False)
    with open(os.path.join(directory, MERGES_FILE), "w", encoding="utf-8") as f:
        for merge in clip_tokenizer.merges:
            f.write(f"{merge}\n")

    from cmaclip_tf.preprocessing.image_preprocessor import ImagePreprocessor

    converter_config = image_converter.get_config()
    # What the graph preprocessing derives from the converter (for readers).
    image_config = ImagePreprocessor.from_image_converter(image_converter).get_config()
    preprocessing = {
        "sequence_length": int(sequence_length),
        "pad_token_id": int(clip_tokenizer.pad_token_id),
        "image_size": [int(s) for s in converter_config["image_size"]],
        "mean": [float(v) for v in image_config["mean"]],
        "std": [float(v) for v in image_config["std"]],
        "scale": _as_json(converter_config.get("scale")),
        "offset": _as_json(converter_config.get("offset")),
        "interpolation": converter_config.get("interpolation"),
        "crop_to_aspect_ratio": converter_config.get("crop_to_aspect_ratio"),
        # Rebuilds the exact converter class and settings.
        "image_converter": keras.saving.serialize_keras_object(image_converter),
    }
    write_json(os.path.join(directory, PREPROCESSING_FILE), preprocessing)
    write_json(os.path.join(directory, LABELS_FILE), label_vocabularies)
    metadata["format_version"] = BUNDLE_FORMAT_VERSION
    metadata["tasks"] = dict(model.tasks)
    write_json(os.path.join(directory, METADATA_FILE), metadata)
    return directory


def load_inference_bundle(directory):
    """Reads a bundle written by `save_inference_bundle`.

    Returns:
        `InferenceBundle`.
    """
    # Registers `CMACLIP` (and the keras-hub classes) for deserialization.
    from cmaclip_tf.models import cma_clip  # noqa: F401
    from cmaclip_tf.preprocessing.image_preprocessor import ImagePreprocessor
    from cmaclip_tf.preprocessing.text_preprocessor import TextPreprocessor

    missing = [
        name
        for name in (
            MODEL_FILE,
            VOCABULARY_FILE,
            MERGES_FILE,
            PREPROCESSING_FILE,
            LABELS_FILE,
            METADATA_FILE,
        )
        if not os.path.isfile(os.path.join(directory, name))
    ]
    if missing:
        raise FileNotFoundError(
            f"{directory} is not a complete inference bundle (missing "
            f"{', '.join(missing)}); a training run writes one to "
            "WORKDIR/inference/ when it finishes."
        )
    metadata = _read_json(os.path.join(directory, METADATA_FILE))
    version = metadata.get("format_version")
    if version != BUNDLE_FORMAT_VERSION:
        raise ValueError(
            f"{directory} has bundle format {version}; this code reads format "
            f"{BUNDLE_FORMAT_VERSION}. Re-export it with this version."
        )
    preprocessing = _read_json(os.path.join(directory, PREPROCESSING_FILE))
    model = keras.saving.load_model(os.path.join(directory, MODEL_FILE))
    label_vocabularies = check_label_vocabularies(
        model.tasks, _read_json(os.path.join(directory, LABELS_FILE))
    )
    text_preprocessor = TextPreprocessor.from_files(
        os.path.join(directory, VOCABULARY_FILE),
        os.path.join(directory, MERGES_FILE),
        preprocessing["sequence_length"],
        pad_token_id=preprocessing["pad_token_id"],
    )
    image_converter = keras.saving.deserialize_keras_object(
        preprocessing["image_converter"]
    )
    image_preprocessor = ImagePreprocessor.from_image_converter(image_converter)
    return InferenceBundle(
        model=model,
        text_preprocessor=text_preprocessor,
        image_preprocessor=image_preprocessor,
        label_vocabularies=label_vocabularies,
        metadata=metadata,
        preprocessing=preprocessing,
        directory=directory,
    )


def check_label_vocabularies(tasks, label_vocabularies):
    """Validates class names against `tasks`; returns them in task order.

    Each task needs as many distinct, non-empty, single-line names as it has
    classes (the export stores them one per line).
    """
    label_vocabularies = {str(k): list(v) for k, v in dict(label_vocabularies).items()}
    if set(label_vocabularies) != set(tasks):
        raise ValueError(
            f"Label vocabularies cover tasks {sorted(label_vocabularies)}, but "
            f"the model has tasks {sorted(tasks)}; pass one list per task."
        )
    for task, num_classes in tasks.items():
        labels = label_vocabularies[task]
        if len(labels) != num_classes:
            raise ValueError(
                f"Task {task!r} has {num_classes} classes but {len(labels)} "
                "label names; pass them in logit order."
            )
        for label in labels:
            if (
                not isinstance(label, str)
                or not label
                or "\n" in label
                or "\r" in label
            ):
                raise ValueError(
                    f"Task {task!r} has label {label!r}; labels must be "
                    "non-empty strings without line breaks."
                )
        if len(set(labels)) != len(labels):
            raise ValueError(f"Task {task!r} has repeated label names: {labels}.")
    return {task: label_vocabularies[task] for task in tasks}


def _as_json(value):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    return float(value)


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
