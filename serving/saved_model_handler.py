"""A Beam `ModelHandler` over a CMA-CLIP export: `RunInference` on the SavedModel.

`CMACLIPModelHandler` loads the export version folder (the very artifact TF
Serving loads) once per worker process, with `cmaclip_tf.Predictor`, and
calls its `serving_default` signature (encoded image bytes and text) on each
batch that `RunInference` forms. Beam's own TensorFlow handler is not used:
it needs Beam's `[tensorflow]` extra (a second TensorFlow), tensorflow-hub
and tf-keras.

An export on a filesystem Beam knows but TensorFlow may not (`s3://`, ...)
is copied to the worker's local disk first.
"""

import os
import shutil
import tempfile

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler
from apache_beam.ml.inference.base import PredictionResult

from cmaclip_tf.inference.export import CONFIG_ASSET
from cmaclip_tf.inference.model_versions import load_highest_version
from cmaclip_tf.inference.predictor import _resolve_model_path

METRICS_NAMESPACE = "cmaclip"


class CMACLIPModelHandler(ModelHandler):
    """Runs `(image bytes, text bytes)` examples through an export's `serving_default`.

    Each example's inference is the prediction dict `Predictor.predict_encoded`
    returns: per task `label`, `score`, `accepted`, `image_weight` (and
    `probabilities` on request), or `{"error": "model_error: ..."}` for an
    example the model refused (its batch is retried one example at a time, so
    only that one fails).

    Args:
        version_dir: string. An export version folder (`models/cmaclip/3`),
            local or on any Beam filesystem; `resolve_export` finds it from a
            model folder of versions.
        tasks: optional list of task names (default: all of the model's).
        probabilities: bool. Add each task's `{label: probability}`.
        min_batch_size, max_batch_size: int. Bounds of the batches
            `RunInference` forms (Beam's `BatchElements`).

    Example:

    ```python
    handler = KeyedModelHandler(CMACLIPModelHandler("models/cmaclip/1"))
    rows | RunInference(handler)  # (key, (image, text)) -> (key, PredictionResult)
    ```
    """

    def __init__(self, version_dir, tasks=None, probabilities=False,
                 min_batch_size=1, max_batch_size=64):
        super().__init__(min_batch_size=int(min_batch_size),
                         max_batch_size=int(max_batch_size))
        self.version_dir = version_dir
        self.tasks = list(tasks) if tasks else None
        self.probabilities = bool(probabilities)

    def load_model(self):
        """The export as a `Predictor`, warmed up: once per worker process."""
        import io

        from PIL import Image

        from cmaclip_tf.inference.predictor import Predictor

        predictor = Predictor.from_saved_model(local_copy(self.version_dir))
        # The graph's first call pays its one-time set-up (as TF Serving's
        # warm-up requests do): counted as loading, not as the first batch.
        png = io.BytesIO()
        Image.new("RGB", (8, 8)).save(png, format="PNG")
        predictor.predict_encoded([png.getvalue()], [b"warm-up"])
        return predictor

    def run_inference(self, batch, model, inference_args=None):
        predictions = model.predict_encoded(
            [image for image, _ in batch],
            [text for _, text in batch],
            probabilities=self.probabilities,
            tasks=self.tasks,
        )
        return [
            PredictionResult(example, prediction, model_id=self.version_dir)
            for example, prediction in zip(batch, predictions)
        ]

    def get_num_bytes(self, batch):
        return sum(len(image) + len(text) for image, text in batch)

    def get_metrics_namespace(self):
        return METRICS_NAMESPACE


# === Finding and fetching the export ===


def is_remote(path):
    return FileSystems.get_scheme(path) not in (None, "file")


def resolve_export(path):
    """The export version folder `path` names: itself, or its highest version.

    Local paths go through `Predictor.load`'s own rule (a version folder, a
    model folder of versions, a base path holding one model); remote ones
    must be a version folder or a model folder of versions.
    """
    if not is_remote(path):
        kind, resolved = _resolve_model_path(os.fspath(path))
        if kind == "versions":
            # The highest complete version; each worker then loads it.
            _, resolved, _ = load_highest_version(resolved, lambda p: p)
        elif kind != "saved_model":
            raise ValueError(
                f"{path} is a training workdir, not an export; export it with "
                "python -m serving.export and pass the export's model folder."
            )
        return os.path.abspath(resolved)
    path = path.rstrip("/")
    if FileSystems.exists(FileSystems.join(path, "saved_model.pb")):
        return path
    pattern = FileSystems.join(path, "*", "saved_model.pb")
    versions = []
    for metadata in FileSystems.match([pattern])[0].metadata_list:
        name = metadata.path[len(path):].strip("/").split("/")[0]
        if name.isdigit():
            versions.append(int(name))
    if not versions:
        raise FileNotFoundError(
            f"No export found at {path}: pass an export version folder (holding "
            "saved_model.pb) or a model folder of versions."
        )
    return FileSystems.join(path, str(max(versions)))


def read_export_config(version_dir):
    """The export's `assets/cmaclip_config.json` (tasks, labels, text limit)."""
    import json

    path = FileSystems.join(version_dir, "assets", CONFIG_ASSET)
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, IOError) as error:
        raise ValueError(
            f"{version_dir} has no readable assets/{CONFIG_ASSET} ({error}); it is "
            "not a CMA-CLIP export (write one with python -m serving.export)."
        ) from None


def local_copy(version_dir):
    """`version_dir` itself if local, else a copy of it in a local temp folder."""
    if not is_remote(version_dir):
        return version_dir
    target = tempfile.mkdtemp(prefix="cmaclip_export_")
    prefix = version_dir.rstrip("/") + "/"
    for metadata in FileSystems.match([prefix + "**"])[0].metadata_list:
        relative = metadata.path[len(prefix):]
        destination = os.path.join(target, *relative.split("/"))
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        # UNCOMPRESSED: a `.gz` asset is copied as it is, not inflated.
        with FileSystems.open(
            metadata.path, compression_type=CompressionTypes.UNCOMPRESSED
        ) as source, open(destination, "wb") as copy:
            shutil.copyfileobj(source, copy)
    return target
