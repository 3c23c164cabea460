"""Image files that would take gigabytes to decode, written in a second or two.

Each is a small file: a 20,000 x 20,000 one-color PNG (valid: its deflate
stream repeats one independently compressed block of rows), a GIF of 2,000
frames of 1,000 x 1,000, the same PNG cut short, a JPEG whose header claims
60,000 x 60,000 over a few hundred bytes of data. Nothing here decodes them;
every reader must refuse them from the header. Also the valid but unusual
files that must decode alike on every path: a 16-bit PNG, a CMYK JPEG, a
palette PNG with transparency.
"""

import io
import struct
import zlib

import numpy as np
from PIL import Image

ROWS_PER_BLOCK = 16


def _chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def one_color_png(width, height, color=(200, 30, 30)):
    """A valid RGB PNG of one color, as bytes, without holding its pixels."""
    assert height % ROWS_PER_BLOCK == 0
    row = b"\0" + bytes(color) * width  # Filter type 0, then the pixels.
    block = row * ROWS_PER_BLOCK
    compressor = zlib.compressobj(9)
    # After a full flush the compressor starts afresh, so the second block's
    # bytes can stand for every later block.
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.flush(zlib.Z_FINISH)[:-4]  # Final block, without adler32.
    checksum = 1
    for _ in range(height // ROWS_PER_BLOCK):
        checksum = zlib.adler32(block, checksum)
    idat = (first + again * (height // ROWS_PER_BLOCK - 1) + tail
            + struct.pack(">I", checksum & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


def huge_png():
    """20,000 x 20,000 RGB (1.2 GB decoded) in about 1 MB."""
    return one_color_png(20000, 20000)


def truncated_png(data):
    """`data` (a PNG) cut in the middle of its image data."""
    return data[: max(len(data) // 2, 60)]


def many_frame_gif(frames=2000, size=1000):
    """`frames` frames of `size` x `size` (6 GB decoded at the defaults)."""
    buffer = io.BytesIO()
    Image.new("P", (size, size), 1).save(buffer, "GIF")
    single = buffer.getvalue()
    start = single.index(b"\x2c\x00\x00\x00\x00")  # The image descriptor.
    frame = single[start:-1]  # Up to the trailer.
    return single[:start] + frame * frames + b"\x3b"


def jpeg_claiming(width=60000, height=60000):
    """A small JPEG whose start-of-frame claims `width` x `height`."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 120, 200)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    position = 2
    while data[position + 1] not in (0xC0, 0xC1, 0xC2):
        position += 2 + struct.unpack(">H", data[position + 2: position + 4])[0]
    data[position + 5: position + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def oversized_files():
    """`{name: bytes}` of every file the pixel limit must refuse."""
    png = huge_png()
    return {
        "huge.png": png,
        "huge_truncated.png": truncated_png(png),
        "frames.gif": many_frame_gif(),
        "claims_huge.jpg": jpeg_claiming(),
    }


def unusual_files():
    """`{name: bytes}` of valid files that are easy to decode differently."""
    y, x = np.mgrid[0:40, 0:30]
    files = {}
    grey16 = ((x * 2000 + y * 900) % 65536).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(grey16).save(buffer, "PNG")  # Mode I;16, 16-bit grey.
    files["grey16.png"] = buffer.getvalue()
    cmyk = np.stack([(x * 8) % 256, (y * 6) % 256, (x + y) % 256,
                     (x * y) % 200], -1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(cmyk, "CMYK").save(buffer, "JPEG", quality=95)
    files["cmyk.jpg"] = buffer.getvalue()
    palette = Image.fromarray(((x // 5 + y // 5) % 4).astype(np.uint8), "P")
    palette.putpalette([255, 0, 0, 0, 160, 0, 0, 0, 255, 250, 250, 0] + [0] * 756)
    buffer = io.BytesIO()
    palette.save(buffer, "PNG", transparency=2)
    files["palette_transparent.png"] = buffer.getvalue()
    return files
