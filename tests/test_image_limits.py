"""One pixel limit on every path that decodes an image, read from the header.

Files that would take gigabytes to decode (`oversized_images`) are refused
before decoding: training counts them as bad records (`image_too_large`),
`Predictor` raises or returns the error, `serving.predict` writes an error
row, the server's request check answers INVALID_ARGUMENT; a subprocess shows
the peak memory stays bounded. Valid but unusual files (16-bit PNG, CMYK
JPEG, palette PNG with transparency) decode to the same pixels everywhere.
The paths that need the tiny export (`Predictor`, `serving.predict`) are
tested in `test_serving_predict.py`, which builds it anyway.
"""

import csv
import io
import json
import os
import subprocess
import sys

import grpc
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import oversized_images
from cmaclip_tf.datasets import load_dataset
from cmaclip_tf.limits.image_headers import IMAGE_TOO_LARGE
from cmaclip_tf.limits.image_headers import image_pixels
from cmaclip_tf.limits.image_headers import oversized_image
from cmaclip_tf.limits.serving_limits import MAX_IMAGE_PIXELS
from cmaclip_tf.limits.serving_limits import ServingLimits
from cmaclip_tf.preprocessing import ImagePreprocessor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Every oversized and unusual file, written once: name -> path."""
    folder = tmp_path_factory.mktemp("limit_images")
    encoded = {**oversized_images.oversized_files(), **oversized_images.unusual_files()}
    small = io.BytesIO()
    Image.new("RGB", (100, 80), (30, 160, 90)).save(small, "PNG")
    encoded["small.png"] = small.getvalue()
    paths = {}
    for name, data in encoded.items():
        paths[name] = str(folder / name)
        with open(paths[name], "wb") as f:
            f.write(data)
    return paths


def read(path):
    with open(path, "rb") as f:
        return f.read()


OVERSIZED = ("huge.png", "huge_truncated.png", "frames.gif", "claims_huge.jpg")
UNUSUAL = ("grey16.png", "cmyk.jpg", "palette_transparent.png")


# --- The header reader. ---


def test_header_gives_size_and_frames_of_every_format(files):
    assert image_pixels(read(files["huge.png"])) == ("png", 20000, 20000, 1)
    assert image_pixels(read(files["huge_truncated.png"]))[1:3] == (20000, 20000)
    assert image_pixels(read(files["frames.gif"])) == ("gif", 1000, 1000, 2000)
    assert image_pixels(read(files["claims_huge.jpg"])) == ("jpeg", 60000, 60000, 1)
    for kwargs in ({"lossless": False}, {"lossless": True}):
        buffer = io.BytesIO()
        Image.new("RGB", (123, 45)).save(buffer, "WEBP", **kwargs)
        assert image_pixels(buffer.getvalue()) == ("webp", 123, 45, 1)
    buffer = io.BytesIO()
    frames = [Image.new("RGB", (30, 20), (i * 40, 0, 0)) for i in range(3)]
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:])
    assert image_pixels(buffer.getvalue()) == ("webp", 30, 20, 3)
    buffer = io.BytesIO()
    Image.new("RGB", (77, 33)).save(buffer, "BMP")
    assert image_pixels(buffer.getvalue()) == ("bmp", 77, 33, 1)
    assert image_pixels(b"GIF89a junk") == ("gif", None, None, 1)


def test_oversized_image_message_and_limit():
    png = oversized_images.one_color_png(64, 32)
    assert oversized_image(png, 64 * 32) is None
    assert oversized_image(png, 64 * 32 - 1) == (
        "a 64x32 png (2,048 pixels) is over the limit of 2,047 pixels "
        "(max_image_pixels)"
    )
    assert oversized_image(png, 0) is None  # No limit.
    # The one definition: fits a 50 Mpx camera's photo, and the server's too.
    assert 8688 * 5792 <= MAX_IMAGE_PIXELS == ServingLimits().max_image_pixels


# --- Training and evaluation input (and so the feature cache). ---


def write_manifest(path, rows, header=("image", "text", "color")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def test_training_counts_oversized_files_and_goes_on(files, tmp_path):
    names = [*OVERSIZED, *UNUSUAL, "small.png"]
    manifest = tmp_path / "train.csv"
    write_manifest(manifest, [[files[n], f"item {n}", "red"] for n in names])
    dataset = load_dataset("manifest", manifest=str(manifest),
                           val_manifest=str(manifest), num_workers=2)
    assert dataset.num_examples["train"] == 4
    assert dataset.bad_records.counts()["train"] == {IMAGE_TOO_LARGE: 4}
    messages = "\n".join(dataset.bad_records.messages("train"))
    for name, size in (("huge.png", "20000x20000"), ("frames.gif", "x 2000 frames"),
                       ("claims_huge.jpg", "60000x60000")):
        assert name in messages and size in messages

    # The limit is a flag: lower it and the 100x80 PNG is over it too.
    strict = load_dataset("manifest", manifest=str(manifest),
                          val_manifest=str(manifest), num_workers=2,
                          max_image_pixels=100 * 80 - 1)
    assert strict.num_examples["train"] == 3
    assert "a 100x80 png" in "\n".join(strict.bad_records.messages("train"))


def test_trainer_flag_sets_the_limit():
    from trainers.command_line import add_data_arguments

    import argparse

    parser = argparse.ArgumentParser()
    add_data_arguments(parser, "the dataset")
    assert parser.parse_args([]).max_image_pixels == MAX_IMAGE_PIXELS
    args = parser.parse_args(["--max-image-pixels", "400000000"])
    assert args.max_image_pixels == 400_000_000


# --- The server's request check. ---


def test_server_request_check_refuses_oversized_images(files):
    from serving.request_validation import RequestError
    from serving.request_validation import check_images

    for name in OVERSIZED:
        with pytest.raises(RequestError) as raised:
            check_images(np.array([read(files[name])], object), ServingLimits())
        assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "max-image-pixels" in raised.value.message


MEASURE = r"""
import json, resource, sys
import numpy as np
from cmaclip_tf.preprocessing import ImageValidator
from serving.manifest_stream import Row, checked_images

paths = sys.argv[1:]
validator = ImageValidator()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
reasons = [validator.check_file(p)[0] for p in paths]
rows = [Row(i, {}, image_path=p) for i, p in enumerate(paths)]
stream = [row.problem.split(":")[0] for row, _ in checked_images(
    rows, lambda row: (None, validator.check_file(row.image_path)[0] + ": x"))]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"reasons": reasons, "stream": stream, "peak": peak,
                  "before": before}))
"""


@pytest.mark.large  # A fresh process importing TensorFlow: about 20 s.
def test_peak_memory_stays_bounded_in_a_subprocess(files):
    paths = [files[name] for name in OVERSIZED]
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, *paths], cwd=REPO, capture_output=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""),
        text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["reasons"] == [IMAGE_TOO_LARGE] * 4
    assert measured["stream"] == [IMAGE_TOO_LARGE] * 4
    # TensorFlow alone is about 0.8-1.0 GB (more on a loaded machine), so
    # the peak is compared with the process's own peak before the checks:
    # decoding huge.png would add 1.2 GB, frames.gif 6 GB.
    assert measured["peak"] - measured["before"] < 0.25 * 2**30, measured


# --- Valid but unusual files: the same pixels on every path. ---


def test_unusual_files_decode_as_pil_does(files):
    Image.MAX_IMAGE_PIXELS = None
    decode = tf.function(ImagePreprocessor(8).decode)
    for name in UNUSUAL:
        image = Image.open(files[name])
        if image.mode == "I;16":  # PIL's convert("RGB") clips: take the high byte.
            high_byte = (np.asarray(image) >> 8).astype(np.uint8)
            expected = np.repeat(high_byte[..., None], 3, -1)
        else:
            expected = np.asarray(image.convert("RGB"))
        got = decode(tf.constant(read(files[name]))).numpy()
        assert got.shape == expected.shape
        tolerance = 1 if name == "cmyk.jpg" else 0  # CMYK's rounding differs.
        assert np.abs(got.astype(int) - expected).max() <= tolerance, name


def test_grpc_client_never_sends_an_oversized_image(files):
    from serving.client import classify_manifest

    class Recording:
        sent = []

        def classify(self, images, texts):
            Recording.sent += [len(image) for image in images]
            return [{"color": {"label": "red"}} for _ in images]

    rows = [(files["small.png"], "a"), (files["huge.png"], "b")]
    results = list(classify_manifest(Recording(), rows))
    assert [error.split(":")[0] for *_, error in results] == ["", IMAGE_TOO_LARGE]
    assert "20000x20000" in results[1][3]
    assert Recording.sent == [os.path.getsize(files["small.png"])]
