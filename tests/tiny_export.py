"""A tiny CMA-CLIP inference bundle and its SavedModel export, for tests.

Stands in for a training run: an untrained `create_cma_clip("tiny", ...)`
model saved with `save_inference_bundle`, as the trainer does at the end of
training, then exported with `export_saved_model`. Built once per test
process and shared by `test_export.py` and `test_serving.py`.
"""

import dataclasses
import io
import os

import numpy as np

TASKS = {"color": 3, "pattern": 2}
LABELS = {"color": ["red", "green", "blue"], "pattern": ["plain", "striped"]}
MODEL_NAME = "tiny_cmaclip"
TEXTS = ["Red striped cotton dress", "plain blue denim jacket, size 42"]
# As the trainer picks them on validation; None: no threshold reached 90%.
SCORE_THRESHOLDS = {"color": 0.34, "pattern": None}

_cache = {}


@dataclasses.dataclass
class TinyExport:
    """A tiny model, its training-time preprocessing and its export."""

    model: object
    text_preprocessor: object
    image_preprocessor: object
    bundle_dir: str
    model_base_path: str
    model_name: str
    version_dir: str
    images: dict  # format name -> encoded bytes
    image_files: dict  # format name -> path

    def reference_outputs(self, image_bytes, texts):
        """The in-memory model's per-task outputs on raw inputs."""
        import tensorflow as tf

        images = self.image_preprocessor(tf.constant(image_bytes))
        tokens = self.text_preprocessor(tf.constant(texts))
        outputs = self.model({"images": images, **tokens}, training=False)
        result = {}
        for task in TASKS:
            probabilities = tf.nn.softmax(outputs[f"{task}_logits"], axis=-1).numpy()
            result[f"{task}_probabilities"] = probabilities
            result[f"{task}_label"] = np.array(
                [LABELS[task][i] for i in probabilities.argmax(-1)]
            )
            result[f"{task}_image_weight"] = outputs[f"{task}_image_weight"].numpy()
        return result


def make_tiny_inference_bundle(directory, seed=0):
    """Saves an untrained tiny model as the trainer would; returns the parts.

    Returns:
        `(model, text_preprocessor, image_preprocessor)`: the in-memory model
        and the training pipeline's preprocessors built from the same CLIP
        tokenizer and image converter.
    """
    import keras

    from cmaclip_tf.inference.inference_bundle import save_inference_bundle
    from cmaclip_tf.models import create_cma_clip
    from cmaclip_tf.preprocessing.image_preprocessor import ImagePreprocessor
    from cmaclip_tf.preprocessing.text_preprocessor import TextPreprocessor

    keras.utils.set_random_seed(seed)
    model, clip, config = create_cma_clip("tiny", TASKS)
    # Untrained heads give near-uniform λ; spread them so λ is checked too.
    rng = np.random.default_rng(seed)
    for layer in model.modality_attentions:
        for weight in layer.weights:
            weight.assign(rng.normal(0, 0.5, weight.shape))
    save_inference_bundle(
        directory,
        model,
        clip.tokenizer,
        clip.image_converter,
        LABELS,
        sequence_length=config["sequence_length"],
        metadata={"model": config["name"], "stage": "test", "seed": seed,
                  "score_thresholds": SCORE_THRESHOLDS},
    )
    return (
        model,
        TextPreprocessor.from_tokenizer(clip.tokenizer, config["sequence_length"]),
        ImagePreprocessor.from_image_converter(clip.image_converter),
    )


def sample_images():
    """Real encoded images: an RGB JPEG, an RGBA PNG (not square), a GIF."""
    from PIL import Image
    from PIL import ImageDraw

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:128]
    pixels = np.stack([x * 2, y * 2, (x + y) % 256], -1).astype("uint8")
    pixels = np.clip(pixels + rng.integers(0, 30, pixels.shape), 0, 255).astype("uint8")
    photo = Image.fromarray(pixels)
    ImageDraw.Draw(photo).ellipse((30, 20, 90, 80), fill=(200, 30, 40))
    encoded = {}
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    encoded["jpeg"] = buffer.getvalue()
    buffer = io.BytesIO()
    photo.resize((50, 70)).convert("RGBA").save(buffer, "PNG")
    encoded["png"] = buffer.getvalue()
    buffer = io.BytesIO()
    photo.resize((64, 64)).convert("P").save(buffer, "GIF")
    encoded["gif"] = buffer.getvalue()
    return encoded


def tiny_export(root):
    """The shared `TinyExport` (built under `root` on first call)."""
    if "export" in _cache:
        return _cache["export"]
    from cmaclip_tf.inference.export import export_saved_model

    bundle_dir = os.path.join(root, "workdir", "inference")
    model, text_preprocessor, image_preprocessor = make_tiny_inference_bundle(
        bundle_dir
    )
    model_base_path = os.path.join(root, "models")
    version_dir = export_saved_model(bundle_dir, model_base_path, MODEL_NAME)
    images = sample_images()
    image_files = {}
    for name, data in images.items():
        path = os.path.join(root, f"sample.{name}")
        with open(path, "wb") as f:
            f.write(data)
        image_files[name] = path
    _cache["export"] = TinyExport(
        model, text_preprocessor, image_preprocessor,
        bundle_dir=bundle_dir, model_base_path=model_base_path,
        model_name=MODEL_NAME, version_dir=version_dir,
        images=images, image_files=image_files,
    )
    return _cache["export"]
