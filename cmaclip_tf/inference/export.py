"""Exports a CMA-CLIP inference bundle as a SavedModel for TF Serving.

Following TF Model Garden's `export_base`, the export is one module with a
serve function per input type:

- `serving_default`: `image_bytes` (string `[batch]`, encoded JPEG/PNG/GIF)
  and `text` (string `[batch]`). Decoding, resizing, normalization and
  tokenization run in the graph, with the training pipeline's own
  `cmaclip_tf.preprocessing` modules.
- `predict_tensors`: `images` (float32 `[batch, H, W, 3]`, CLIP-normalized),
  `token_ids` (int32 `[batch, L]`) and `padding_mask` (bool `[batch, L]`),
  for clients that preprocess themselves.

Both return, per task, `{task}_probabilities` (float32 `[batch, classes]`),
`{task}_label` (string `[batch]`), `{task}_score` (float32 `[batch]`, the
top probability), `{task}_accepted` (bool `[batch]`: the score reaches the
threshold picked on validation for 90% precision) and `{task}_image_weight`
(float32 `[batch]`, λ).

The graph holds only core TensorFlow and TensorFlow Text ops, which stock
`tensorflow_model_server` links. The label vocabularies (one
`labels_{task}.txt` per task, read by the label lookup tables),
`labels.json` and `cmaclip_config.json` (model config, preprocessing, run
metadata) travel in the SavedModel's `assets/`. `assets.extra/
tf_serving_warmup_requests` holds `PredictionLog`s that TF Serving replays
when it loads the version.

Versions land in `MODEL_BASE_PATH/MODEL_NAME/<version>/`, the layout TF
Serving watches; each is written to a hidden staging folder first and
renamed into place, so a server never sees half an export.
"""

import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from cmaclip_tf.inference.inference_bundle import InferenceBundle
from cmaclip_tf.inference.inference_bundle import load_inference_bundle
from cmaclip_tf.limits.serving_limits import ServingLimits
from cmaclip_tf.models.dtype_policy import SERVING_DTYPE_POLICY
from cmaclip_tf.models.dtype_policy import with_dtype_policy
from cmaclip_tf.runtime.atomic_files import write_json

SERVING_DEFAULT = "serving_default"
PREDICT_TENSORS = "predict_tensors"
CONFIG_ASSET = "cmaclip_config.json"
LABELS_ASSET = "labels.json"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
WARMUP_BATCH_SIZES = (1, 8)


class CMACLIPExportModule:
    """The serving graph of a CMA-CLIP model: preprocessing, model, labels.

    Args:
        model: a `CMACLIP` model.
        text_preprocessor: `cmaclip_tf.preprocessing.TextPreprocessor`.
        image_preprocessor: `cmaclip_tf.preprocessing.ImagePreprocessor`.
        label_vocabularies: dict of task to class names, in logit order.
        image_size: `(height, width)` of the model's images.
        sequence_length: int. Packed text length.
        labels_dir: folder in which to write one `labels_{task}.txt` per
            task; the label lookup tables read them, and the SavedModel
            copies them into its assets.
        max_text_bytes: int. Longest text `serving_default` accepts, in
            UTF-8 bytes (0: no limit); longer ones are `InvalidArgumentError`.
            Defaults to `ServingLimits.max_text_bytes`, the server's cap.
        score_thresholds: dict of task to the top-1 score from which a
            prediction is accepted (`{task}_accepted`), picked on validation
            for 90% precision; `None` accepts nothing; a task missing from
            the dict accepts everything.

    Example:
    ```python
    bundle = load_inference_bundle("runs/demo/inference")
    module = CMACLIPExportModule.from_bundle(bundle, labels_dir="/tmp/labels")
    outputs = module.serve_image_bytes(tf.constant([jpeg]), tf.constant(["red dress"]))
    outputs["color_label"], outputs["color_image_weight"]
    ```
    """

    def __init__(
        self,
        model,
        text_preprocessor,
        image_preprocessor,
        label_vocabularies,
        image_size,
        sequence_length,
        labels_dir,
        max_text_bytes=ServingLimits.max_text_bytes,
        score_thresholds=None,
    ):
        self.model = model
        self.text_preprocessor = text_preprocessor
        self.image_preprocessor = image_preprocessor
        self.tasks = dict(model.tasks)
        self.label_vocabularies = {t: list(label_vocabularies[t]) for t in self.tasks}
        self.image_size = tuple(int(s) for s in image_size)
        self.sequence_length = int(sequence_length)
        self.max_text_bytes = int(max_text_bytes)
        score_thresholds = score_thresholds or {}
        self.score_thresholds = {
            task: _acceptance_threshold(score_thresholds, task)
            for task in self.tasks
        }
        self.label_tables = {}
        for task, labels in self.label_vocabularies.items():
            path = os.path.join(labels_dir, f"labels_{task}.txt")
            with open(path, "w", encoding="utf-8") as f:
                f.write("".join(f"{label}\n" for label in labels))
            self.label_tables[task] = tf.lookup.StaticHashTable(
                tf.lookup.TextFileInitializer(
                    path,
                    key_dtype=tf.int64,
                    key_index=tf.lookup.TextFileIndex.LINE_NUMBER,
                    value_dtype=tf.string,
                    value_index=tf.lookup.TextFileIndex.WHOLE_LINE,
                ),
                default_value="",
            )

    @classmethod
    def from_bundle(cls, bundle, labels_dir, dtype_policy=SERVING_DTYPE_POLICY,
                    **kwargs):
        """The module of an `InferenceBundle`.

        `dtype_policy`: the Keras dtype policy the graph computes in; float32
        by default, also for a model trained in mixed precision (CPUs have no
        fast bfloat16 or float16); `None` keeps the trained model's.
        """
        model = bundle.model
        if dtype_policy is not None:
            model = with_dtype_policy(model, dtype_policy)
        return cls(
            model,
            bundle.text_preprocessor,
            bundle.image_preprocessor,
            bundle.label_vocabularies,
            image_size=bundle.image_size,
            sequence_length=bundle.sequence_length,
            labels_dir=labels_dir,
            score_thresholds=bundle.metadata.get("score_thresholds"),
            **kwargs,
        )

    # === Serve functions, one per input type ===

    def serve_image_bytes(self, image_bytes, text):
        """Encoded images and raw text to per-task outputs."""
        checks = [
            tf.debugging.assert_positive(
                tf.size(text), message="empty batch: send at least one image and text"
            ),
            tf.debugging.assert_equal(
                tf.size(image_bytes),
                tf.size(text),
                message="image_bytes and text must have the same batch size",
            ),
        ]
        if self.max_text_bytes:
            checks.append(
                tf.debugging.assert_less_equal(
                    tf.strings.length(text),
                    self.max_text_bytes,
                    message=(
                        f"text is longer than {self.max_text_bytes} bytes; "
                        "shorten it (the model reads only its first tokens)"
                    ),
                )
            )
        with tf.control_dependencies(checks):
            image_bytes = tf.identity(image_bytes)
            text = tf.identity(text)
        images = self.image_preprocessor(image_bytes)
        tokens = self.text_preprocessor(text)
        return self.serve_tensors(images, tokens["token_ids"], tokens["padding_mask"])

    def serve_tensors(self, images, token_ids, padding_mask):
        """Preprocessed tensors to per-task outputs."""
        outputs = self.model(
            {"images": images, "token_ids": token_ids, "padding_mask": padding_mask},
            training=False,
        )
        result = {}
        for task in self.tasks:
            logits = tf.cast(outputs[f"{task}_logits"], tf.float32)
            probabilities = tf.nn.softmax(logits, axis=-1)
            result[f"{task}_probabilities"] = probabilities
            result[f"{task}_label"] = self.label_tables[task].lookup(
                tf.argmax(probabilities, axis=-1)
            )
            score = tf.reduce_max(probabilities, axis=-1)
            result[f"{task}_score"] = score
            result[f"{task}_accepted"] = score >= self.score_thresholds[task]
            result[f"{task}_image_weight"] = tf.cast(
                outputs[f"{task}_image_weight"], tf.float32
            )
        return result

    # === Signatures ===

    def input_signatures(self):
        height, width = self.image_size
        length = self.sequence_length
        return {
            SERVING_DEFAULT: [
                tf.TensorSpec([None], tf.string, name="image_bytes"),
                tf.TensorSpec([None], tf.string, name="text"),
            ],
            PREDICT_TENSORS: [
                tf.TensorSpec([None, height, width, 3], tf.float32, name="images"),
                tf.TensorSpec([None, length], tf.int32, name="token_ids"),
                tf.TensorSpec([None, length], tf.bool, name="padding_mask"),
            ],
        }

    def export_archive(self, asset_paths=()):
        """A `keras.export.ExportArchive` with both signatures.

        Args:
            asset_paths: extra files to copy into the SavedModel's `assets/`.
        """
        archive = keras.export.ExportArchive()
        archive.track(self.model)
        # `tf.Module`s and layers whose lookup tables the graph uses: plain
        # `model.export` would miss these resources.
        for resource in (
            self.text_preprocessor,
            self.image_preprocessor,
            *self.label_tables.values(),
        ):
            if isinstance(
                resource, (keras.layers.Layer, tf.__internal__.tracking.Trackable)
            ):
                archive.track(resource)
        signatures = self.input_signatures()
        archive.add_endpoint(
            SERVING_DEFAULT, self.serve_image_bytes, signatures[SERVING_DEFAULT]
        )
        archive.add_endpoint(
            PREDICT_TENSORS, self.serve_tensors, signatures[PREDICT_TENSORS]
        )
        # Files no table reads still belong in assets/; a tracked `Asset` on
        # the archive's root object puts them there.
        archive._tf_trackable.cmaclip_assets = [
            tf.saved_model.Asset(path) for path in asset_paths
        ]
        return archive


def _acceptance_threshold(score_thresholds, task):
    if task not in score_thresholds:
        return 0.0  # No threshold picked: accept every prediction.
    if score_thresholds[task] is None:
        return 2.0  # None reached the precision; probabilities never exceed 1.
    return float(score_thresholds[task])


# === Writing versions ===


def next_version(model_dir):
    """One above the highest integer version folder in `model_dir` (or 1)."""
    if not os.path.isdir(model_dir):
        return 1
    versions = [int(name) for name in os.listdir(model_dir) if name.isdigit()]
    return max(versions, default=0) + 1


def export_saved_model(
    bundle,
    model_base_path,
    model_name,
    version=None,
    max_text_bytes=ServingLimits.max_text_bytes,
    verbose=False,
    dtype_policy=SERVING_DTYPE_POLICY,
):
    """Writes `model_base_path/model_name/<version>/`; returns its path.

    Args:
        bundle: an `InferenceBundle` or the folder of one (e.g.
            `WORKDIR/inference`).
        model_base_path: string. TF Serving's base path for models.
        model_name: string. The served model's name.
        version: optional int. Defaults to one above the highest present.
        max_text_bytes: int. Longest text accepted (0: no limit).
        verbose: bool. Print the endpoints, as `ExportArchive` does.
        dtype_policy: Keras dtype policy the export computes in (default
            float32, whatever the training run used; `None`: the model's own,
            e.g. `mixed_bfloat16` for a GPU or TPU server).
    """
    if not isinstance(bundle, InferenceBundle):
        bundle = load_inference_bundle(bundle)
    if not model_name or os.sep in model_name or model_name.startswith("."):
        raise ValueError(f"Invalid model name {model_name!r}; use a plain folder name.")
    model_dir = os.path.join(model_base_path, model_name)
    os.makedirs(model_dir, exist_ok=True)
    version = next_version(model_dir) if version is None else int(version)
    if version < 1:
        raise ValueError(f"Versions are positive integers; got {version}.")
    final_dir = os.path.join(model_dir, str(version))
    if os.path.exists(final_dir):
        raise FileExistsError(
            f"{final_dir} already exists; pass another --version or omit it "
            "to write the next one."
        )
    # TF Serving ignores folders whose names are not integers.
    staging = tempfile.mkdtemp(prefix=".export-", dir=model_dir)
    try:
        assets_dir = os.path.join(staging, "assets-src")
        os.makedirs(assets_dir)
        module = CMACLIPExportModule.from_bundle(
            bundle, labels_dir=assets_dir, max_text_bytes=max_text_bytes,
            dtype_policy=dtype_policy,
        )
        config_path = os.path.join(assets_dir, CONFIG_ASSET)
        write_json(config_path, export_config(bundle, module, model_name, version))
        labels_path = os.path.join(assets_dir, LABELS_ASSET)
        write_json(labels_path, module.label_vocabularies)

        saved_model_dir = os.path.join(staging, "saved_model")
        archive = module.export_archive(asset_paths=[config_path, labels_path])
        archive.write_out(saved_model_dir, verbose=verbose)
        write_warmup_requests(
            os.path.join(saved_model_dir, WARMUP_FILE), model_name, module
        )
        os.rename(saved_model_dir, final_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final_dir


def export_config(bundle, module, model_name, version):
    """The `cmaclip_config.json` asset: what the export holds and how to call it."""
    signatures = {
        name: {
            spec.name: {"dtype": spec.dtype.name, "shape": spec.shape.as_list()}
            for spec in specs
        }
        for name, specs in module.input_signatures().items()
    }
    return {
        "model_name": model_name,
        "version": version,
        "tasks": module.tasks,
        "labels": module.label_vocabularies,
        "outputs_per_task": ["probabilities", "label", "score", "image_weight"],
        "signatures": signatures,
        "max_text_bytes": module.max_text_bytes,
        "preprocessing": {
            k: v for k, v in bundle.preprocessing.items() if k != "image_converter"
        },
        "image_converter": bundle.preprocessing.get("image_converter"),
        "model_config": keras.saving.serialize_keras_object(module.model),
        "dtype_policy": module.model.dtype_policy.name,
        "metadata": bundle.metadata,
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }


def warmup_examples(batch_size, image_size):
    """Deterministic JPEG/PNG bytes and texts for warm-up requests."""
    height, width = image_size
    gradient = np.linspace(0, 255, height * width * 3).reshape(height, width, 3)
    image = tf.constant(gradient.astype("uint8"))
    encoded = [tf.io.encode_jpeg(image).numpy(), tf.io.encode_png(image).numpy()]
    images = [encoded[i % 2] for i in range(batch_size)]
    texts = [f"warm-up request {i}".encode() for i in range(batch_size)]
    return images, texts


def write_warmup_requests(path, model_name, module):
    """Writes TF Serving's warm-up file: `PredictionLog` records, one per request."""
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_log_pb2

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for batch_size in WARMUP_BATCH_SIZES:
            images, texts = warmup_examples(batch_size, module.image_size)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = SERVING_DEFAULT
            request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(images))
            request.inputs["text"].CopyFrom(tf.make_tensor_proto(texts))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path
