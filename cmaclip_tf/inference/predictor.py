"""Per-task predictions for image-text pairs, from an export or a training run.

`Predictor.load(path)` takes

- an export version folder (`models/cmaclip/3`, holding `saved_model.pb`),
- a model folder of versions (`models/cmaclip`: the highest version that
  loads, as TF Serving's `latest` policy; skipped ones are named in one
  logged line), or a base path holding one such model (`models`),
- a training workdir (`runs/demo`, its `inference/` bundle) or the bundle
  folder itself.

With an export it calls the SavedModel's own `serving_default` signature, so
offline answers come from the very graph TF Serving runs; with a bundle it
builds that graph from the bundle (`cmaclip_tf.inference.export.CMACLIPExportModule`).

Every example is checked before it reaches the model (the image's header is
within the pixel limit and it decodes with the graph's own decoder, the text
is UTF-8 within the export's byte limit), so one bad example never takes its
batch down.
"""

import logging
import os
import tempfile

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  Registers the TF Text ops exports use.

from cmaclip_tf.datasets import bad_records
from cmaclip_tf.datasets.file_records import text_problem
from cmaclip_tf.inference.export import CONFIG_ASSET
from cmaclip_tf.inference.export import SERVING_DEFAULT
from cmaclip_tf.limits.image_headers import IMAGE_TOO_LARGE
from cmaclip_tf.inference.inference_bundle import MODEL_FILE
from cmaclip_tf.inference.model_versions import load_highest_version
from cmaclip_tf.inference.model_versions import skipped_versions_line
from cmaclip_tf.inference.model_versions import version_numbers
from cmaclip_tf.limits.serving_limits import MAX_IMAGE_PIXELS
from cmaclip_tf.limits.serving_limits import ServingLimits
from cmaclip_tf.preprocessing.image_validator import ImageValidator

logger = logging.getLogger("cmaclip_tf.inference.predictor")

TEXT_TOO_LONG = "text_too_long"
MODEL_ERROR = "model_error"
# Pixels of a dtype or PIL mode the model cannot take faithfully.
UNSUPPORTED_IMAGE = "unsupported_image"
BUNDLE_FOLDER = "inference"
ON_ERROR = ("raise", "return")


class Predictor:
    """Classifies image-text pairs into every task of a CMA-CLIP model.

    Build one with `Predictor.load`. Each prediction is a dict per task:
    `label` (string), `score` (top probability), `accepted` (the score
    reaches the task's 90%-precision threshold), `image_weight` (λ, the
    image's share in the fused embedding) and, on request, `probabilities`
    (`{label: probability}` in the model's label order).

    Args:
        serve: callable taking `image_bytes` and `text` (string tensors
            `[batch]`) as keywords and returning the export's outputs
            (`{task}_label`, `{task}_score`, ...).
        tasks: dict of task name to class count, in model order.
        labels: dict of task name to class names, in logit order.
        max_text_bytes: int. Longest text accepted, in UTF-8 bytes (0: no
            limit); an export refuses longer ones.
        source: string. Where the model came from, for messages.
        max_image_pixels: int. Most pixels of one image (read from an
            encoded image's header before decoding; GIF frames counted);
            larger ones are `image_too_large`. 0: no limit. Defaults to
            `MAX_IMAGE_PIXELS` (8192 * 8192).

    Example:

    ```python
    predictor = Predictor.load("models/cmaclip")
    predictor.predict(["dress.jpg"], ["Red striped cotton dress"])
    # [{"color": {"label": "red", "score": 0.93, "accepted": True,
    #             "image_weight": 0.61}, "pattern": {...}}]
    predictor.predict(png_bytes, "plain blue shirt", probabilities=True)
    # {"color": {..., "probabilities": {"red": 0.02, "blue": 0.95, ...}}, ...}
    ```
    """

    def __init__(self, serve, tasks, labels, max_text_bytes=ServingLimits.max_text_bytes,
                 source=None, max_image_pixels=MAX_IMAGE_PIXELS):
        self._serve = serve
        self.tasks = dict(tasks)
        self.labels = {task: list(labels[task]) for task in self.tasks}
        self.max_text_bytes = int(max_text_bytes or 0)
        self.source = source
        self.max_image_pixels = int(max_image_pixels or 0)
        self._validator = ImageValidator(self.max_image_pixels)

    # === Loading ===

    @classmethod
    def load(cls, path, max_image_pixels=MAX_IMAGE_PIXELS):
        """A predictor from an export, a model folder or a training workdir.

        A model folder gives its highest version that loads; versions
        skipped on the way are named in one warning line.

        Raises:
            FileNotFoundError: no model at `path`.
            cmaclip_tf.inference.model_versions.NoLoadableVersionError: (a
                `ValueError`) no version of a model folder loads; one line
                with each version's reason.
        """
        kind, resolved = _resolve_model_path(os.fspath(path))
        if kind == "versions":
            version, predictor, skipped = load_highest_version(
                resolved,
                lambda folder: cls.from_saved_model(folder, max_image_pixels),
            )
            if skipped:
                logger.warning(skipped_versions_line(resolved, version, skipped))
            return predictor
        if kind == "saved_model":
            return cls.from_saved_model(resolved, max_image_pixels)
        return cls.from_bundle(resolved, max_image_pixels)

    @classmethod
    def from_saved_model(cls, version_dir, max_image_pixels=MAX_IMAGE_PIXELS):
        """A predictor on an export version folder's `serving_default`."""
        config_path = os.path.join(version_dir, "assets", CONFIG_ASSET)
        if not os.path.isfile(config_path):
            raise ValueError(
                f"{version_dir} has no assets/{CONFIG_ASSET}; it is not a "
                "CMA-CLIP export (write one with python -m serving.export)."
            )
        config = _read_json(config_path)
        module = tf.saved_model.load(version_dir)
        signature = module.signatures[SERVING_DEFAULT]
        predictor = cls(
            signature,
            config["tasks"],
            config["labels"],
            max_text_bytes=config.get("max_text_bytes", ServingLimits.max_text_bytes),
            source=version_dir,
            max_image_pixels=max_image_pixels,
        )
        predictor._module = module  # Keeps the signature's variables alive.
        return predictor

    @classmethod
    def from_bundle(cls, bundle, max_image_pixels=MAX_IMAGE_PIXELS):
        """A predictor on an inference bundle (or its folder), via the export graph."""
        from cmaclip_tf.inference.export import CMACLIPExportModule
        from cmaclip_tf.inference.inference_bundle import InferenceBundle
        from cmaclip_tf.inference.inference_bundle import load_inference_bundle

        if not isinstance(bundle, InferenceBundle):
            bundle = load_inference_bundle(bundle)
        labels_dir = tempfile.TemporaryDirectory(prefix="cmaclip_labels_")
        module = CMACLIPExportModule.from_bundle(bundle, labels_dir=labels_dir.name)
        serve = tf.function(
            module.serve_image_bytes,
            input_signature=module.input_signatures()[SERVING_DEFAULT],
        )
        predictor = cls(
            serve,
            module.tasks,
            module.label_vocabularies,
            max_text_bytes=module.max_text_bytes,
            source=bundle.directory,
            max_image_pixels=max_image_pixels,
        )
        predictor._module = (module, labels_dir)
        return predictor

    def __repr__(self):
        return f"Predictor(source={self.source!r}, tasks={list(self.tasks)})"

    # === Predicting ===

    def predict(self, images, texts, probabilities=False, tasks=None,
                batch_size=64, on_error="raise"):
        """Predictions for image-text pairs, one dict per example.

        Args:
            images: one image or a list: file paths, encoded bytes (JPEG,
                PNG, GIF, BMP, WebP), PIL images (any mode `to_uint8_pixels`
                takes), or arrays `[height, width]`, `[height, width,
                1|3|4]` (uint8; uint16, int32, uint32, bool and float in
                [0, 1] are scaled to 8 bits).
            texts: one string or a list, one per image.
            probabilities: bool. Add each task's `{label: probability}`.
            tasks: optional list of task names to return (default all).
            batch_size: int. Examples per model call.
            on_error: `"raise"` (default: a `ValueError` naming the bad
                examples, before anything runs) or `"return"` (a bad
                example gets `{"error": "reason: detail"}`).

        Returns:
            A list of `{task: {"label", "score", "accepted", "image_weight"}}`
            (one per pair), or one dict when `texts` is a single string.
        """
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}; got {on_error!r}.")
        single = isinstance(texts, (str, bytes))
        if single:
            images, texts = [images], [texts]
        images, texts = list(images), list(texts)
        if len(images) != len(texts):
            raise ValueError(
                f"Got {len(images)} images and {len(texts)} texts; pass one text "
                "per image."
            )
        tasks = self.select_tasks(tasks)
        prepared = [self.prepare(image, text) for image, text in zip(images, texts)]
        bad = [(i, p[2]) for i, p in enumerate(prepared) if p[2] is not None]
        if bad and on_error == "raise":
            listed = "; ".join(
                f"example {i}: {problem.rstrip('.')}" for i, problem in bad[:5]
            )
            more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
            raise ValueError(
                f"{len(bad)} of {len(prepared)} examples cannot be predicted: "
                f"{listed}{more}. Fix them, or pass on_error='return' to get an "
                "error entry for each."
            )
        results = [{"error": problem} for _, _, problem in prepared]
        good = [i for i, (_, _, problem) in enumerate(prepared) if problem is None]
        for start in range(0, len(good), batch_size):
            chunk = good[start : start + batch_size]
            predictions = self.predict_encoded(
                [prepared[i][0] for i in chunk],
                [prepared[i][1] for i in chunk],
                probabilities=probabilities,
                tasks=tasks,
            )
            for i, prediction in zip(chunk, predictions):
                results[i] = prediction
        if on_error == "raise":
            failed = [(i, r["error"]) for i, r in enumerate(results) if "error" in r]
            if failed:
                raise ValueError(f"The model rejected example {failed[0][0]}: "
                                 f"{failed[0][1]}")
        return results[0] if single else results

    def predict_encoded(self, image_bytes, texts, probabilities=False, tasks=None):
        """Runs already checked examples (`prepare`) through the model.

        Args:
            image_bytes: list of encoded images (bytes).
            texts: list of UTF-8 texts (bytes or strings).
            probabilities: bool. Add each task's `{label: probability}`.
            tasks: optional list of task names (default all).

        Returns:
            One prediction dict per example, as `predict`. Should the model
            still refuse the batch, it is retried one example at a time, and
            only the refused ones get `{"error": ...}`.
        """
        tasks = self.select_tasks(tasks)
        if not image_bytes:
            return []
        try:
            outputs = self.run(image_bytes, texts)
        except tf.errors.InvalidArgumentError:
            if len(image_bytes) == 1:
                raise
            results = []
            for image, text in zip(image_bytes, texts):
                try:
                    results += self.predict_encoded([image], [text], probabilities, tasks)
                except tf.errors.InvalidArgumentError as error:
                    results.append({"error": f"{MODEL_ERROR}: {_first_line(error)}"})
            return results
        return self.rows(outputs, probabilities, tasks)

    def run(self, image_bytes, texts):
        """The `serving_default` outputs (numpy) for one batch, unchecked."""
        outputs = self._serve(
            image_bytes=tf.constant(list(image_bytes), tf.string),
            text=tf.constant(
                [t.encode("utf-8") if isinstance(t, str) else t for t in texts],
                tf.string,
            ),
        )
        return {key: value.numpy() for key, value in outputs.items()}

    def rows(self, outputs, probabilities=False, tasks=None):
        """Signature outputs to one `{task: {...}}` dict per example."""
        tasks = self.select_tasks(tasks)
        count = len(outputs[f"{tasks[0]}_label"]) if tasks else 0
        results = [{} for _ in range(count)]
        for task in tasks:
            labels = outputs[f"{task}_label"]
            scores = outputs[f"{task}_score"]
            accepted = outputs[f"{task}_accepted"]
            weights = outputs[f"{task}_image_weight"]
            for i, result in enumerate(results):
                prediction = {
                    "label": labels[i].decode("utf-8"),
                    "score": float(scores[i]),
                    "accepted": bool(accepted[i]),
                    "image_weight": float(weights[i]),
                }
                if probabilities:
                    prediction["probabilities"] = dict(
                        zip(self.labels[task],
                            outputs[f"{task}_probabilities"][i].tolist())
                    )
                result[task] = prediction
        return results

    # === Checking inputs ===

    def select_tasks(self, tasks):
        """`tasks` (default: all of the model's) as a list; unknown ones raise."""
        if tasks is None:
            return list(self.tasks)
        tasks = [tasks] if isinstance(tasks, str) else list(tasks)
        unknown = [task for task in tasks if task not in self.tasks]
        if unknown or not tasks:
            raise ValueError(
                f"Unknown task(s) {unknown}; pass one or more of the model's "
                f"tasks {list(self.tasks)}."
            )
        return tasks

    def prepare(self, image, text):
        """One example as the model takes it, checked.

        Returns:
            `(image_bytes, text_bytes, problem)`: `problem` is `None` for a
            good example, else `"reason: detail"` (reasons: `missing_image`,
            `corrupt_image`, `image_too_large`, `unsupported_image`,
            `undecodable_text`, `text_too_long`).
        """
        text_bytes, problem = self.check_text(text)
        if problem is not None:
            return None, None, problem
        image_bytes, problem = self.read_image(image)
        return image_bytes, text_bytes, problem

    def check_text(self, text):
        """`(utf-8 bytes, None)`, or `(None, problem)` for a text the model refuses."""
        if isinstance(text, (bytes, bytearray, memoryview)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as error:
                return None, (f"{bad_records.UNDECODABLE_TEXT}: not valid UTF-8 "
                              f"at byte {error.start}")
        if not isinstance(text, str):
            return None, (f"{bad_records.UNDECODABLE_TEXT}: expected a string, got "
                          f"{type(text).__name__}")
        problem = text_problem(text)
        if problem is not None:
            return None, f"{bad_records.UNDECODABLE_TEXT}: {problem}"
        encoded = text.encode("utf-8")
        if self.max_text_bytes and len(encoded) > self.max_text_bytes:
            return None, (
                f"{TEXT_TOO_LONG}: {len(encoded)} bytes; the model takes at most "
                f"{self.max_text_bytes} (it reads only its first tokens, so "
                "shorten it)"
            )
        return encoded, None

    def read_image(self, image):
        """`(encoded bytes, None)` for a good image, else `(None, problem)`.

        Paths are read; PIL images and arrays are converted to 8-bit
        (`to_uint8_pixels`) and encoded as PNG (lossless, so the model sees
        exactly these pixels); every image's size is then held to
        `max_image_pixels` and it is decoded once with the graph's own
        decoder.
        """
        if isinstance(image, (str, os.PathLike)):
            path = os.fspath(image)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as error:
                return None, (f"{bad_records.MISSING_IMAGE}: {path}: "
                              f"{error.strerror or error}")
            where = f"{path}: "
        elif isinstance(image, (bytes, bytearray, memoryview)):
            data, where = bytes(image), ""
        else:
            try:
                pixels = to_uint8_pixels(image, self.max_image_pixels)
            except ImageTooLargeError as error:
                return None, f"{IMAGE_TOO_LARGE}: {error}"
            except (TypeError, ValueError) as error:
                return None, f"{UNSUPPORTED_IMAGE}: {error}"
            data, where = tf.io.encode_png(pixels).numpy(), ""
        problem = self._validator.check(data)
        if problem is not None:
            reason, detail = problem
            return None, f"{reason}: {where}{detail}"
        return data, None


class ImageTooLargeError(ValueError):
    """An in-memory image over the pixel limit."""


# PIL modes PIL itself converts to RGB (or RGBA, alpha then dropped by the
# model, as for PNG files): palette, grey with alpha, CMYK, YCbCr, ...
_PIL_CONVERTED_MODES = ("1", "P", "PA", "LA", "La", "RGBa", "RGBX", "CMYK",
                        "YCbCr", "LAB", "HSV")


def to_uint8_pixels(image, max_pixels=MAX_IMAGE_PIXELS):
    """A PIL image or an array as uint8 `[height, width, 1|3|4]`, faithfully.

    16- and 32-bit integer pixels are scaled to 8 bits, never clipped:
    uint16 (PIL `I;16`) keeps its high byte, as TF's and PIL's PNG decoders
    do for 16-bit files; int32 (PIL `I`) is read as 16-bit when its values
    fit (Pillow opens 16-bit files so), else as 31-bit; uint32 keeps its
    high byte. Bool is 0 or 255; float (PIL `F`) must lie in [0, 1] and is
    scaled by 255. Palette, LA, CMYK and the other PIL modes go through
    PIL's `convert("RGB")` (`"RGBA"` where they carry alpha).

    Args:
        image: a PIL image, or an array `[height, width]` or `[height,
            width, 1|3|4]`.
        max_pixels: int. Larger images raise `ImageTooLargeError` (before
            any conversion); 0: no limit.

    Raises:
        TypeError: not an image or an array.
        ValueError: a mode or dtype that has no faithful 8-bit reading
            (the message names it), or a wrong shape.

    Example:
    ```python
    to_uint8_pixels(np.full((4, 4), 257 * 100, np.uint16))[0, 0]  # [100]
    ```
    """
    try:
        from PIL import Image
    except ImportError:  # Pillow is a dependency; arrays still work without.
        Image = None
    mode = None
    if Image is not None and isinstance(image, Image.Image):
        mode = image.mode
        _check_pixel_count(image.width * image.height, max_pixels)
        if mode in _PIL_CONVERTED_MODES:
            try:
                image = image.convert("RGBA" if "A" in mode else "RGB")
            except ValueError as error:
                raise ValueError(
                    f"PIL mode {mode!r} cannot be converted to RGB ({error}); "
                    "convert the image to RGB first."
                ) from None
        elif mode not in ("L", "RGB", "RGBA", "I", "F") and not mode.startswith("I;16"):
            raise ValueError(
                f"Unsupported PIL mode {mode!r}; convert the image to RGB, L "
                "or RGBA first."
            )
        image = np.asarray(image)
    if not hasattr(image, "__array__"):
        raise TypeError(
            f"Unsupported image type {type(image).__name__}; pass a file path, "
            "encoded bytes, a PIL image or an array of pixels."
        )
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 3, 4) or 0 in pixels.shape:
        raise ValueError(
            f"Expected pixels of shape [height, width] or [height, width, 1|3|4]; "
            f"got {list(pixels.shape)}."
        )
    _check_pixel_count(pixels.shape[0] * pixels.shape[1], max_pixels)
    return _to_uint8(pixels, f"PIL mode {mode!r}" if mode else f"{pixels.dtype} pixels")


def _check_pixel_count(pixels, max_pixels):
    if max_pixels and pixels > max_pixels:
        raise ImageTooLargeError(
            f"an image of {pixels:,} pixels is over the limit of "
            f"{max_pixels:,} pixels (max_image_pixels)"
        )


def _to_uint8(pixels, what):
    """Pixels of any supported dtype scaled to uint8; `what` names them."""
    kind, bits = pixels.dtype.kind, pixels.dtype.itemsize * 8
    if pixels.dtype == np.uint8:
        return pixels
    if kind == "b":
        return pixels.astype(np.uint8) * np.uint8(255)
    if kind == "u" and bits in (16, 32):
        return (pixels >> (bits - 8)).astype(np.uint8)
    if kind == "i" and bits == 32:
        low, high = int(pixels.min()), int(pixels.max())
        if low < 0:
            raise ValueError(
                f"{what} hold negative values (down to {low}); pass pixels "
                "scaled to 0-255 (uint8) or 0-65535 (uint16)."
            )
        shift = 8 if high <= 0xFFFF else 23
        return (pixels >> shift).astype(np.uint8)
    if kind == "f":
        low, high = float(np.nanmin(pixels)), float(np.nanmax(pixels))
        if np.isnan(pixels).any() or low < 0.0 or high > 1.0:
            raise ValueError(
                f"{what} must lie in [0, 1] (got {low:g} to {high:g}); scale "
                "them, or cast 0-255 values to uint8."
            )
        return np.round(pixels * 255.0).astype(np.uint8)
    raise ValueError(
        f"Unsupported {what}; pass uint8 (0-255), uint16 (0-65535), int32, "
        "uint32, bool, or float in [0, 1]."
    )


def _resolve_model_path(path):
    """`("saved_model", version folder)`, `("versions", model folder)` or
    `("bundle", bundle folder)`."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return "saved_model", path
    if version_numbers(path):
        return "versions", path
    for folder in (path, os.path.join(path, BUNDLE_FOLDER)):
        if os.path.isfile(os.path.join(folder, MODEL_FILE)):
            return "bundle", folder
    if os.path.isdir(path):
        models = sorted(
            name for name in os.listdir(path)
            if version_numbers(os.path.join(path, name))
        )
        if len(models) == 1:
            return _resolve_model_path(os.path.join(path, models[0]))
        if models:
            raise ValueError(
                f"{path} holds several models ({', '.join(models)}); pass "
                f"one of them, e.g. {os.path.join(path, models[0])}."
            )
    raise FileNotFoundError(
        f"No model found at {path}: pass an export version folder (holding "
        "saved_model.pb), a model folder of versions (models/cmaclip), or a "
        "training workdir (holding inference/)."
    )


def _first_line(error):
    # TF's runtime messages end with graph context ("[[{{node ...}}]]").
    lines = [line.strip() for line in error.message.splitlines() if line.strip()]
    lines = [
        line for line in lines
        if not line.startswith(("Graph execution error", "Detected at node",
                                "[[", "<stack traces"))
    ]
    return (lines[0] if lines else error.message).split(" [Op:")[0]


def _read_json(path):
    import json

    with open(path, encoding="utf-8") as f:
        return json.load(f)
