"""Classifies image-text pairs with a served CMA-CLIP model over gRPC.

Speaks only TF Serving's standard API (`tensorflow-serving-api` stubs), so
the same command works against stock `tensorflow_model_server` and against
the development server (`serving.server`).

One pair:

```
python -m serving.client --server localhost:8500 --model-name cmaclip \
    --image dress.jpg --text "Red striped cotton dress"
```

Many pairs: `--manifest rows.csv` (columns `image` and `text`; image paths
relative to the manifest) classifies them in batches and writes a CSV with
each task's label, score and image weight λ (`--output`, default stdout).
"""

import argparse
import csv
import os
import sys

if __name__ == "__main__":
    # As a command: no TensorFlow start-up or per-row log lines (--debug).
    from cmaclip_tf.runtime.tensorflow_logs import debug_requested
    from cmaclip_tf.runtime.tensorflow_logs import quiet_tensorflow

    quiet_tensorflow(debug_requested())

import grpc  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2  # noqa: E402
from tensorflow_serving.apis import prediction_service_pb2_grpc  # noqa: E402

from cmaclip_tf.limits.image_headers import IMAGE_TOO_LARGE
from cmaclip_tf.limits.image_headers import oversized_image

LABEL_SUFFIX = "_label"
SCORE_SUFFIX = "_score"
IMAGE_WEIGHT_SUFFIX = "_image_weight"
ACCEPTED_SUFFIX = "_accepted"


def make_predict_request(
    model_name, image_bytes, texts, signature_name="serving_default", version=None
):
    """A `PredictRequest` for the `serving_default` signature.

    Args:
        model_name: string. The served model's name.
        image_bytes: list of encoded images (bytes).
        texts: list of strings, one per image.
        signature_name: string.
        version: optional int. Defaults to the latest version served.
    """
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    request.inputs["image_bytes"].CopyFrom(
        tf.make_tensor_proto(list(image_bytes), dtype=tf.string)
    )
    request.inputs["text"].CopyFrom(
        tf.make_tensor_proto(
            [t.encode("utf-8") if isinstance(t, str) else t for t in texts],
            dtype=tf.string,
        )
    )
    return request


def parse_predict_response(response):
    """One dict per row: `{task: {"label", "score", "image_weight", "accepted"}}`.

    `accepted` (whether the score reaches the export's 90%-precision
    threshold) is present when the served model returns it.
    """
    outputs = {key: tf.make_ndarray(value) for key, value in response.outputs.items()}
    tasks = sorted(
        key[: -len(LABEL_SUFFIX)] for key in outputs if key.endswith(LABEL_SUFFIX)
    )
    rows = []
    num_rows = len(outputs[tasks[0] + LABEL_SUFFIX]) if tasks else 0
    for index in range(num_rows):
        row = {}
        for task in tasks:
            label = outputs[task + LABEL_SUFFIX][index]
            row[task] = {
                "label": label.decode("utf-8")
                if isinstance(label, bytes)
                else str(label),
                "score": float(outputs[task + SCORE_SUFFIX][index]),
                "image_weight": float(outputs[task + IMAGE_WEIGHT_SUFFIX][index]),
            }
            if task + ACCEPTED_SUFFIX in outputs:
                row[task]["accepted"] = bool(outputs[task + ACCEPTED_SUFFIX][index])
        rows.append(row)
    return rows


class CMACLIPClient:
    """A thin client over TF Serving's `PredictionService` stub.

    Args:
        server: `host:port` of the gRPC endpoint.
        model_name: the served model's name.
        version: optional int. Defaults to the latest version served.
        timeout: float. Seconds per request.
        max_message_bytes: int. gRPC send/receive limit.
    """

    def __init__(
        self, server, model_name, version=None, timeout=30.0, max_message_bytes=64 << 20
    ):
        self.model_name = model_name
        self.version = version
        self.timeout = timeout
        self.channel = grpc.insecure_channel(
            server,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
            ],
        )
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def classify(self, image_bytes, texts):
        """Rows of `{task: {"label", "score", "image_weight"}}`."""
        request = make_predict_request(
            self.model_name, image_bytes, texts, version=self.version
        )
        response = self.stub.Predict(request, timeout=self.timeout)
        return parse_predict_response(response)

    def close(self):
        self.channel.close()


def read_manifest(path):
    """`(image path, text)` rows of a CSV with `image` and `text` columns."""
    base = os.path.dirname(os.path.abspath(path))
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = {"image", "text"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(
                f"{path} needs columns 'image' and 'text' (a header row); "
                f"missing {sorted(missing)}."
            )
        return [(os.path.join(base, row["image"]), row["text"]) for row in reader]


def classify_manifest(client, rows, batch_size=32):
    """Yields `(image path, text, result or None, error or "")` per row.

    A batch with a bad row (an unreadable file, an image over the pixel
    limit, which is never sent since TF Serving would decode it whole, or
    bytes the server rejects as `INVALID_ARGUMENT`) is retried row by row,
    so the row costs only its own result; other errors (server down,
    deadline) stop the run.
    """
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        try:
            images = [_read_checked(path) for path, _ in batch]
            results = client.classify(images, [text for _, text in batch])
        except (grpc.RpcError, OSError, ValueError) as error:
            if isinstance(error, grpc.RpcError) and (
                error.code() != grpc.StatusCode.INVALID_ARGUMENT
            ):
                raise
            for path, text in batch:
                try:
                    (result,) = client.classify([_read_checked(path)], [text])
                    yield path, text, result, ""
                except grpc.RpcError as row_error:
                    if row_error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                        raise
                    yield (
                        path,
                        text,
                        None,
                        (f"{row_error.code().name}: {row_error.details()}"),
                    )
                except (OSError, ValueError) as row_error:
                    yield path, text, None, str(row_error)
            continue
        for (path, text), result in zip(batch, results, strict=True):
            yield path, text, result, ""


def _read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _read_checked(path):
    """The file's bytes; `ValueError` if its header is over the pixel limit."""
    data = _read_bytes(path)
    problem = oversized_image(data)
    if problem is not None:
        raise ValueError(f"{IMAGE_TOO_LARGE}: {path}: {problem}")
    return data


def print_result(result, out=None):
    out = out or sys.stdout
    width = max(len("task"), *(len(task) for task in result))
    out.write(
        f"{'task':<{width}}  {'label':<20} {'score':>7} {'λ(image)':>9} "
        f"{'accepted':>8}\n"
    )
    for task, value in result.items():
        accepted = value.get("accepted")
        out.write(
            f"{task:<{width}}  {value['label']:<20} {value['score']:>7.4f} "
            f"{value['image_weight']:>9.4f} "
            f"{'-' if accepted is None else ('yes' if accepted else 'no'):>8}\n"
        )


def write_csv(results, out):
    """Writes `classify_manifest` rows: image, text, per-task columns, error."""
    results = list(results)
    tasks = next((list(result) for _, _, result, _ in results if result), [])
    fields = ["image", "text"]
    for task in tasks:
        fields += [f"{task}_label", f"{task}_score", f"{task}_image_weight",
                   f"{task}_accepted"]
    fields.append("error")
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for path, text, result, error in results:
        row = {"image": path, "text": text, "error": error}
        for task, value in (result or {}).items():
            row[f"{task}_label"] = value["label"]
            row[f"{task}_score"] = f"{value['score']:.6f}"
            row[f"{task}_image_weight"] = f"{value['image_weight']:.6f}"
            row[f"{task}_accepted"] = value.get("accepted", "")
        writer.writerow(row)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m serving.client",
        description="Classify image-text pairs with a served CMA-CLIP model.",
    )
    parser.add_argument("--server", default="localhost:8500", help="HOST:PORT (gRPC).")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--version", type=int, help="Default: the latest served.")
    parser.add_argument("--image", help="An image file (JPEG, PNG or GIF).")
    parser.add_argument("--text", help="The text that goes with --image.")
    parser.add_argument("--manifest", help="CSV with columns image,text.")
    parser.add_argument(
        "--output", help="CSV to write for --manifest (default: stdout)."
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="Seconds per request."
    )
    parser.add_argument(
        "--debug", action="store_true", help="TensorFlow's own log lines."
    )
    args = parser.parse_args(argv)
    if bool(args.manifest) == bool(args.image):
        parser.error("Pass either --image FILE --text TEXT or --manifest FILE.")
    if args.image and args.text is None:
        parser.error("--image needs --text.")
    return args


def main(argv=None):
    args = parse_args(argv)
    client = CMACLIPClient(
        args.server, args.model_name, version=args.version, timeout=args.timeout
    )
    try:
        if args.image:
            (result,) = client.classify([_read_bytes(args.image)], [args.text])
            print_result(result)
            return 0
        rows = read_manifest(args.manifest)
        if not rows:
            sys.stderr.write(f"error: {args.manifest} has no rows to classify.\n")
            return 1
        results = list(classify_manifest(client, rows, args.batch_size))
        if args.output:
            with open(args.output, "w", newline="", encoding="utf-8") as f:
                write_csv(results, f)
        else:
            write_csv(results, sys.stdout)
        errors = [error for _, _, _, error in results if error]
        if len(errors) == len(results):
            sys.stderr.write(
                f"error: no row was classified: all {len(results)} rows "
                f"failed (the first: {errors[0]}).\n")
            return 1
        return 0
    except grpc.RpcError as error:
        sys.stderr.write(f"{error.code().name}: {error.details()}\n")
        return 1
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
