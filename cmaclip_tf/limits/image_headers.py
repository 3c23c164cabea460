"""Format and size of an encoded image, read from its header without decoding.

Every path that decodes an image (training and evaluation input, feature
caching, `Predictor`, `serving.predict`, the development server, batch
pipelines) checks `oversized_image(data, max_pixels)` before TensorFlow
decodes anything, so that a small file claiming a huge size (a
decompression bomb) or a GIF of many frames is refused cheaply. This module
imports nothing heavy, so that servers and pipelines can read it alone.
"""

import struct

from cmaclip_tf.limits.serving_limits import MAX_IMAGE_PIXELS

IMAGE_TOO_LARGE = "image_too_large"


def image_format_and_size(data):
    """`(format, width, height)` from an encoded image's header.

    Format is `"jpeg"`, `"png"`, `"gif"`, `"bmp"`, `"webp"` or None when the
    bytes start like none of them; width and height are None when the header
    is too short or malformed to tell (decoding will then fail on its own).

    Example:
    ```python
    image_format_and_size(open("dress.png", "rb").read())  # ("png", 640, 480)
    ```
    """
    if data.startswith(b"\xff\xd8\xff"):
        return ("jpeg",) + _jpeg_size(data)
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(data) >= 24 and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return "png", width, height
        return "png", None, None
    if data[:6] in (b"GIF87a", b"GIF89a"):
        if len(data) >= 13:  # The whole logical screen descriptor.
            width, height = struct.unpack("<HH", data[6:10])
            return "gif", width, height
        return "gif", None, None
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ("webp",) + _webp_size(data)
    if data.startswith(b"BM"):
        if len(data) >= 26:
            width, height = struct.unpack("<ii", data[18:26])
            return "bmp", abs(width), abs(height)
        return "bmp", None, None
    return None, None, None


def image_pixels(data):
    """`(format, width, height, frames)` from the header; sizes None if unknown.

    `frames` counts what the decoder materializes: every frame of a GIF or
    an animated WebP (TensorFlow decodes them all, even to keep one), else 1.
    """
    data = bytes(data) if not isinstance(data, bytes) else data
    image_format, width, height = image_format_and_size(data)
    frames = 1
    if image_format == "gif":
        frames = gif_frame_count(data)
    elif image_format == "webp":
        frames = webp_frame_count(data)
    return image_format, width, height, frames


def oversized_image(data, max_pixels=MAX_IMAGE_PIXELS):
    """What is too large about an encoded image, or None; decodes nothing.

    Args:
        data: the encoded image (bytes).
        max_pixels: int. Most decoded pixels, all frames counted; 0 or None
            means no limit.

    Returns:
        None within the limit (or when the header cannot tell: decoding
        then fails on its own), else a message such as `"a 20000x20000 png
        (400,000,000 pixels) is over the limit of 67,108,864 pixels"`.

    Example:
    ```python
    problem = oversized_image(open("photo.jpg", "rb").read(), 64 * 2**20)
    if problem:
        print(f"{IMAGE_TOO_LARGE}: photo.jpg: {problem}")
    ```
    """
    if not max_pixels:
        return None
    image_format, width, height, frames = image_pixels(data)
    if width is None or height is None:
        return None
    pixels = width * height * frames
    if pixels <= max_pixels:
        return None
    shape = f"{width}x{height}" + (f" x {frames} frames" if frames > 1 else "")
    return (
        f"a {shape} {image_format} ({pixels:,} pixels) is over the limit of "
        f"{max_pixels:,} pixels (max_image_pixels)"
    )


def gif_frame_count(data):
    """How many frames a GIF holds (TF decodes them all, even for one).

    Counts the image descriptors, skipping extensions and image data by
    their sub-block sizes; a truncated file counts the frames it holds, and
    anything counts at least one.

    Example:
    ```python
    width, height = image_format_and_size(gif)[1:]
    pixels = width * height * gif_frame_count(gif)
    ```
    """
    position = 13
    if len(data) > 10 and data[10] & 0x80:  # Global color table.
        position += 3 * 2 ** ((data[10] & 7) + 1)
    frames = 0
    while position < len(data):
        block = data[position]
        if block == 0x21:  # Extension: label, then data sub-blocks.
            position = _skip_gif_sub_blocks(data, position + 2)
        elif block == 0x2C:  # Image descriptor, then image data.
            frames += 1
            if position + 10 > len(data):
                break
            flags = data[position + 9]
            position += 10
            if flags & 0x80:  # Local color table.
                position += 3 * 2 ** ((flags & 7) + 1)
            position = _skip_gif_sub_blocks(data, position + 1)
        else:  # Trailer (0x3B) or garbage.
            break
    return max(frames, 1)


def _skip_gif_sub_blocks(data, position):
    while position < len(data):
        size = data[position]
        position += 1 + size
        if size == 0:
            break
    return position


def webp_frame_count(data):
    """Frames of a WebP: its `ANMF` chunks when animated, else 1."""
    count, position = 0, 12
    while position + 8 <= len(data):
        chunk = data[position : position + 4]
        (size,) = struct.unpack("<I", data[position + 4 : position + 8])
        count += chunk == b"ANMF"
        position += 8 + size + (size & 1)
    return max(count, 1)


def _webp_size(data):
    """Width and height from a WebP's first chunk (VP8, VP8L or VP8X)."""
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None, None


def _jpeg_size(data):
    """Width and height from a JPEG's start-of-frame segment."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None, None
        marker = data[position + 1]
        if marker == 0xFF:  # Fill byte.
            position += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD9:  # No length field.
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        # SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if position + 9 > len(data):
                return None, None
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        position += 2 + length
    return None, None
