"""Format and size of an encoded image, read from its header without decoding.

The server checks these before TensorFlow decodes anything, so that a small
file claiming a huge size (a decompression bomb) or a GIF of many frames is
refused cheaply.
"""

import struct


def image_format_and_size(data):
    """`(format, width, height)` from an encoded image's header.

    Format is `"jpeg"`, `"png"`, `"gif"`, `"bmp"`, `"webp"` or None when the
    bytes start like none of them; width and height are None when the header
    is too short or malformed to tell (decoding will then fail on its own),
    and for WebP.

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
        if len(data) >= 10:
            width, height = struct.unpack("<HH", data[6:10])
            return "gif", width, height
        return "gif", None, None
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp", None, None
    if data.startswith(b"BM"):
        if len(data) >= 26:
            width, height = struct.unpack("<ii", data[18:26])
            return "bmp", abs(width), abs(height)
        return "bmp", None, None
    return None, None, None


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
