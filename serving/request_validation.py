"""Checks a `PredictRequest`'s inputs against a signature and the limits.

Everything here runs before the model: a request that fails gets
`INVALID_ARGUMENT` with a message that says what was wrong and what to do,
never a TensorFlow stack trace. Inputs named `image_bytes` and `text` get
per-item checks (format, size, UTF-8): they are the contract of
`cmaclip_tf.inference.export`; other inputs are only checked for dtype and shape.
"""

import functools
import logging

import grpc
import tensorflow as tf

from cmaclip_tf.limits.image_headers import image_pixels
from cmaclip_tf.limits.serving_limits import ServingLimits

logger = logging.getLogger("serving.server")

IMAGE_BYTES_INPUT = "image_bytes"
TEXT_INPUT = "text"
_FLAGS = ServingLimits.flag_names()


class RequestError(Exception):
    """A request the server refuses; carries the gRPC status to return.

    Args:
        code: `grpc.StatusCode`.
        message: string. What was wrong and what to do.
    """

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def invalid_argument(message):
    """A `RequestError` with `INVALID_ARGUMENT`, TF Serving's bad-request status."""
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def answers_errors(rpc):
    """Decorates a servicer's RPC method: `RequestError`s become its status.

    Any other exception is logged and answered `INTERNAL`, so that one
    request never takes the server down.
    """

    @functools.wraps(rpc)
    def wrapper(self, request, context):
        try:
            return rpc(self, request, context)
        except RequestError as error:
            context.abort(error.code, error.message)
        except Exception as error:  # Never let one request take the server down.
            logger.exception("Request failed")
            context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")

    return wrapper


def validate_inputs(input_specs, signature_name, request_inputs, limits):
    """A request's `inputs` as numpy arrays, checked; raises `RequestError`.

    Args:
        input_specs: dict of input name to `tf.TensorSpec`, the signature's.
        signature_name: string, for messages.
        request_inputs: the request's map of input name to `TensorProto`.
        limits: `ServingLimits`.

    Returns:
        dict of input name to numpy array.

    Example:
    ```python
    inputs = validate_inputs(servable.input_specs["serving_default"],
                             "serving_default", request.inputs, ServingLimits())
    ```
    """
    missing = sorted(set(input_specs) - set(request_inputs))
    extra = sorted(set(request_inputs) - set(input_specs))
    if missing or extra:
        raise invalid_argument(
            f"Signature {signature_name!r} takes inputs {sorted(input_specs)}; "
            f"the request is missing {missing} and has unexpected {extra}."
        )
    inputs = {
        key: _input_array(key, spec, request_inputs[key], signature_name)
        for key, spec in input_specs.items()
    }
    check_batch_size(
        {key: value.shape[0] for key, value in inputs.items() if value.ndim},
        limits,
    )
    if _is_string(input_specs, IMAGE_BYTES_INPUT):
        check_images(inputs[IMAGE_BYTES_INPUT], limits)
    if _is_string(input_specs, TEXT_INPUT):
        check_texts(inputs[TEXT_INPUT], limits)
    return inputs


def _is_string(input_specs, name):
    return name in input_specs and input_specs[name].dtype == tf.string


def _input_array(key, spec, proto, signature_name):
    """One input's `TensorProto` as numpy, after its dtype and shape checks."""
    if proto.dtype != spec.dtype.as_datatype_enum:
        given = tf.dtypes.as_dtype(proto.dtype).name if proto.dtype else "unset"
        raise invalid_argument(
            f"Input {key!r} has dtype {given}; signature {signature_name!r} "
            f"expects {spec.dtype.name}."
        )
    try:
        value = tf.make_ndarray(proto)
    except Exception as error:  # Malformed TensorProto.
        raise invalid_argument(f"Input {key!r} is not a valid tensor: {error}") from None
    if not spec.shape.is_compatible_with(value.shape):
        raise invalid_argument(
            f"Input {key!r} has shape {list(value.shape)}; signature "
            f"{signature_name!r} expects {spec.shape.as_list()} (None: any size)."
        )
    return value


def check_batch_size(batch_sizes, limits):
    """One batch size across inputs, at least one item, at most the cap.

    Args:
        batch_sizes: dict of input name to its first dimension (inputs of
            rank 0 left out).
        limits: `ServingLimits`.
    """
    if not batch_sizes:
        return
    sizes = set(batch_sizes.values())
    if len(sizes) > 1:
        raise invalid_argument(
            "Inputs have different batch sizes: "
            + ", ".join(f"{k}={v}" for k, v in sorted(batch_sizes.items()))
            + "; send one item per row in each."
        )
    (size,) = sizes
    if size == 0:
        raise invalid_argument("Empty batch: send at least one item.")
    if size > limits.max_batch_size:
        raise invalid_argument(
            f"Batch of {size} items; this server takes at most "
            f"{limits.max_batch_size} per request (split the batch)."
        )


def check_images(images, limits):
    """Encoded images: a known format, within the byte and pixel caps.

    Pixels are read from each header (GIF frames counted), so that nothing
    is decoded before the caps hold.

    Args:
        images: numpy array of bytes objects, any shape.
        limits: `ServingLimits`.
    """
    total_pixels = 0
    for index, data in enumerate(images.reshape(-1)):
        if len(data) > limits.max_image_bytes:
            raise invalid_argument(
                f"image_bytes[{index}] is {len(data)} bytes; the cap is "
                f"{limits.max_image_bytes} ({_FLAGS['max_image_bytes']}). "
                "Downscale or recompress it."
            )
        image_format, width, height, frames = image_pixels(data)
        if image_format is None:
            raise invalid_argument(
                f"image_bytes[{index}] is not a JPEG, PNG, GIF, BMP or WebP image "
                f"(it starts with {bytes(data[:8])!r})."
            )
        if width is None:
            continue  # Too short to tell: decoding fails on its own.
        pixels = width * height * frames
        if pixels > limits.max_image_pixels:
            shape = f"{width}x{height}" + (f" x {frames} frames" if frames > 1 else "")
            raise invalid_argument(
                f"image_bytes[{index}] is a {shape} {image_format}; the cap is "
                f"{limits.max_image_pixels} decoded pixels "
                f"({_FLAGS['max_image_pixels']}). Downscale it."
            )
        total_pixels += pixels
    if total_pixels > limits.max_request_pixels:
        raise invalid_argument(
            f"The images hold {total_pixels} pixels in all; one request may "
            f"hold {limits.max_request_pixels} (split the batch)."
        )


def check_texts(texts, limits):
    """Texts: within the per-text and per-request byte caps, valid UTF-8.

    Args:
        texts: numpy array of bytes objects, any shape.
        limits: `ServingLimits`.
    """
    texts = texts.reshape(-1)
    for index, text in enumerate(texts):
        if len(text) > limits.max_text_bytes:
            raise invalid_argument(
                f"text[{index}] is {len(text)} bytes; the cap is "
                f"{limits.max_text_bytes} ({_FLAGS['max_text_bytes']}). Shorten "
                "it: the model reads only its first few dozen tokens."
            )
    total = sum(len(text) for text in texts)
    if total > limits.max_request_text_bytes:
        raise invalid_argument(
            f"The texts hold {total} bytes in all; one request may hold "
            f"{limits.max_request_text_bytes} "
            f"({_FLAGS['max_request_text_bytes']}). Split the batch."
        )
    for index, text in enumerate(texts):
        try:
            bytes(text).decode("utf-8")
        except UnicodeDecodeError as error:
            raise invalid_argument(
                f"text[{index}] is not valid UTF-8 ({error.reason} at byte "
                f"{error.start})."
            ) from None
