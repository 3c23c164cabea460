"""What one serving request may hold: the one definition of every limit.

The exported graph (`cmaclip_tf.inference.export`, its `text` check), the development
server's request validation (`serving.request_validation`) and the server's
flags (`python -m serving.server --max-...`) all read their defaults here.
`MAX_IMAGE_PIXELS` is the one pixel limit of every path that decodes an
image: training and evaluation input, feature caching, `Predictor`,
`serving.predict`, the server (`cmaclip_tf.limits.image_headers`
reads it from the header, before decoding).
This module imports nothing, so that the server can read it without loading
the library's models.
"""

import dataclasses

MiB = 1 << 20
# Most decoded pixels of one image, all of a GIF's frames counted: 8192 x
# 8192 (64 Mi), above real catalogue photos (a 50 Mpx camera is 8688 x
# 5792). `--max-image-pixels` (training, serving.predict, the server) or
# `Predictor.load(..., max_image_pixels=N)` raises it.
MAX_IMAGE_PIXELS = 8192 * 8192


@dataclasses.dataclass(frozen=True)
class ServingLimits:
    """What one request may hold; larger requests are `INVALID_ARGUMENT`.

    Args:
        max_request_bytes: int. gRPC's receive limit for a whole request
            (larger ones fail with `RESOURCE_EXHAUSTED` before any parsing).
            Defaults to 64 MiB.
        max_batch_size: int. Most items in one request. Defaults to 256.
        max_image_bytes: int. Most encoded bytes of one image. Defaults to
            8 MiB.
        max_image_pixels: int. Most pixels of one decoded image, all of a
            GIF's frames counted (read from the file header before decoding,
            against decompression bombs). Defaults to `MAX_IMAGE_PIXELS`
            (8192 * 8192), the limit of every other path.
        max_request_pixels: int. Most decoded pixels in one request.
            Defaults to 64 Mi.
        max_text_bytes: int. Most UTF-8 bytes of one text; the exported
            graph refuses longer texts too (the model reads only its first
            few dozen tokens, and BPE time grows with the longest word).
            Defaults to 8192.
        max_request_text_bytes: int. Most text bytes in one request: the
            graph tokenizer's time grows with the longest word times the
            batch's text, so this bounds one request's CPU time. Defaults to
            64 KiB.

    Example:
    ```python
    limits = ServingLimits(max_batch_size=32)
    limits.max_text_bytes  # 8192, the default
    ```
    """

    max_request_bytes: int = 64 * MiB
    max_batch_size: int = 256
    max_image_bytes: int = 8 * MiB
    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_request_pixels: int = 64 * MiB
    max_text_bytes: int = 8192
    max_request_text_bytes: int = 64 * 1024

    @classmethod
    def flag_names(cls):
        """`{field: "--flag-name"}`, the server's command-line flags."""
        return {
            field.name: "--" + field.name.replace("_", "-")
            for field in dataclasses.fields(cls)
        }
