"""A development stand-in for `tensorflow_model_server`'s gRPC API.

Implements TF Serving's `PredictionService.Predict` and `GetModelMetadata`
and `ModelService.GetModelStatus` for one model, so that the standard
`tensorflow-serving-api` stubs (and `serving.client`) work against it exactly
as against stock TF Serving. For development and tests only: production
serving is the `tensorflow/serving` container (see README_SERVING.md).

Like `tensorflow_model_server`, it imports nothing of this project: only
TensorFlow and TensorFlow Text (whose ops the exported graph may use) load
the SavedModel. It serves the highest integer version under
`MODEL_BASE_PATH/MODEL_NAME/`, polls for newer ones and swaps them in without
a restart (after replaying the version's warm-up requests), caps request
sizes, maps bad requests to `INVALID_ARGUMENT`, and on SIGTERM stops taking
requests, finishes those in flight and exits.

Usage:

```
python -m serving.server --model-base-path /models --model-name cmaclip \
    --port 8500
```
"""

import argparse
import concurrent.futures
import dataclasses
import logging
import os
import re
import signal
import struct
import sys
import threading

import grpc
import tensorflow as tf
import tensorflow_text  # noqa: F401  Registers the TF Text ops graphs may use.
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

logger = logging.getLogger("serving.server")

DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# TF Serving replays at most this many warm-up records.
MAX_WARMUP_RECORDS = 1000
MiB = 1 << 20

# Inputs with these names get the per-item checks below: they are the
# contract of `cmaclip_tf.export` (other inputs are only type-checked).
IMAGE_BYTES_INPUT = "image_bytes"
TEXT_INPUT = "text"

_State = get_model_status_pb2.ModelVersionStatus.State


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """What one request may hold; larger requests are `INVALID_ARGUMENT`.

    Args:
        max_request_bytes: int. gRPC's receive limit for a whole request
            (larger ones fail with `RESOURCE_EXHAUSTED` before any parsing).
        max_batch_size: int. Most items in one request.
        max_image_bytes: int. Most encoded bytes of one image.
        max_image_pixels: int. Most pixels of one decoded image, all of a
            GIF's frames counted (read from the file header before decoding,
            against decompression bombs).
        max_request_pixels: int. Most decoded pixels in one request.
        max_text_bytes: int. Most UTF-8 bytes of one text.
        max_request_text_bytes: int. Most text bytes in one request: the
            graph tokenizer's time grows with the longest word times the
            batch's text, so this bounds one request's CPU time.
    """

    max_request_bytes: int = 64 * MiB
    max_batch_size: int = 256
    max_image_bytes: int = 8 * MiB
    max_image_pixels: int = 4096 * 4096
    max_request_pixels: int = 64 * 1024 * 1024
    max_text_bytes: int = 8192
    max_request_text_bytes: int = 64 * 1024


class RequestError(Exception):
    """A request the server refuses; carries the gRPC status to return."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message):
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


# --- Image headers: format and size without decoding. ---


def image_format_and_size(data):
    """`(format, width, height)` from an encoded image's header.

    Format is `"jpeg"`, `"png"`, `"gif"`, `"bmp"`, `"webp"` or None when the
    bytes start like none of them; width and height are None when the header
    is too short or malformed to tell (decoding will then fail on its own),
    and for WebP.
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
    """How many frames a GIF holds (TF decodes them all, even for one)."""
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


# --- One loaded version. ---


class ServableVersion:
    """One loaded SavedModel version and its signatures."""

    def __init__(self, name, version, path):
        self.name = name
        self.version = version
        self.path = path
        self.module = tf.saved_model.load(path)
        self.signatures = dict(self.module.signatures)
        if not self.signatures:
            raise ValueError(f"{path} has no serving signatures.")
        # name -> {input name: TensorSpec}
        self.input_specs = {
            name: dict(fn.structured_input_signature[1])
            for name, fn in self.signatures.items()
        }
        self.signature_defs = _read_signature_defs(path)

    def run(self, signature_name, inputs):
        """Runs a signature on numpy inputs; returns numpy outputs."""
        function = self.signatures[signature_name]
        specs = self.input_specs[signature_name]
        tensors = {
            key: tf.constant(value, dtype=specs[key].dtype)
            for key, value in inputs.items()
        }
        outputs = function(**tensors)
        return {key: value.numpy() for key, value in outputs.items()}


def _read_signature_defs(path):
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    return saved_model.meta_graphs[0].signature_def


def list_versions(model_dir):
    """Integer version folders under `model_dir` that hold a SavedModel."""
    try:
        entries = os.listdir(model_dir)
    except FileNotFoundError:
        return []
    versions = []
    for entry in entries:
        if entry.isdigit() and os.path.isfile(
            os.path.join(model_dir, entry, "saved_model.pb")
        ):
            versions.append(int(entry))
    return sorted(versions)


# --- Request handling, independent of gRPC. ---


class ModelServer:
    """Loads, hot-swaps and runs the versions of one model.

    Serves the highest version present (TF Serving's default "latest"
    policy); a poller loads a newer version in the background and swaps it
    in once it is warmed up, so requests never wait for a load.

    Args:
        model_base_path: the folder holding `model_name/<version>/`.
        model_name: the model's name, as clients put it in `model_spec`.
        limits: `RequestLimits`.
    """

    def __init__(self, model_base_path, model_name, limits=RequestLimits()):
        self.model_name = model_name
        self.model_dir = os.path.join(model_base_path, model_name)
        self.limits = limits
        self._current = None
        self._states = {}  # version -> (state, error message)
        self._failed = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller = None

    # Loading.

    @property
    def current(self):
        return self._current

    def poll_once(self):
        """Loads the highest version if it is not the one served; True if swapped."""
        versions = [v for v in list_versions(self.model_dir) if v not in self._failed]
        if not versions:
            return False
        latest = versions[-1]
        current = self._current
        if current is not None and current.version == latest:
            return False
        with self._lock:
            self._states[latest] = (_State.LOADING, "")
        try:
            servable = ServableVersion(
                self.model_name, latest, os.path.join(self.model_dir, str(latest))
            )
            self._warm_up(servable)
        except Exception as error:  # A bad version must not stop the server.
            logger.error("Could not load version %d: %s", latest, error)
            with self._lock:
                self._failed.add(latest)
                self._states[latest] = (_State.END, f"load failed: {error}")
            return False
        with self._lock:
            self._current = servable
            self._states[latest] = (_State.AVAILABLE, "")
            if current is not None:
                # In-flight requests keep their reference until they finish.
                self._states[current.version] = (_State.END, "")
        logger.info(
            "Serving %s version %d from %s", self.model_name, latest, servable.path
        )
        return True

    def start_polling(self, interval_seconds):
        def poll():
            while not self._stop.wait(interval_seconds):
                try:
                    self.poll_once()
                except Exception:  # Keep polling whatever happens.
                    logger.exception("Version poll failed")

        self._poller = threading.Thread(target=poll, name="version-poller", daemon=True)
        self._poller.start()

    def stop_polling(self):
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)

    def _warm_up(self, servable):
        """Replays `assets.extra/tf_serving_warmup_requests`, as TF Serving does."""
        path = os.path.join(servable.path, WARMUP_FILE)
        if not os.path.isfile(path):
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if not log.HasField("predict_log"):
                continue
            request = log.predict_log.request
            signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
            inputs = self._parse_inputs(servable, signature, request)
            servable.run(signature, inputs)
            count += 1
        logger.info("Warmed up version %d with %d requests", servable.version, count)
        return count

    # Serving.

    def _servable_for(self, model_spec):
        if model_spec.name != self.model_name:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: model {model_spec.name!r}; "
                f"this server serves {self.model_name!r}.",
            )
        if model_spec.version_label:
            raise _invalid(
                "Version labels are not supported here; ask for a version "
                "number or none (the latest)."
            )
        servable = self._current
        if servable is None:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: no version of "
                f"{self.model_name!r} is loaded yet (looking in {self.model_dir}).",
            )
        if (
            model_spec.HasField("version")
            and model_spec.version.value != servable.version
        ):
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: {self.model_name!r} version "
                f"{model_spec.version.value}; version {servable.version} is served.",
            )
        return servable

    def predict(self, request):
        """A `PredictRequest` to a `PredictResponse`; raises `RequestError`."""
        servable = self._servable_for(request.model_spec)
        signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
        inputs = self._parse_inputs(servable, signature, request)
        output_names = list(servable.signatures[signature].structured_outputs)
        wanted = list(request.output_filter) or output_names
        unknown = sorted(set(wanted) - set(output_names))
        if unknown:
            raise _invalid(
                f"output_filter names {unknown}, which signature {signature!r} "
                f"does not have; it has {sorted(output_names)}."
            )
        try:
            outputs = servable.run(signature, inputs)
        except tf.errors.InvalidArgumentError as error:
            raise _invalid(readable_tf_error(error.message)) from None
        except tf.errors.ResourceExhaustedError as error:
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, readable_tf_error(error.message)
            ) from None
        except UnicodeDecodeError as error:
            # TF quotes the offending input in the message; not valid UTF-8.
            raise _invalid(f"The model rejected the input ({error}).") from None
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.model_name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature
        for key in wanted:
            response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
        return response

    def _parse_inputs(self, servable, signature, request):
        if signature not in servable.signatures:
            raise _invalid(
                f"Serving signature name: {signature!r} not found in signature "
                f"def; the model has {sorted(servable.signatures)}."
            )
        specs = servable.input_specs[signature]
        missing = sorted(set(specs) - set(request.inputs))
        extra = sorted(set(request.inputs) - set(specs))
        if missing or extra:
            raise _invalid(
                f"Signature {signature!r} takes inputs {sorted(specs)}; the "
                f"request is missing {missing} and has unexpected {extra}."
            )
        inputs = {}
        batch_sizes = {}
        for key, spec in specs.items():
            proto = request.inputs[key]
            if proto.dtype != spec.dtype.as_datatype_enum:
                given = tf.dtypes.as_dtype(proto.dtype).name if proto.dtype else "unset"
                raise _invalid(
                    f"Input {key!r} has dtype {given}; signature {signature!r} "
                    f"expects {spec.dtype.name}."
                )
            try:
                value = tf.make_ndarray(proto)
            except Exception as error:  # Malformed TensorProto.
                raise _invalid(
                    f"Input {key!r} is not a valid tensor: {error}"
                ) from None
            if not spec.shape.is_compatible_with(value.shape):
                raise _invalid(
                    f"Input {key!r} has shape {list(value.shape)}; signature "
                    f"{signature!r} expects {spec.shape.as_list()} (None: any size)."
                )
            if value.ndim:
                batch_sizes[key] = value.shape[0]
            inputs[key] = value
        self._check_batch(batch_sizes)
        if IMAGE_BYTES_INPUT in inputs and specs[IMAGE_BYTES_INPUT].dtype == tf.string:
            self._check_images(inputs[IMAGE_BYTES_INPUT])
        if TEXT_INPUT in inputs and specs[TEXT_INPUT].dtype == tf.string:
            self._check_texts(inputs[TEXT_INPUT])
        return inputs

    def _check_batch(self, batch_sizes):
        if not batch_sizes:
            return
        sizes = set(batch_sizes.values())
        if len(sizes) > 1:
            raise _invalid(
                "Inputs have different batch sizes: "
                + ", ".join(f"{k}={v}" for k, v in sorted(batch_sizes.items()))
                + "; send one item per row in each."
            )
        (size,) = sizes
        if size == 0:
            raise _invalid("Empty batch: send at least one item.")
        if size > self.limits.max_batch_size:
            raise _invalid(
                f"Batch of {size} items; this server takes at most "
                f"{self.limits.max_batch_size} per request (split the batch)."
            )

    def _check_images(self, images):
        total_pixels = 0
        for index, data in enumerate(images.reshape(-1)):
            if len(data) > self.limits.max_image_bytes:
                raise _invalid(
                    f"image_bytes[{index}] is {len(data)} bytes; the cap is "
                    f"{self.limits.max_image_bytes} (--max-image-bytes). "
                    "Downscale or recompress it."
                )
            image_format, width, height = image_format_and_size(data)
            if image_format is None:
                raise _invalid(
                    f"image_bytes[{index}] is not a JPEG, PNG, GIF, BMP or WebP image "
                    f"(it starts with {bytes(data[:8])!r})."
                )
            if width is not None:
                frames = gif_frame_count(data) if image_format == "gif" else 1
                pixels = width * height * frames
                if pixels > self.limits.max_image_pixels:
                    shape = f"{width}x{height}" + (
                        f" x {frames} frames" if frames > 1 else ""
                    )
                    raise _invalid(
                        f"image_bytes[{index}] is a {shape} {image_format}; the "
                        f"cap is {self.limits.max_image_pixels} decoded pixels "
                        "(--max-image-pixels). Downscale it."
                    )
                total_pixels += pixels
        if total_pixels > self.limits.max_request_pixels:
            raise _invalid(
                f"The images hold {total_pixels} pixels in all; one request may "
                f"hold {self.limits.max_request_pixels} (split the batch)."
            )

    def _check_texts(self, texts):
        texts = texts.reshape(-1)
        for index, text in enumerate(texts):
            if len(text) > self.limits.max_text_bytes:
                raise _invalid(
                    f"text[{index}] is {len(text)} bytes; the cap is "
                    f"{self.limits.max_text_bytes} (--max-text-bytes). Shorten it: "
                    "the model reads only its first few dozen tokens."
                )
        total = sum(len(text) for text in texts)
        if total > self.limits.max_request_text_bytes:
            raise _invalid(
                f"The texts hold {total} bytes in all; one request may hold "
                f"{self.limits.max_request_text_bytes} (--max-request-text-bytes). "
                "Split the batch."
            )
        for index, text in enumerate(texts):
            try:
                bytes(text).decode("utf-8")
            except UnicodeDecodeError as error:
                raise _invalid(
                    f"text[{index}] is not valid UTF-8 ({error.reason} at byte "
                    f"{error.start})."
                ) from None

    def model_metadata(self, request):
        servable = self._servable_for(request.model_spec)
        fields = list(request.metadata_field)
        if not fields:
            raise _invalid(
                "GetModelMetadataRequest must ask for metadata_field 'signature_def'."
            )
        unsupported = [f for f in fields if f != "signature_def"]
        if unsupported:
            raise _invalid(
                f"Metadata field(s) {unsupported} are not supported; "
                "only 'signature_def'."
            )
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self.model_name
        response.model_spec.version.value = servable.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, value in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(value)
        response.metadata["signature_def"].Pack(signature_map)
        return response

    def model_status(self, request):
        spec = request.model_spec
        with self._lock:
            states = dict(self._states)
        if spec.name != self.model_name or not states:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Could not find any versions of model {spec.name!r}.",
            )
        if spec.HasField("version"):
            if spec.version.value not in states:
                raise RequestError(
                    grpc.StatusCode.NOT_FOUND,
                    f"Could not find version {spec.version.value} of model "
                    f"{spec.name!r}.",
                )
            states = {spec.version.value: states[spec.version.value]}
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in sorted(states, reverse=True):
            state, message = states[version]
            status = response.model_version_status.add()
            status.version = version
            status.state = state
            if message:
                status.status.error_code = 2  # tensorflow.error.UNKNOWN
                status.status.error_message = message
        return response


_TF_CONTEXT_LINE = re.compile(
    r"^(Graph execution error:|Detected at node|<stack traces unavailable>|\s*\[\[)"
)


def readable_tf_error(message):
    """The cause of a TF runtime error without its graph context.

    Drops "Graph execution error", "Detected at node ..." and
    "[[{{node ...}}]]" lines, which say nothing to a client.
    """
    lines = [
        re.sub(r"\s*\[Op:[^\]]*\]$", "", line).strip()
        for line in message.splitlines()
        if line.strip() and not _TF_CONTEXT_LINE.match(line)
    ]
    return " ".join(lines) or message.strip()


# --- gRPC services. ---


def _handle(context, call, request):
    try:
        return call(request)
    except RequestError as error:
        context.abort(error.code, error.message)
    except Exception as error:  # Never let one request take the server down.
        logger.exception("Request failed")
        context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """TF Serving's `PredictionService`: Predict and GetModelMetadata."""

    def __init__(self, model_server):
        self.model_server = model_server

    def Predict(self, request, context):
        return _handle(context, self.model_server.predict, request)

    def GetModelMetadata(self, request, context):
        return _handle(context, self.model_server.model_metadata, request)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """TF Serving's `ModelService`: GetModelStatus."""

    def __init__(self, model_server):
        self.model_server = model_server

    def GetModelStatus(self, request, context):
        return _handle(context, self.model_server.model_status, request)


def build_grpc_server(model_server, host="127.0.0.1", port=8500, workers=8):
    """A started-to-be gRPC server and the port it bound (`port=0`: any free)."""
    limits = model_server.limits
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="predict"
        ),
        # Beyond this many queued RPCs, clients get RESOURCE_EXHAUSTED.
        maximum_concurrent_rpcs=workers * 8,
        options=[
            ("grpc.max_receive_message_length", limits.max_request_bytes),
            ("grpc.max_send_message_length", limits.max_request_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(model_server), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(model_server), server
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound_port = server.add_insecure_port(address)
    if not bound_port:
        raise OSError(f"Could not bind {address}; is the port in use?")
    return server, bound_port


def parse_args(argv):
    defaults = RequestLimits()
    parser = argparse.ArgumentParser(
        prog="python -m serving.server",
        description="Development stand-in for tensorflow_model_server (gRPC).",
    )
    parser.add_argument(
        "--model-base-path",
        required=True,
        help="Folder holding MODEL_NAME/<version>/ SavedModels.",
    )
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--port", type=int, default=8500, help="0: any free port.")
    parser.add_argument(
        "--host", default="127.0.0.1", help="Address to bind (default: loopback only)."
    )
    parser.add_argument(
        "--workers", type=int, default=8, help="Requests run concurrently."
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=1.0,
        help="How often to look for a newer version.",
    )
    parser.add_argument(
        "--grace-seconds",
        type=float,
        default=30.0,
        help="On SIGTERM, how long in-flight requests may finish.",
    )
    parser.add_argument(
        "--max-request-bytes", type=int, default=defaults.max_request_bytes
    )
    parser.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size)
    parser.add_argument("--max-image-bytes", type=int, default=defaults.max_image_bytes)
    parser.add_argument(
        "--max-image-pixels", type=int, default=defaults.max_image_pixels
    )
    parser.add_argument(
        "--max-request-pixels", type=int, default=defaults.max_request_pixels
    )
    parser.add_argument("--max-text-bytes", type=int, default=defaults.max_text_bytes)
    parser.add_argument(
        "--max-request-text-bytes", type=int, default=defaults.max_request_text_bytes
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    model_dir = os.path.join(args.model_base_path, args.model_name)
    if not os.path.isdir(model_dir):
        sys.exit(
            f"{model_dir} does not exist; export a model there first "
            "(python -m serving.export --workdir W --model-base-path "
            f"{args.model_base_path} --model-name {args.model_name})."
        )
    limits = RequestLimits(
        max_request_bytes=args.max_request_bytes,
        max_batch_size=args.max_batch_size,
        max_image_bytes=args.max_image_bytes,
        max_image_pixels=args.max_image_pixels,
        max_request_pixels=args.max_request_pixels,
        max_text_bytes=args.max_text_bytes,
        max_request_text_bytes=args.max_request_text_bytes,
    )
    model_server = ModelServer(args.model_base_path, args.model_name, limits)
    if not model_server.poll_once():
        logger.warning("No loadable version in %s yet; waiting for one.", model_dir)
    model_server.start_polling(args.poll_seconds)

    server, port = build_grpc_server(model_server, args.host, args.port, args.workers)
    stop = threading.Event()

    def request_stop(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server.start()
    current = model_server.current
    print(
        f"Serving model {args.model_name!r} version "
        f"{current.version if current else None} on {args.host}:{port}",
        flush=True,
    )
    while not stop.wait(0.5):
        pass
    # New RPCs are refused at once; in-flight ones get `grace_seconds`.
    logger.info(
        "Stopping: finishing in-flight requests (grace %.0fs)", args.grace_seconds
    )
    server.stop(args.grace_seconds).wait()
    model_server.stop_polling()
    logger.info("Stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
