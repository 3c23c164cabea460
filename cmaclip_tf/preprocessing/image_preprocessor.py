"""CLIP's image preprocessing as a TF graph: decode, resize, crop, normalize.

Matches the reference implementation's transform (PIL decode, `Resize(size,
BICUBIC)` of the shortest side, `CenterCrop(size)`, RGB, `Normalize(mean,
std)`) to within one grey level, using core TensorFlow ops only so the
exported model runs in stock TF Serving:

- JPEG is decoded with the accurate integer IDCT, as libjpeg in PIL.
- PIL resizes in two passes (width, then height) with an antialiased cubic
  kernel (a = -0.5) and rounds to uint8 after each; so does this module.
- 8-bit BMPs are indexed through their palette (TF's BMP decoder returns the
  raw indices). GIFs keep their first frame; grey and RGBA images become RGB
  (alpha dropped, as PIL's `convert("RGB")`).

Invalid bytes raise `InvalidArgumentError` naming the accepted formats.
"""

import tensorflow as tf

# CLIP's image normalization (the reference implementation's `transform`).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_FORMATS = "JPEG, PNG, GIF, BMP or WebP"


class ImagePreprocessor(tf.Module):
    """Turns encoded images into CLIP's normalized input.

    Args:
        image_size: int. Output height and width (the resize's shortest side
            and the square center crop).
        mean: 3 floats. Per-channel mean on the [0, 1] scale. Defaults to
            CLIP's.
        std: 3 floats. Per-channel standard deviation. Defaults to CLIP's.
        name: optional module name.

    Example:

    ```python
    preprocessor = ImagePreprocessor(64)
    images = preprocessor(tf.constant([jpeg_bytes, png_bytes]))
    images.shape  # (2, 64, 64, 3)
    ```
    """

    def __init__(self, image_size, mean=CLIP_MEAN, std=CLIP_STD, name=None):
        super().__init__(name=name)
        self.image_size = int(image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("`mean` and `std` need one value per RGB channel.")

    @classmethod
    def from_image_converter(cls, image_converter, **kwargs):
        """Builds from a keras-hub `CLIPImageConverter` (a preset's).

        The converter stores `scale = 1 / (255 std)` and `offset = -mean /
        std`; its image size must be square.
        """
        height, width = image_converter.image_size
        if height != width:
            raise ValueError(
                f"CLIP crops a square; the converter's size is {height}x{width}."
            )
        scale, offset = image_converter.scale, image_converter.offset
        if scale is None or offset is None:
            mean, std = (0.0, 0.0, 0.0), (1 / 255.0,) * 3
        else:
            std = [1.0 / (255.0 * s) for s in _per_channel(scale)]
            mean = [-o * s for o, s in zip(_per_channel(offset), std)]
        return cls(height, mean=mean, std=std, **kwargs)

    def get_config(self):
        return {
            "image_size": self.image_size,
            "mean": self.mean,
            "std": self.std,
        }

    def __call__(self, encoded_images):
        """Encoded images `[batch]` to float32 `[batch, size, size, 3]`."""
        encoded_images = tf.convert_to_tensor(encoded_images, tf.string)
        size = self.image_size
        return tf.map_fn(
            self.preprocess_bytes,
            encoded_images,
            fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
        )

    def preprocess_bytes(self, encoded_image):
        """One encoded image (scalar string) to float32 `[size, size, 3]`."""
        return self.preprocess_pixels(self.decode(encoded_image))

    def preprocess_pixels(self, image):
        """One uint8 image `[height, width, 3]` to float32 `[size, size, 3]`."""
        return self.normalize(self.crop_pixels(image))

    def crop_pixels(self, image):
        """One uint8 image to CLIP's square crop, float32 in [0, 255]: what
        `normalize` takes (training augmentation goes between the two)."""
        image = tf.convert_to_tensor(image)
        if image.dtype != tf.uint8:
            raise ValueError(f"Expected uint8 pixels; got {image.dtype}.")
        image = tf.ensure_shape(image, [None, None, 3])
        image = self.resize_shortest_side(image)
        return self.center_crop(image)

    def decode(self, encoded_image):
        """Decodes a JPEG/PNG/GIF/BMP/WebP to uint8 RGB `[height, width, 3]`."""
        encoded_image = tf.convert_to_tensor(encoded_image, tf.string)
        # The first 12 bytes, zero-padded so that short input reads safely.
        head = tf.strings.join(
            [tf.strings.substr(encoded_image, 0, 12), b"\0" * 12]
        )
        magic = tf.strings.substr(head, 0, 4)
        is_jpeg = tf.equal(tf.strings.substr(head, 0, 3), b"\xff\xd8\xff")
        is_bmp = tf.equal(tf.strings.substr(head, 0, 2), b"BM")
        known = (
            is_jpeg
            | is_bmp
            | tf.equal(magic, b"\x89PNG")
            | tf.equal(magic, b"GIF8")
            | (
                tf.equal(magic, b"RIFF")
                & tf.equal(tf.strings.substr(head, 8, 4), b"WEBP")
            )
        )
        check = tf.debugging.Assert(
            known,
            [f"Invalid image: expected {IMAGE_FORMATS} bytes."],
        )
        with tf.control_dependencies([check]):
            image = tf.case(
                [
                    (is_jpeg, lambda: _decode_jpeg(encoded_image)),
                    (is_bmp, lambda: _decode_bmp(encoded_image)),
                ],
                default=lambda: tf.io.decode_image(
                    encoded_image, channels=3, expand_animations=False
                ),
            )
        return tf.ensure_shape(image, [None, None, 3])

    def resize_shortest_side(self, image):
        """Bicubic resize so the shortest side is `image_size`, as PIL does."""
        shape = tf.shape(image)
        height, width = shape[0], shape[1]
        size = self.image_size
        short = tf.cast(tf.minimum(height, width), tf.float64)
        long = tf.cast(tf.maximum(height, width), tf.float64)
        # torchvision: the long side is int(size * long / short).
        new_long = tf.cast(tf.floor(size * long / short), tf.int32)
        new_height = tf.where(height <= width, size, new_long)
        new_width = tf.where(height <= width, new_long, size)
        # PIL: width pass, round to uint8, height pass, round to uint8. A pass
        # to the same size is the identity for this kernel, so it is skipped.
        image = tf.cond(
            tf.equal(new_width, width),
            lambda: tf.cast(image, tf.float32),
            lambda: _resize_width_in_strips(image, new_width),
        )
        return tf.cond(
            tf.equal(new_height, height),
            lambda: image,
            lambda: _resize(image, tf.stack([new_height, new_width])),
        )

    def center_crop(self, image):
        """Square center crop of `image_size`, offsets as torchvision."""
        shape = tf.shape(image)
        size = self.image_size
        # Python's round() is half-to-even, as tf.round.
        top = tf.cast(
            tf.round(tf.cast(shape[0] - size, tf.float64) / 2.0), tf.int32
        )
        left = tf.cast(
            tf.round(tf.cast(shape[1] - size, tf.float64) / 2.0), tf.int32
        )
        image = tf.slice(image, tf.stack([top, left, 0]), [size, size, 3])
        return tf.ensure_shape(image, [size, size, 3])

    def normalize(self, image):
        """Pixel values in [0, 255] to CLIP's normalized scale."""
        mean = tf.constant(self.mean, tf.float32)
        std = tf.constant(self.std, tf.float32)
        return (tf.cast(image, tf.float32) / 255.0 - mean) / std


def _per_channel(values):
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    return values * 3 if len(values) == 1 else values


def _resize(image, size):
    image = tf.image.resize(image, size, "bicubic", antialias=True)
    return tf.clip_by_value(tf.round(image), 0.0, 255.0)


# Rows per strip of the width pass: a float copy of the whole decoded image
# (16 bytes per pixel) would be the largest buffer by far.
STRIP_ROWS = 256


def _resize_width_in_strips(image, new_width):
    """The width pass on strips of rows: equal to one call, a strip in float.

    Along the height the kernel is the identity (scale 1), so each row's
    result depends on that row alone and strips give the same numbers.
    """
    height = tf.shape(image)[0]
    strips = (height + STRIP_ROWS - 1) // STRIP_ROWS

    def strip(i, resized):
        rows = image[i * STRIP_ROWS : (i + 1) * STRIP_ROWS]
        size = tf.stack([tf.shape(rows)[0], new_width])
        return i + 1, resized.write(i, _resize(tf.cast(rows, tf.float32), size))

    _, resized = tf.while_loop(
        lambda i, _: i < strips,
        strip,
        [tf.constant(0), tf.TensorArray(tf.float32, strips, infer_shape=False)],
    )
    return tf.ensure_shape(resized.concat(), [None, None, 3])


def _decode_jpeg(encoded_image):
    # PIL's libjpeg uses the accurate integer IDCT; TF defaults to the fast.
    return tf.io.decode_jpeg(
        encoded_image, channels=3, dct_method="INTEGER_ACCURATE"
    )


def _decode_bmp(encoded_image):
    """TF decodes 8-bit BMPs to palette indices; this applies the palette."""
    raw = tf.io.decode_bmp(encoded_image, channels=0)

    def header_int(offset, length, dtype):
        return tf.io.decode_raw(
            tf.strings.substr(encoded_image, offset, length), dtype
        )[0]

    def indexed():
        header_size = header_int(14, 4, tf.int32)
        num_colors = header_int(46, 4, tf.int32)
        num_colors = tf.where(num_colors > 0, num_colors, 256)
        palette = tf.io.decode_raw(
            tf.strings.substr(encoded_image, 14 + header_size, 4 * num_colors),
            tf.uint8,
        )
        # Entries are blue, green, red, reserved.
        palette = tf.reverse(tf.reshape(palette, [-1, 4])[:, :3], axis=[1])
        indices = tf.minimum(
            tf.cast(raw[..., 0], tf.int32), tf.shape(palette)[0] - 1
        )
        return tf.gather(palette, indices)

    channels = tf.shape(raw)[-1]
    return tf.case(
        [
            (tf.equal(channels, 1), indexed),
            (tf.equal(channels, 4), lambda: raw[..., :3]),
        ],
        default=lambda: raw[..., :3],
    )
