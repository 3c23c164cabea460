"""`cmaclip_tf.Predictor` on a tiny export and its training bundle.

The reference is the in-memory model with the training pipeline's own
preprocessing (`TinyExport.reference_outputs`); the gRPC comparison is in
`test_serving_predict.py`, which starts the server once for both APIs.
"""

import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import tiny_export
from cmaclip_tf import Predictor


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    return tiny_export.tiny_export(str(tmp_path_factory.mktemp("tiny_export")))


@pytest.fixture(scope="module")
def predictor(exported):
    return Predictor.load(exported.version_dir)


def grey_images():
    """A grey JPEG and a grey PNG (one channel in the file)."""
    y, x = np.mgrid[0:80, 0:60]
    pixels = ((x * 3 + y * 2) % 256).astype("uint8")
    encoded = {}
    for name, kwargs in (("grey_jpeg", {"format": "JPEG", "quality": 95}),
                         ("grey_png", {"format": "PNG"})):
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, **kwargs)
        encoded[name] = buffer.getvalue()
    return encoded


def test_predictions_match_the_in_memory_model(predictor, exported):
    images = [*exported.images.values(), *grey_images().values()]
    texts = ["Red striped cotton dress", "plain blue denim jacket", "Ünïcödé silk",
             "", "grey wool scarf"]
    results = predictor.predict(images, texts, probabilities=True)
    expected = exported.reference_outputs(images, texts)
    assert len(results) == len(images)
    for task, labels in tiny_export.LABELS.items():
        probabilities = np.array(
            [[r[task]["probabilities"][label] for label in labels] for r in results]
        )
        np.testing.assert_allclose(
            probabilities, expected[f"{task}_probabilities"], atol=1e-5
        )
        np.testing.assert_allclose(
            [r[task]["image_weight"] for r in results],
            expected[f"{task}_image_weight"].reshape(-1),
            atol=1e-5,
        )
        assert [r[task]["label"] for r in results] == expected[f"{task}_label"].tolist()
        for result in results:
            value = result[task]
            assert value["score"] == max(value["probabilities"].values())
            # tiny_export.SCORE_THRESHOLDS: color 0.34; pattern None (never).
            threshold = 0.34 if task == "color" else 2.0
            assert value["accepted"] == (value["score"] >= threshold)
    # Without the flag: the four fields only.
    plain = predictor.predict(images[:1], texts[:1])
    assert set(plain[0]["color"]) == {"label", "score", "accepted", "image_weight"}
    assert plain[0]["color"]["score"] == pytest.approx(
        results[0]["color"]["score"], abs=1e-6
    )


def test_paths_pil_images_and_arrays_give_the_same_answers(predictor, exported):
    png, gif = exported.image_files["png"], exported.image_files["gif"]
    grey = grey_images()["grey_png"]
    rgba = np.asarray(Image.open(png))  # [H, W, 4]: alpha is dropped.
    grey_pixels = np.asarray(Image.open(io.BytesIO(grey)))  # [H, W]
    texts = ["striped", "plain", "grey"]
    by_file = predictor.predict([png, gif, grey], texts)
    variants = [
        [Image.open(png), Image.open(gif), Image.open(io.BytesIO(grey))],
        [rgba, np.asarray(Image.open(gif).convert("RGB")), grey_pixels],
        [rgba[..., :3], open(gif, "rb").read(), grey_pixels[..., None]],
    ]
    for images in variants:
        results = predictor.predict(images, texts)
        for got, want in zip(results, by_file):
            for task in tiny_export.TASKS:
                assert got[task]["label"] == want[task]["label"]
                assert got[task]["score"] == pytest.approx(
                    want[task]["score"], abs=1e-6
                )
    # One pair in, one dict out.
    single = predictor.predict(png, "striped")
    assert single["color"]["score"] == pytest.approx(
        by_file[0]["color"]["score"], abs=1e-6
    )


def test_bad_examples_raise_or_come_back_as_errors(predictor, exported, tmp_path):
    jpeg = exported.images["jpeg"]
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(jpeg[: len(jpeg) // 3])
    images = [jpeg, str(tmp_path / "missing.jpg"), str(truncated), b"GIF89a junk",
              jpeg, np.full((4, 4), 7.5, np.float32), jpeg]
    texts = ["red", "red", "red", "red", "x" * 8193, "red", b"caf\xe9"]
    with pytest.raises(ValueError,
                       match=r"6 of 7 examples.*example 1: missing_image") as raised:
        predictor.predict(images, texts)
    assert ".." not in str(raised.value)
    results = predictor.predict(images, texts, on_error="return")
    reasons = [r.get("error", "ok").split(":")[0] for r in results]
    assert reasons == ["ok", "missing_image", "corrupt_image", "corrupt_image",
                       "text_too_long", "unsupported_image", "undecodable_text"]
    assert "8193 bytes" in results[4]["error"]
    assert "float32 pixels must lie in [0, 1]" in results[5]["error"]
    alone = predictor.predict([jpeg], ["red"])[0]
    assert results[0]["color"]["score"] == pytest.approx(
        alone["color"]["score"], abs=1e-6
    )
    with pytest.raises(ValueError, match="2 images and 1 texts"):
        predictor.predict([jpeg, jpeg], ["red"])
    with pytest.raises(ValueError, match="Unknown task"):
        predictor.predict([jpeg], ["red"], tasks=["size"])
    only_color = predictor.predict([jpeg], ["red"], tasks=["color"])[0]
    assert list(only_color) == ["color"]


def test_a_row_the_model_refuses_costs_only_itself(predictor, exported):
    # predict_encoded skips the checks, so the model sees the bad row.
    jpeg, png = exported.images["jpeg"], exported.images["png"]
    images = [jpeg, jpeg[: len(jpeg) // 3], png]
    texts = ["red", "red", "plain"]
    results = predictor.predict_encoded(images, texts)
    assert results[1]["error"].startswith("model_error: ")
    assert "[[" not in results[1]["error"]
    for index in (0, 2):
        (alone,) = predictor.predict_encoded([images[index]], [texts[index]])
        assert results[index]["color"]["score"] == pytest.approx(
            alone["color"]["score"], abs=1e-6
        )


def test_load_finds_the_model(exported, tmp_path, predictor):
    # A model folder of versions: the highest holding a SavedModel wins.
    model_dir = tmp_path / "models" / "cmaclip"
    shutil.copytree(exported.version_dir, model_dir / "1")
    shutil.copytree(exported.version_dir, model_dir / "3")
    (model_dir / "7").mkdir()  # No saved_model.pb: an export in progress.
    (model_dir / ".export-x").mkdir()
    loaded = Predictor.load(tmp_path / "models")  # A base path of one model.
    assert loaded.source == str(model_dir / "3")
    assert loaded.tasks == tiny_export.TASKS
    assert loaded.labels == tiny_export.LABELS
    assert loaded.max_text_bytes == 8192

    # A training workdir: its inference bundle, through the export's graph.
    workdir = os.path.dirname(exported.bundle_dir)
    from_bundle = Predictor.load(workdir)
    assert from_bundle.source == exported.bundle_dir
    images = [exported.images["jpeg"], exported.images["gif"]]
    texts = ["Red striped cotton dress", "plain"]
    for a, b in zip(from_bundle.predict(images, texts), predictor.predict(images, texts)):
        for task in tiny_export.TASKS:
            assert a[task]["label"] == b[task]["label"]
            assert a[task]["accepted"] == b[task]["accepted"]
            for key in ("score", "image_weight"):
                assert a[task][key] == pytest.approx(b[task][key], abs=1e-6)

    shutil.copytree(exported.version_dir, tmp_path / "models" / "other" / "1")
    with pytest.raises(ValueError, match="several models"):
        Predictor.load(tmp_path / "models")
    with pytest.raises(FileNotFoundError, match="No model found"):
        Predictor.load(tmp_path / "nothing")


def test_import_does_not_load_tensorflow():
    import subprocess
    import sys

    code = "import sys, cmaclip_tf; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout.strip() == "False"


def test_every_pil_mode_and_dtype_reads_as_its_8_bit_version(predictor):
    y, x = np.mgrid[0:48, 0:40]
    grey = ((x * 5 + y * 3) % 256).astype(np.uint8)
    rgb = np.stack([grey, 255 - grey, (grey // 2 + 60).astype(np.uint8)], -1)
    wide = grey.astype(np.uint16) * 257  # 16 bits, the same picture.
    same_as_grey = [
        Image.fromarray(grey, "L"),
        Image.fromarray(wide),  # Mode I;16.
        Image.fromarray(wide.astype(np.int32), "I"),  # As Pillow opens 16-bit PNGs.
        Image.fromarray(grey.astype(np.float32) / 255.0, "F"),
        wide,
        wide.astype(np.uint32) << 16,
        grey.astype(np.float64) / 255.0,
    ]
    texts = ["grey wool scarf"] * len(same_as_grey)
    expected = predictor.predict([grey], texts[:1])[0]
    for image, result in zip(same_as_grey, predictor.predict(same_as_grey, texts)):
        for task in expected:
            assert result[task]["score"] == pytest.approx(
                expected[task]["score"], abs=1e-6), getattr(image, "mode", image.dtype)
            assert result[task]["label"] == expected[task]["label"]
    (wide_rgb,) = predictor.predict([rgb.astype(np.uint16) * 257], texts[:1])
    assert wide_rgb == predictor.predict([rgb], texts[:1])[0]
    # Refused, naming the mode or dtype: no faithful 8-bit reading.
    refused = [
        (grey.astype(np.int64), "int64 pixels"),
        (grey.astype(np.float32), "float32 pixels must lie in [0, 1]"),
        (-wide.astype(np.int32), "negative"),
        (Image.new("I;16B", (4, 4)).convert("I").point(lambda v: v - 5), "negative"),
    ]
    results = predictor.predict([image for image, _ in refused],
                                ["x"] * len(refused), on_error="return")
    for (_, message), result in zip(refused, results):
        assert result["error"].startswith("unsupported_image: ")
        assert message in result["error"]
