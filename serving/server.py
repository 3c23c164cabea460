"""A development stand-in for `tensorflow_model_server`'s gRPC API.

Implements TF Serving's `PredictionService.Predict` and `GetModelMetadata`
and `ModelService.GetModelStatus` for one model, so that the standard
`tensorflow-serving-api` stubs (and `serving.client`) work against it exactly
as against stock TF Serving. For development and tests only: production
serving is the `tensorflow/serving` container (see docs/serving.md, "Serving
with TensorFlow Serving").

Like `tensorflow_model_server`, it loads the SavedModel with TensorFlow and
TensorFlow Text only (of this project it reads nothing but the limits'
definition, `cmaclip_tf.limits.serving_limits`, the header reader
`cmaclip_tf.limits.image_headers` and the version picking of
`cmaclip_tf.inference.model_versions`, and, as a command, the quieting of
TensorFlow's log lines, `cmaclip_tf.runtime.tensorflow_logs`). The pieces:

- `serving.model_versions`: serves the highest integer version under
  `MODEL_BASE_PATH/MODEL_NAME/`, polls for newer ones and swaps them in
  without a restart, after replaying the version's warm-up requests;
- `serving.request_validation` (with `cmaclip_tf.limits.image_headers`): caps request
  sizes and maps bad requests to `INVALID_ARGUMENT`;
- `serving.prediction_service`, `serving.model_service`: the servicers;
- this module: the gRPC server and the command line; on SIGTERM it stops
  taking requests, finishes those in flight and exits.

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
import signal
import sys
import threading

if __name__ == "__main__":
    # As a command: no TensorFlow start-up or per-row log lines (--debug).
    from cmaclip_tf.runtime.tensorflow_logs import debug_requested
    from cmaclip_tf.runtime.tensorflow_logs import quiet_tensorflow

    quiet_tensorflow(debug_requested())

import grpc  # noqa: E402
from tensorflow_serving.apis import model_service_pb2_grpc  # noqa: E402
from tensorflow_serving.apis import prediction_service_pb2_grpc  # noqa: E402

from cmaclip_tf.limits.serving_limits import ServingLimits  # noqa: E402
from serving.model_service import ModelService  # noqa: E402
from serving.model_versions import ModelVersions  # noqa: E402
from serving.prediction_service import PredictionService  # noqa: E402

logger = logging.getLogger("serving.server")


def build_grpc_server(versions, limits, host="127.0.0.1", port=8500, workers=8):
    """A gRPC server, not yet started, and the port it bound (`port=0`: any free).

    Args:
        versions: `ModelVersions`, the model to serve.
        limits: `ServingLimits`.
        host: string. Address to bind.
        port: int. Port to bind; 0 picks a free one.
        workers: int. Requests run concurrently.

    Example:
    ```python
    server, port = build_grpc_server(versions, ServingLimits(), port=0)
    server.start()
    ```
    """
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
        PredictionService(versions, limits), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(versions), server
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound_port = server.add_insecure_port(address)
    if not bound_port:
        raise OSError(f"Could not bind {address}; is the port in use?")
    return server, bound_port


def parse_args(argv):
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
    limits = parser.add_argument_group("request limits (see ServingLimits)")
    defaults = ServingLimits()
    for field, flag in ServingLimits.flag_names().items():
        default = getattr(defaults, field)
        limits.add_argument(flag, type=int, default=default, dest=field,
                            help=f"Default {default}.")
    parser.add_argument(
        "--debug", action="store_true", help="TensorFlow's own log lines."
    )
    return parser.parse_args(argv)


def serving_limits(args):
    """The `ServingLimits` the parsed flags ask for."""
    return ServingLimits(
        **{field.name: getattr(args, field.name)
           for field in dataclasses.fields(ServingLimits)}
    )


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
    limits = serving_limits(args)
    versions = ModelVersions(args.model_base_path, args.model_name, limits)
    if not versions.poll_once():
        logger.warning("No loadable version in %s yet; waiting for one.", model_dir)
    versions.start_polling(args.poll_seconds)

    server, port = build_grpc_server(
        versions, limits, args.host, args.port, args.workers
    )
    stop = threading.Event()

    def request_stop(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server.start()
    current = versions.current
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
    versions.stop_polling()
    logger.info("Stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
