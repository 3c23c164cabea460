"""ImagePreprocessor against CLIP's reference transform (PIL: bicubic resize
of the shortest side, center crop, RGB, normalize)."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cmaclip_tf.preprocessing import CLIP_MEAN
from cmaclip_tf.preprocessing import CLIP_STD
from cmaclip_tf.preprocessing import ImagePreprocessor

SIZE = 32
# One grey level on CLIP's normalized scale: PIL and TF round differently on
# a few pixels.
ONE_LEVEL = 1.0 / 255.0 / min(CLIP_STD) + 1e-5


def clip_reference(encoded, size=SIZE):
    """CLIP's `_transform`: Resize(BICUBIC), CenterCrop, RGB, Normalize."""
    image = Image.open(io.BytesIO(encoded)).convert("RGB")
    width, height = image.size
    if width <= height:
        new_width, new_height = size, int(size * height / width)
    else:
        new_width, new_height = int(size * width / height), size
    image = image.resize((new_width, new_height), Image.BICUBIC)
    top = int(round((new_height - size) / 2.0))
    left = int(round((new_width - size) / 2.0))
    image = image.crop((left, top, left + size, top + size))
    pixels = np.asarray(image, np.float32) / 255.0
    return (pixels - np.array(CLIP_MEAN, np.float32)) / np.array(
        CLIP_STD, np.float32
    )


def smooth_pixels(height, width, seed=0):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(
        0, 256, (height // 6 + 2, width // 6 + 2, 3), dtype=np.uint8
    )
    return np.asarray(
        Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
    )


def encode(pixels, image_format, mode=None, **kwargs):
    image = Image.fromarray(pixels)
    if mode:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, image_format, **kwargs)
    return buffer.getvalue()


FORMATS = [
    ("JPEG", None),
    ("JPEG", "L"),
    ("JPEG", "CMYK"),
    ("PNG", None),
    ("PNG", "RGBA"),
    ("PNG", "L"),
    ("PNG", "P"),
    ("GIF", "P"),
    ("BMP", None),
    ("BMP", "P"),
    ("WEBP", None),
]


@pytest.fixture(scope="module")
def preprocessor():
    return ImagePreprocessor(SIZE)


@pytest.mark.parametrize("shape", [(50, 75), (75, 50), (20, 27), (32, 32)])
def test_matches_clip_reference_transform(preprocessor, shape):
    pixels = smooth_pixels(*shape)
    for image_format, mode in FORMATS:
        encoded = encode(pixels, image_format, mode)
        got = preprocessor.preprocess_bytes(tf.constant(encoded)).numpy()
        difference = np.abs(got - clip_reference(encoded)).max()
        assert got.shape == (SIZE, SIZE, 3)
        assert difference <= ONE_LEVEL, (image_format, mode, difference)


def test_crop_offsets_and_normalization_by_hand(preprocessor):
    # 32 x 47: no resize; left offset round(15 / 2) = 8 (7.5 rounds to even).
    pixels = smooth_pixels(32, 47, seed=1)
    got = preprocessor.preprocess_pixels(tf.constant(pixels)).numpy()
    expected = (pixels[:, 8:40] / 255.0 - np.array(CLIP_MEAN)) / np.array(
        CLIP_STD
    )
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # 32 x 45: left offset round(13 / 2) = round(6.5) = 6.
    pixels = smooth_pixels(32, 45, seed=2)
    got = preprocessor.preprocess_pixels(tf.constant(pixels)).numpy()
    expected = (pixels[:, 6:38] / 255.0 - np.array(CLIP_MEAN)) / np.array(
        CLIP_STD
    )
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_gif_keeps_the_first_frame_and_rgba_drops_alpha(preprocessor):
    first, second = smooth_pixels(32, 32, 3), smooth_pixels(32, 32, 4)
    frames = [Image.fromarray(p).convert("P") for p in (first, second)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    got = preprocessor.preprocess_bytes(tf.constant(buffer.getvalue())).numpy()
    np.testing.assert_allclose(
        got, clip_reference(buffer.getvalue()), atol=ONE_LEVEL
    )

    rgba = np.concatenate([first, np.full((32, 32, 1), 7, np.uint8)], -1)
    got = preprocessor.preprocess_bytes(
        tf.constant(encode(rgba, "PNG"))
    ).numpy()
    expected = (first / 255.0 - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_batch_call_in_tf_data_and_tf_function(preprocessor):
    encoded = [encode(smooth_pixels(40, 60, i), "JPEG") for i in range(3)]
    encoded.append(encode(smooth_pixels(64, 30, 9), "PNG"))
    expected = np.stack([clip_reference(e) for e in encoded])
    batch = preprocessor(tf.constant(encoded)).numpy()
    assert batch.shape == (4, SIZE, SIZE, 3) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, expected, atol=ONE_LEVEL)
    # Same pixels; graph rewrites may reorder the float normalization.
    np.testing.assert_allclose(
        tf.function(lambda x: preprocessor(x))(tf.constant(encoded)).numpy(),
        batch,
        atol=1e-5,
    )
    dataset = tf.data.Dataset.from_tensor_slices(encoded).map(
        preprocessor.preprocess_bytes
    )
    np.testing.assert_allclose(
        np.stack(list(dataset.as_numpy_iterator())), batch, atol=1e-5
    )


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "Invalid image"),
        (b"plain text, not an image", "Invalid image"),
        (b"\xff\xd8\xff\xe0 truncated jpeg", "JPEG"),
    ],
)
def test_invalid_bytes_are_invalid_argument_errors(preprocessor, data, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        preprocessor(tf.constant([encode(smooth_pixels(8, 8), "PNG"), data]))


def test_from_image_converter_recovers_clip_settings(tiny_clip):
    preprocessor = ImagePreprocessor.from_image_converter(
        tiny_clip.image_converter
    )
    assert preprocessor.image_size == 64
    np.testing.assert_allclose(preprocessor.mean, CLIP_MEAN, rtol=1e-6)
    np.testing.assert_allclose(preprocessor.std, CLIP_STD, rtol=1e-6)
    assert preprocessor.get_config()["image_size"] == 64


@pytest.mark.parametrize("shape", [(700, 530), (300, 900), (600, 30)])
def test_width_pass_in_strips_equals_one_pass_in_float(shape):
    # The strips keep a float copy of the whole image out of memory; the
    # numbers must be those of one pass over it, bit for bit.
    from cmaclip_tf.preprocessing import image_preprocessor

    pixels = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    height, width = shape
    new_height, new_width = (64, 64 * width // height) if height <= width else (
        64 * height // width, 64)
    expected = tf.cast(pixels, tf.float32)
    if new_width != width:
        expected = image_preprocessor._resize(expected, [height, new_width])
    if new_height != height:
        expected = image_preprocessor._resize(expected, [new_height, new_width])
    got = tf.function(ImagePreprocessor(64).resize_shortest_side)(pixels)
    assert image_preprocessor.STRIP_ROWS < max(shape)
    np.testing.assert_array_equal(got.numpy(), expected.numpy())
