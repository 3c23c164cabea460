"""The development server and client against a tiny export, over real gRPC
on a free loopback port, with TF Serving's standard stubs."""

import csv
import os
import shutil
import signal
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

import tiny_export
from cmaclip_tf.limits.image_headers import gif_frame_count
from cmaclip_tf.limits.image_headers import image_format_and_size
from cmaclip_tf.limits.serving_limits import ServingLimits
from oversized_images import many_frame_gif
from serving import client
from serving.prediction_service import readable_tf_error
from serving.server_process import ServerProcess

START_TIMEOUT = 90
STATE = get_model_status_pb2.ModelVersionStatus.State


def start_server(model_base_path, model_name, args=(), script=None):
    """The server on a free port, its log beside the model, polling fast."""
    return ServerProcess(
        model_base_path, model_name, ["--poll-seconds", "0.2", *args], script,
        log_path=os.path.join(model_base_path, "server.log"),
        env={"CUDA_VISIBLE_DEVICES": ""}, start_timeout=START_TIMEOUT,
    )


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    return tiny_export.tiny_export(str(tmp_path_factory.mktemp("tiny_export")))


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    # A private copy: the hot-swap test adds a version.
    base = str(tmp_path_factory.mktemp("served"))
    shutil.copytree(exported.version_dir, os.path.join(base, exported.model_name, "1"))
    process = start_server(base, exported.model_name)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(
        server.address, options=[("grpc.max_send_message_length", 64 << 20)]
    )
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


def predict(stub, exported, images, texts, **kwargs):
    request = client.make_predict_request(exported.model_name, images, texts, **kwargs)
    return stub.Predict(request, timeout=60)


def version_states(server, model_name):
    """`[(version, state)]` from `ModelService.GetModelStatus`, newest first."""
    channel = grpc.insecure_channel(server.address)
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": model_name}),
        timeout=30,
    )
    channel.close()
    return [(s.version, s.state) for s in status.model_version_status]


def assert_matches_reference(response, exported, images, texts):
    outputs = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
    expected = exported.reference_outputs(images, texts)
    # probabilities, label, score, accepted, image_weight per task.
    assert len(outputs) == 5 * len(tiny_export.TASKS)
    for task, labels in tiny_export.LABELS.items():
        np.testing.assert_allclose(
            outputs[f"{task}_probabilities"],
            expected[f"{task}_probabilities"],
            atol=1e-5,
        )
        np.testing.assert_allclose(
            outputs[f"{task}_image_weight"], expected[f"{task}_image_weight"], atol=1e-5
        )
        np.testing.assert_allclose(
            outputs[f"{task}_score"],
            expected[f"{task}_probabilities"].max(-1),
            atol=1e-5,
        )
        got = [label.decode() for label in outputs[f"{task}_label"]]
        assert got == expected[f"{task}_label"].tolist()
        assert set(got) <= set(labels)


def test_predict_real_jpeg_and_png_equals_in_memory_model(server, stub, exported):
    images = [exported.images["jpeg"], exported.images["png"], exported.images["gif"]]
    texts = tiny_export.TEXTS + ["Ünïcödé Straße — 100% silk"]
    response = predict(stub, exported, images, texts)
    assert response.model_spec.name == exported.model_name
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    assert_matches_reference(response, exported, images, texts)


def _oversized_image():
    header = tiny_export.sample_images()["jpeg"]
    return header + b"\0" * (8 * (1 << 20))


def _png_claiming(width, height):
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
    )


def _animated_gif(width, height, frames):
    import io

    from PIL import Image

    # Distinct colors: PIL merges identical consecutive frames.
    images = [
        Image.new("RGB", (width, height), color=(10 * i, 0, 0)) for i in range(frames)
    ]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:])
    return buffer.getvalue()


def _malformed_requests(exported):
    jpeg, png = exported.images["jpeg"], exported.images["png"]
    name = exported.model_name

    def request(images, texts, **kwargs):
        return client.make_predict_request(name, images, texts, **kwargs)

    wrong_dtype = request([jpeg], ["x"])
    wrong_dtype.inputs["text"].CopyFrom(tf.make_tensor_proto([7], dtype=tf.int32))
    missing = request([jpeg], ["x"])
    del missing.inputs["text"]
    extra = request([jpeg], ["x"])
    extra.inputs["caption"].CopyFrom(tf.make_tensor_proto([b"x"]))
    matrix = request([jpeg], ["x"])
    matrix.inputs["text"].CopyFrom(tf.make_tensor_proto([[b"x"]]))
    return [
        ("not an image", request([b"GET / HTTP/1.1\r\n"], ["x"]), "not a JPEG, PNG"),
        ("empty batch", request([], []), "Empty batch"),
        ("batch sizes differ", request([jpeg, png], ["x"]), "different batch sizes"),
        ("wrong dtype", wrong_dtype, "dtype int32"),
        ("missing input", missing, "missing ['text']"),
        ("unexpected input", extra, "unexpected ['caption']"),
        ("wrong rank", matrix, "has shape [1, 1]"),
        (
            "image over the byte cap",
            request([_oversized_image()], ["x"]),
            "--max-image-bytes",
        ),
        (
            "decompression bomb",
            request([_png_claiming(100000, 100000)], ["x"]),
            "--max-image-pixels",
        ),
        (
            "GIF of many frames",
            # 100 frames of 1000 x 1000: over the 8192 x 8192 limit.
            request([many_frame_gif(frames=100, size=1000)], ["x"]),
            "x 100 frames gif",
        ),
        ("truncated JPEG", request([jpeg[: len(jpeg) // 3]], ["x"]), "JPEG"),
        (
            "100,000-character text",
            request([jpeg], ["dress " * 16667]),
            "--max-text-bytes",
        ),
        ("text not UTF-8", request([jpeg], [b"caf\xe9"]), "not valid UTF-8"),
        (
            "too much text in all",
            request([jpeg] * 9, ["in" * 4000] * 9),
            "--max-request-text-bytes",
        ),
        (
            "unknown signature",
            request([jpeg], ["x"], signature_name="classify"),
            "not found",
        ),
    ]


def test_malformed_requests_get_invalid_argument(server, stub, exported):
    for case, request, message in _malformed_requests(exported):
        with pytest.raises(grpc.RpcError) as raised:
            stub.Predict(request, timeout=60)
        error = raised.value
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (case, error.details())
        assert message in error.details(), (case, error.details())
        assert "[[{{node" not in error.details()
    # Unknown model and version: NOT_FOUND, as TF Serving answers.
    unknown = client.make_predict_request(
        "other_model", [exported.images["jpeg"]], ["x"]
    )
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(unknown, timeout=60)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as raised:
        predict(stub, exported, [exported.images["jpeg"]], ["x"], version=99)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    # The server is still up and right.
    images, texts = [exported.images["png"]], ["striped"]
    assert_matches_reference(
        predict(stub, exported, images, texts), exported, images, texts
    )


def test_concurrent_requests(server, stub, exported):
    images = [exported.images["jpeg"], exported.images["png"]]
    expected = exported.reference_outputs(images, tiny_export.TEXTS)
    errors = []

    def worker():
        for _ in range(5):
            try:
                response = predict(stub, exported, images, tiny_export.TEXTS)
                got = tf.make_ndarray(response.outputs["color_probabilities"])
                np.testing.assert_allclose(
                    got, expected["color_probabilities"], atol=1e-5
                )
            except Exception as error:  # Collected for the assertion below.
                errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors


def test_model_metadata_and_status(server, stub, exported):
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        metadata_field=["signature_def"]
    )
    request.model_spec.name = exported.model_name
    response = stub.GetModelMetadata(request, timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    serving_default = signatures.signature_def["serving_default"]
    assert set(serving_default.inputs) == {"image_bytes", "text"}
    assert "color_label" in serving_default.outputs
    assert set(signatures.signature_def["predict_tensors"].inputs) == {
        "images",
        "token_ids",
        "padding_mask",
    }
    assert version_states(server, exported.model_name) == [(1, STATE.AVAILABLE)]


def run_client(server, exported, *args):
    """`python -m serving.client` against the server, in this process."""
    return client.main(
        ["--server", server.address, "--model-name", exported.model_name, *args]
    )


def test_client_cli_single_and_manifest(server, exported, tmp_path, capsys):
    image = exported.image_files["jpeg"]
    assert run_client(server, exported, "--image", image,
                      "--text", tiny_export.TEXTS[0]) == 0
    printed = capsys.readouterr().out
    expected = exported.reference_outputs(
        [exported.images["jpeg"]], tiny_export.TEXTS[:1]
    )
    for task in tiny_export.TASKS:
        label = expected[f"{task}_label"][0]
        score = expected[f"{task}_probabilities"][0].max()
        weight = expected[f"{task}_image_weight"][0]
        assert f"{task:<7}  {label:<20} {score:>7.4f} {weight:>9.4f}" in printed

    shutil.copy(exported.image_files["png"], tmp_path / "b.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image at all")
    manifest = tmp_path / "rows.csv"
    manifest.write_text(
        "image,text\n"
        f"{image},{tiny_export.TEXTS[0]}\n"
        f'b.png,"{tiny_export.TEXTS[1]}"\n'
        "broken.jpg,a broken row\n"
        "b.png,plain\n"
    )
    output = tmp_path / "out.csv"
    assert run_client(server, exported, "--manifest", str(manifest),
                      "--output", str(output), "--batch-size", "3") == 0
    with open(output) as f:
        rows = list(csv.DictReader(f))
    assert [row["error"] != "" for row in rows] == [False, False, True, False]
    assert rows[2]["error"].startswith("INVALID_ARGUMENT")
    reference = exported.reference_outputs(
        [exported.images["jpeg"], exported.images["png"], exported.images["png"]],
        [tiny_export.TEXTS[0], tiny_export.TEXTS[1], "plain"],
    )
    for row, index in zip([rows[0], rows[1], rows[3]], range(3)):
        for task in tiny_export.TASKS:
            assert row[f"{task}_label"] == reference[f"{task}_label"][index]
            assert float(row[f"{task}_score"]) == pytest.approx(
                reference[f"{task}_probabilities"][index].max(), abs=1e-5
            )
            assert float(row[f"{task}_image_weight"]) == pytest.approx(
                reference[f"{task}_image_weight"][index], abs=1e-5
            )


def test_newer_version_is_swapped_in_without_restart(server, stub, exported):
    model_dir = os.path.join(server.model_base_path, exported.model_name)
    # Written aside and renamed in, as the exporter does.
    shutil.copytree(os.path.join(model_dir, "1"), os.path.join(model_dir, ".staging"))
    os.rename(os.path.join(model_dir, ".staging"), os.path.join(model_dir, "2"))
    images, texts = [exported.images["jpeg"]], ["red"]
    deadline = time.monotonic() + 60
    version = 1
    while version != 2 and time.monotonic() < deadline:
        response = predict(stub, exported, images, texts)  # Never fails meanwhile.
        version = response.model_spec.version.value
        time.sleep(0.1)
    assert version == 2
    assert_matches_reference(response, exported, images, texts)
    assert version_states(server, exported.model_name) == [
        (2, STATE.AVAILABLE),
        (1, STATE.END),
    ]


# Runs the real server, with one request made slow so that SIGTERM lands
# while it is in flight.
SLOW_SERVER = """
import sys, time
import serving.model_versions as model_versions
import serving.server as server
run = model_versions.ServableVersion.run
def slow_run(self, signature, inputs):
    if inputs.get("text") is not None and inputs["text"][0] == b"slow":
        print("IN_FLIGHT", flush=True)
        time.sleep(3)
    return run(self, signature, inputs)
model_versions.ServableVersion.run = slow_run
sys.exit(server.main(sys.argv[1:]))
"""


@pytest.mark.large  # A second server process.
def test_sigterm_finishes_in_flight_requests_and_exits(exported, tmp_path):
    base = str(tmp_path)
    shutil.copytree(exported.version_dir, os.path.join(base, exported.model_name, "1"))
    server = start_server(base, exported.model_name, script=SLOW_SERVER)
    try:
        channel = grpc.insecure_channel(server.address)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        result = {}

        def slow_request():
            try:
                result["response"] = predict(
                    stub, exported, [exported.images["jpeg"]], ["slow"]
                )
            except grpc.RpcError as error:
                result["error"] = error

        thread = threading.Thread(target=slow_request)
        thread.start()
        assert server.next_line(60) == "IN_FLIGHT"
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # New requests are refused while the slow one finishes.
        late_channel = grpc.insecure_channel(server.address)
        late = prediction_service_pb2_grpc.PredictionServiceStub(late_channel)
        with pytest.raises(grpc.RpcError) as raised:
            late.Predict(
                client.make_predict_request(
                    exported.model_name, [exported.images["png"]], ["x"]
                ),
                timeout=10,
            )
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        late_channel.close()
        thread.join(timeout=30)
        assert "error" not in result, result.get("error")
        assert_matches_reference(
            result["response"], exported, [exported.images["jpeg"]], ["slow"]
        )
        assert server.process.wait(timeout=30) == 0
        channel.close()
    finally:
        server.stop()


# --- Pure helpers. ---


def test_image_headers(exported):
    assert image_format_and_size(exported.images["jpeg"]) == ("jpeg", 128, 96)
    assert image_format_and_size(exported.images["png"]) == ("png", 50, 70)
    assert image_format_and_size(exported.images["gif"]) == ("gif", 64, 64)
    assert image_format_and_size(_png_claiming(3, 5)) == ("png", 3, 5)
    assert image_format_and_size(b"\xff\xd8\xff")[0] == "jpeg"
    assert image_format_and_size(b"hello") == (None, None, None)
    assert gif_frame_count(exported.images["gif"]) == 1
    assert gif_frame_count(_animated_gif(8, 6, frames=5)) == 5


def test_limits_flags_default_to_the_one_definition():
    from serving.server import parse_args
    from serving.server import serving_limits

    required = ["--model-base-path", "m", "--model-name", "n"]
    assert serving_limits(parse_args(required)) == ServingLimits()
    args = parse_args(required + ["--max-text-bytes", "100", "--max-batch-size", "4"])
    assert serving_limits(args) == ServingLimits(max_text_bytes=100, max_batch_size=4)


def test_readable_tf_error():
    message = (
        "Graph execution error:\n\nDetected at node map/DecodeImage defined at "
        "(most recent call last):\n<stack traces unavailable>\njpeg::Uncompress "
        "failed. Invalid JPEG data or crop window.\n\t [[{{node map/DecodeImage}}]] "
        "[Op:__inference_signature_wrapper_1]"
    )
    assert readable_tf_error(message) == (
        "jpeg::Uncompress failed. Invalid JPEG data or crop window."
    )
