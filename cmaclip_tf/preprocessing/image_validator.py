"""Checks encoded images with the graph's own decoder, before tf.data sees them.

A corrupt image would stop a tf.data pipeline with an error that names no
file, and `ignore_errors()` would drop it silently. So readers decode each
image once in Python with exactly the decoder the training graph and the
exported model use (`ImagePreprocessor.decode`); what fails is reported as a
bad record with its file and row, and never reaches the graph. Before that,
the header's size is held to the pixel limit (`cmaclip_tf.limits.image_headers`),
so a decompression bomb is refused without decoding. Results are cached per
file (path, size, modification time), so only the first epoch pays.
"""

import contextlib
import os
import sys
import threading

import tensorflow as tf

from cmaclip_tf.limits.image_headers import IMAGE_TOO_LARGE
from cmaclip_tf.limits.image_headers import oversized_image
from cmaclip_tf.limits.serving_limits import MAX_IMAGE_PIXELS
from cmaclip_tf.preprocessing.image_preprocessor import ImagePreprocessor

# The reasons of `cmaclip_tf.datasets.bad_records` (which imports this module).
MISSING_IMAGE = "missing_image"
CORRUPT_IMAGE = "corrupt_image"


class ImageValidator:
    """Decodes encoded images to tell good from corrupt; caches per file.

    Args:
        max_image_pixels: int. Most decoded pixels of one image, all frames
            counted, read from the header before decoding; 0 for no limit.
            Defaults to `MAX_IMAGE_PIXELS`.

    Example:

    ```python
    validator = ImageValidator()
    validator.check(b"not an image")
    # ("corrupt_image", "Invalid image: expected JPEG, ...")
    validator.check(png_bytes)  # None
    ```
    """

    def __init__(self, max_image_pixels=MAX_IMAGE_PIXELS):
        self.max_image_pixels = int(max_image_pixels or 0)
        decoder = ImagePreprocessor(image_size=1)
        # Traced once here: worker threads then share one concrete function.
        self._decoded_shape = tf.function(
            lambda data: tf.shape(decoder.decode(data)),
            input_signature=[tf.TensorSpec([], tf.string)],
        ).get_concrete_function()
        self._cache = {}
        self._lock = threading.Lock()

    def check(self, data):
        """`None` for a decodable image, else `(reason, detail)`.

        Reasons: `"corrupt_image"` (empty, not an image, fails to decode) or
        `"image_too_large"` (its header is over `max_image_pixels`).
        """
        if not data:
            return CORRUPT_IMAGE, "empty file"
        problem = oversized_image(data, self.max_image_pixels)
        if problem is not None:
            return IMAGE_TOO_LARGE, problem
        try:
            height, width, _ = self._decoded_shape(tf.constant(data)).numpy()
        except tf.errors.InvalidArgumentError as error:
            return CORRUPT_IMAGE, _first_line(error.message)
        if height < 1 or width < 1:
            return CORRUPT_IMAGE, f"decoded to an empty {height}x{width} image"
        return None

    def read(self, path):
        """Reads and checks an image file.

        Returns:
            `(data, None)` for a good image, `(None, (reason, detail))` for
            a missing (`"missing_image"`), corrupt or too large one.
        """
        return self._read(path, need_data=True)

    def check_file(self, path):
        """`None` for a good image file, else `(reason, detail)` (as `read`).

        A file already checked (same size and modification time) is not
        read again.
        """
        return self._read(path, need_data=False)[1]

    def _read(self, path, need_data):
        try:
            stat = os.stat(path)
            key = (path, stat.st_size, stat.st_mtime_ns)
            with self._lock:
                cached = self._cache.get(key, ...)
            if cached is not ... and not need_data:
                return None, cached
            with open(path, "rb") as f:
                data = f.read()
        except OSError as error:
            return None, (MISSING_IMAGE, f"missing: {error.strerror or error}")
        if cached is ...:
            cached = self.check(data)
            with self._lock:
                self._cache[key] = cached
        return (None, cached) if cached is not None else (data, None)


_STDERR_LOCK = threading.Lock()
_STDERR_USERS = [0, None]  # Nesting count, saved descriptor.


@contextlib.contextmanager
def decoder_messages_silenced():
    """Keeps libjpeg's and libpng's own stderr lines off the console.

    The C decoders print what they dislike ("Improper call to JPEG library
    in state 201") straight to the process's stderr; a corrupt image is
    reported as a bad record with its file and row instead. Use around a
    pass of checks; nested and concurrent uses share one redirection.
    """
    with _STDERR_LOCK:
        if _STDERR_USERS[0] == 0:
            sys.stderr.flush()
            _STDERR_USERS[1] = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        _STDERR_USERS[0] += 1
    try:
        yield
    finally:
        with _STDERR_LOCK:
            _STDERR_USERS[0] -= 1
            if _STDERR_USERS[0] == 0:
                os.dup2(_STDERR_USERS[1], 2)
                os.close(_STDERR_USERS[1])


def _first_line(message):
    # "{{function_node ...}} <reason>\n\t [[{{node ...}}]] [Op:...]" -> reason.
    reason = message.strip().splitlines()[0] if message.strip() else message
    if reason.startswith("{{") and "}}" in reason:
        reason = reason.split("}}", 1)[1].strip()
    reason = reason.split(" [Op:")[0]
    if reason.startswith("assertion failed: [") and reason.endswith("]"):
        reason = reason[len("assertion failed: [") : -1]
    return reason
