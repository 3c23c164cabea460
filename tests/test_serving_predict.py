"""`python -m serving.predict` on a tiny export: parity with the gRPC path,
bad rows, JSON Lines, resuming after a kill (and refusing to resume over a
changed input), the pixel limit and unusual image files (with `Predictor`)."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
import tiny_export
from PIL import Image
from tensorflow_serving.apis import prediction_service_pb2_grpc
from test_image_limits import OVERSIZED
from test_image_limits import UNUSUAL
from test_image_limits import files  # noqa: F401  Shared fixtures.
from test_image_limits import read
from test_image_limits import write_manifest
from test_predictor import exported  # noqa: F401  Shared fixtures.
from test_predictor import grey_images
from test_predictor import predictor  # noqa: F401
from test_serving import start_server

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from cmaclip_tf import Predictor
from serving import client
from serving import predict

TEXTS = ["Red striped cotton dress", "plain blue denim jacket, size 42",
         "Ünïcödé Straße — 100% silk", "grey wool scarf", ""]


@pytest.fixture(scope="module")
def images(exported, tmp_path_factory):
    """Image files of every kind the parity test covers: name -> path."""
    folder = tmp_path_factory.mktemp("images")
    encoded = {**exported.images, **grey_images()}
    paths = {}
    for name, data in encoded.items():
        paths[name] = str(folder / f"{name}.img")
        with open(paths[name], "wb") as f:
            f.write(data)
    return paths


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def run(*args):
    return predict.main([*map(str, args), "--no-progress"])


@pytest.fixture
def loaded_once(monkeypatch, predictor):
    """`serving.predict` runs on the already loaded predictor: no reload per run."""
    monkeypatch.setattr(predict.Predictor, "load",
                        lambda path, max_image_pixels=None: predictor)


def assert_same(row, prediction, tasks=tuple(tiny_export.TASKS)):
    """An output row (CSV strings or JSON values) against a prediction dict."""
    for task in tasks:
        value = prediction[task]
        assert row[f"{task}_label"] == value["label"]
        assert str(row[f"{task}_accepted"]) == str(value["accepted"])
        for key in ("score", "image_weight"):
            assert float(row[f"{task}_{key}"]) == pytest.approx(value[key], abs=1e-6)


@pytest.mark.large  # Starts a gRPC server process.
def test_same_answers_as_the_grpc_path(exported, images, predictor, tmp_path):
    base = str(tmp_path / "served")
    shutil.copytree(exported.version_dir, os.path.join(base, exported.model_name, "1"))
    server = start_server(base, exported.model_name)
    names = ["jpeg", "png", "gif", "grey_jpeg", "grey_png"]
    try:
        channel = grpc.insecure_channel(server.address)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = client.make_predict_request(
            exported.model_name, [exported.images.get(n) or grey_images()[n]
                                  for n in names], TEXTS
        )
        over_grpc = client.parse_predict_response(stub.Predict(request, timeout=60))
        channel.close()
    finally:
        server.stop()

    offline = predictor.predict([images[n] for n in names], TEXTS)
    manifest = tmp_path / "items.csv"
    write_csv(manifest, ["sku", "image", "text"],
              [[f"sku-{i}", images[n], text]
               for i, (n, text) in enumerate(zip(names, TEXTS))])
    output = tmp_path / "predictions.csv"
    assert run("--model", exported.model_base_path, "--manifest", manifest,
               "--output", output, "--batch-size", len(names)) == 0
    rows = read_csv(output)
    assert [row["sku"] for row in rows] == [f"sku-{i}" for i in range(len(names))]
    assert [row["error"] for row in rows] == [""] * len(names)
    for row, from_python, from_grpc in zip(rows, offline, over_grpc):
        assert_same(row, from_grpc)
        for task in tiny_export.TASKS:
            assert from_python[task]["label"] == from_grpc[task]["label"]
            assert from_python[task]["accepted"] == from_grpc[task]["accepted"]
            for key in ("score", "image_weight"):
                assert from_python[task][key] == pytest.approx(
                    from_grpc[task][key], abs=1e-6
                )


@pytest.mark.large  # 500 rows end to end.
def test_two_bad_rows_in_500(exported, images, predictor, tmp_path, capsys):
    (tmp_path / "broken.jpg").write_bytes(exported.images["jpeg"][:400])
    names = ["jpeg", "png", "gif"]
    rows, expected = [], {}
    for i in range(500):
        name, text = names[i % 3], TEXTS[i % 4]
        image = images[name]
        if i == 123:
            image = "missing.jpg"  # Relative to the manifest's folder.
        elif i == 377:
            image = "broken.jpg"
        else:
            expected[i] = (name, text)
        rows.append([f"id{i}", image, text, i % 7])
    manifest = tmp_path / "items.csv"
    write_csv(manifest, ["id", "image", "text", "shelf"], rows)
    output = tmp_path / "predictions.csv"
    assert run("--model", exported.version_dir, "--manifest", manifest,
               "--output", output) == 0
    written = read_csv(output)
    assert [row["id"] for row in written] == [f"id{i}" for i in range(500)]
    assert [row["shelf"] for row in written] == [str(i % 7) for i in range(500)]
    errors = {i: row["error"] for i, row in enumerate(written) if row["error"]}
    assert sorted(errors) == [123, 377]
    assert errors[123].startswith("missing_image: ")
    assert "missing.jpg" in errors[123]
    assert errors[377].startswith("corrupt_image: ")
    assert written[123]["color_label"] == written[377]["color_score"] == ""
    combos = sorted(set(expected.values()))
    reference = dict(zip(combos, predictor.predict(
        [images[name] for name, _ in combos], [text for _, text in combos]
    )))
    for i, combo in expected.items():
        assert_same(written[i], reference[combo])
    summary = capsys.readouterr().out
    assert "rows: 500  predicted: 498  errors: 2" in summary
    assert "errors: corrupt_image 1, missing_image 1" in summary

    # An existing output is neither overwritten nor appended to by accident.
    assert run("--model", exported.version_dir, "--manifest", manifest,
               "--output", output) == 1
    assert "--resume" in capsys.readouterr().err


def test_json_lines_with_tasks_only_accepted_and_probabilities(
    exported, images, predictor, tmp_path, capsys
):
    manifest = tmp_path / "items.jsonl"
    items = [
        {"id": 1, "image": images["jpeg"], "text": TEXTS[0], "meta": {"a": [1]}},
        {"id": 2, "image": images["grey_png"], "text": TEXTS[1]},
        {"id": 3, "text": "no image"},
        {"id": 4, "image": images["gif"], "text": "x" * 9000},
    ]
    manifest.write_text("".join(json.dumps(item) + "\n" for item in items) + "{oops\n")
    output = tmp_path / "predictions.jsonl"
    assert run("--model", exported.version_dir, "--manifest", manifest,
               "--output", output, "--tasks", "pattern,color", "--only-accepted",
               "--probabilities") == 0
    written = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(written) == 5
    assert written[0]["meta"] == {"a": [1]}
    assert [row.get("id") for row in written] == [1, 2, 3, 4, None]
    assert [row["error"].split(":")[0] if row["error"] else None
            for row in written] == [None, None, "missing_image", "text_too_long",
                                    "malformed_row"]
    assert "items.jsonl:5" in written[4]["error"]
    reference = predictor.predict(
        [images["jpeg"], images["grey_png"]], TEXTS[:2], probabilities=True
    )
    for row, prediction in zip(written, reference):
        assert list(row)[-11:] == [
            "pattern_label", "pattern_score", "pattern_accepted",
            "pattern_image_weight", "pattern_probabilities", "color_label",
            "color_score", "color_accepted", "color_image_weight",
            "color_probabilities", "error",
        ]
        color = prediction["color"]
        assert color["accepted"]  # tiny_export's threshold 0.34 is reached.
        assert row["color_probabilities"] == pytest.approx(color["probabilities"])
        assert_same(row, prediction, tasks=["color"])
        # Pattern has no threshold (None): never accepted, so left empty.
        assert row["pattern_accepted"] is False
        assert row["pattern_label"] is row["pattern_score"] is None
        assert row["pattern_probabilities"] is None
    summary = capsys.readouterr().out
    assert "accepted color: 2 of 2 (100.0%)" in summary
    assert "accepted pattern: 0 of 2 (0.0%)" in summary


# Runs the real command with each batch's write slowed down, so that a kill
# lands midway.
SLOW_PREDICT = """
import sys, time
import serving.predict as predict
write = predict.PredictionWriter.write
def slow_write(self, records):
    write(self, records)
    time.sleep(0.25)
predict.PredictionWriter.write = slow_write
sys.exit(predict.main(sys.argv[1:]))
"""


@pytest.mark.large  # A second process starting TensorFlow: about 30-40 s.
def test_resume_after_a_kill_writes_every_row_once(
    exported, images, predictor, tmp_path
):
    count = 240
    names = ["jpeg", "png", "gif", "grey_jpeg"]
    # Quoted newlines: a CSV record spans lines, as a real catalogue's may.
    texts = [f"Red striped\ncotton dress {i}" if i % 3 == 0 else f"plain {i}"
             for i in range(count)]
    manifest = tmp_path / "items.csv"
    write_csv(manifest, ["id", "image", "text"],
              [[i, images[names[i % 4]], texts[i]] for i in range(count)])
    output = tmp_path / "predictions.csv"
    args = ["--model", exported.version_dir, "--manifest", manifest,
            "--output", output, "--batch-size", "8", "--no-progress"]
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_PREDICT, *map(str, args)],
        cwd=REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while len(_ids(output)) < 40:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no rows written in 120 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    done = _ids(output)
    assert 40 <= len(done) < count
    assert done == [str(i) for i in range(len(done))]
    # As if killed while writing a row: it ends inside a quoted field.
    with open(output, "a", encoding="utf-8") as f:
        f.write(f'{len(done)},{images["jpeg"]},"Red striped\ncotton')

    assert run("--model", exported.version_dir, "--manifest", manifest,
               "--output", output, "--resume") == 0
    written = read_csv(output)
    assert [row["id"] for row in written] == [str(i) for i in range(count)]
    assert [row["text"] for row in written] == texts
    reference = predictor.predict([images[names[i % 4]] for i in range(count)], texts)
    for row, prediction in zip(written, reference):
        assert row["error"] == ""
        assert_same(row, prediction)

    # Resuming with other columns would mix two layouts in one file.
    assert run("--model", exported.version_dir, "--manifest", manifest,
               "--output", output, "--resume", "--tasks", "color") == 1


def _ids(path):
    """The ids of the complete rows written so far."""
    if not os.path.exists(path):
        return []
    columns = predict.output_columns(["id", "image", "text"], list(tiny_export.TASKS),
                                     probabilities=False)
    ids = []
    predict.read_written_rows(str(path), columns, columns[3:],
                              lambda record: ids.append(record["id"]))
    return ids



def _wrong_folder_manifest(tmp_path):
    """A user's manifest with the wrong image folder: every path is missing."""
    manifest = tmp_path / "items.csv"
    write_csv(manifest, ["sku", "image", "text"],
              [[i, f"wrong_folder/{i}.jpg", f"item {i}"] for i in range(5)])
    return manifest


@pytest.mark.large  # The command in a fresh process.
def test_a_run_whose_every_row_fails_exits_1_in_one_line(
    exported, tmp_path, capsys
):
    output = tmp_path / "predictions.csv"
    assert run("--model", exported.version_dir, "--manifest",
               _wrong_folder_manifest(tmp_path), "--output", output) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "error: no row was predicted: all 5 rows failed (missing_image 5); "
        f"see the error column of {output}."]
    assert "rows: 5  predicted: 0  errors: 5" in captured.out
    assert [row["error"].split(":")[0] for row in read_csv(output)] == [
        "missing_image"] * 5

    header_only = tmp_path / "empty.csv"
    write_csv(header_only, ["image", "text"], [])
    assert run("--model", exported.version_dir, "--manifest", header_only,
               "--output", tmp_path / "empty_out.csv") == 1
    assert "has no rows to predict" in capsys.readouterr().err


@pytest.mark.large  # A second process starting TensorFlow: about 30-60 s.
def test_the_command_hides_tensorflows_log_lines(exported, tmp_path):
    # No log level preset, as a user's shell: TensorFlow would print its
    # start-up lines (cuInit on a CPU machine) and one NOT_FOUND per row.
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    output = tmp_path / "predictions.csv"
    result = subprocess.run(
        [sys.executable, "-m", "serving.predict", "--model", exported.version_dir,
         "--manifest", str(_wrong_folder_manifest(tmp_path)),
         "--output", str(output), "--no-progress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: no row was predicted: all 5 rows failed (missing_image 5); "
        f"see the error column of {output}."]


def test_the_client_exits_1_when_no_row_was_classified(tmp_path, capsys):
    # Every image missing: no request is sent, every row has its error.
    output = tmp_path / "predictions.csv"
    assert client.main(["--server", "localhost:1", "--model-name", "cmaclip",
                        "--manifest", str(_wrong_folder_manifest(tmp_path)),
                        "--output", str(output)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no row was classified: all 5 rows failed "
                          "(the first: [Errno 2] No such file or directory")
    assert len(err.splitlines()) == 1 and len(read_csv(output)) == 5
    empty = tmp_path / "empty.csv"
    write_csv(empty, ["image", "text"], [])
    assert client.main(["--server", "localhost:1", "--model-name", "cmaclip",
                        "--manifest", str(empty)]) == 1
    assert "has no rows to classify" in capsys.readouterr().err

# --- The pixel limit and unusual files (issue: one image limit everywhere). ---


def test_predictor_refuses_oversized_images(predictor, files, exported):
    jpeg = exported.images["jpeg"]
    for name in OVERSIZED:
        with pytest.raises(ValueError, match=rf"example 0: image_too_large: .*{name}"):
            predictor.predict([files[name], jpeg], ["red", "red"])
    results = predictor.predict(
        [files[n] for n in OVERSIZED] + [read(files["frames.gif"]), jpeg],
        ["red"] * (len(OVERSIZED) + 2), on_error="return",
    )
    assert [r.get("error", "ok").split(":")[0] for r in results] == (
        ["image_too_large"] * (len(OVERSIZED) + 1) + ["ok"]
    )
    # In-memory pixels are held to the same limit, before any conversion.
    strict = Predictor(predictor._serve, predictor.tasks, predictor.labels,
                       max_image_pixels=99)
    (result,) = strict.predict([np.zeros((10, 10), np.uint8)], ["red"],
                               on_error="return")
    assert result["error"].startswith("image_too_large: an image of 100 pixels")


def test_oversized_and_unusual_files_on_every_path(
    predictor, exported, files, tmp_path, capsys, loaded_once
):
    from cmaclip_tf.datasets import load_dataset
    from cmaclip_tf.preprocessing.input_pipeline import make_batches

    paths = [files[n] for n in UNUSUAL]
    texts = ["grey wool scarf", "red dress", "striped shirt"]
    by_path = predictor.predict(paths, texts, probabilities=True)
    expected = exported.reference_outputs([read(p) for p in paths], texts)
    for task, labels in tiny_export.LABELS.items():
        got = np.array([[r[task]["probabilities"][c] for c in labels] for r in by_path])
        np.testing.assert_allclose(got, expected[f"{task}_probabilities"], atol=1e-5)
    # Training's pipeline (manifest reader, make_batches) gives the pixels
    # the export's preprocessing gives.
    manifest = tmp_path / "train.csv"
    write_manifest(manifest, [[p, t, "red"] for p, t in zip(paths, texts)])
    dataset = load_dataset("manifest", manifest=str(manifest),
                           val_manifest=str(manifest), num_workers=1)
    (features, _), = make_batches(
        dataset.split("train"), exported.text_preprocessor,
        exported.image_preprocessor, batch_size=8, training=False,
    ).take(1)
    np.testing.assert_array_equal(
        features["images"].numpy(),
        exported.image_preprocessor(tf.constant([read(p) for p in paths])).numpy(),
    )
    # The same 16-bit and palette PNGs handed over as PIL images.
    pil = predictor.predict([Image.open(p) for p in paths[::2]], texts[::2])
    for got, want in zip(pil, by_path[::2]):
        for task in tiny_export.TASKS:
            assert got[task]["score"] == pytest.approx(want[task]["score"], abs=1e-6)

    # serving.predict: the oversized rows are errors, the run goes on.
    batch = tmp_path / "items.csv"
    write_manifest(batch, [[files[n], "red"] for n in OVERSIZED]
                   + [[p, t] for p, t in zip(paths, texts)], ("image", "text"))
    output = tmp_path / "out.csv"
    assert run("--model", exported.version_dir, "--manifest", batch,
               "--output", output) == 0
    rows = read_csv(output)
    reasons = [r["error"].split(":")[0] for r in rows]
    assert reasons == ["image_too_large"] * 4 + [""] * 3
    assert "huge.png" in rows[0]["error"] and "20000x20000" in rows[0]["error"]
    assert "errors: image_too_large 4" in capsys.readouterr().out
    for row, want in zip(rows[4:], by_path):
        assert_same(row, want)


# --- Resuming checks its input (issue: prediction paths as trustworthy). ---


def test_resume_refuses_a_changed_input_and_takes_appended_rows(
    exported, images, predictor, tmp_path, capsys, loaded_once
):
    rows = [[f"id{i}", images[["jpeg", "png", "gif"][i % 3]], f"item {i}"]
            for i in range(12)]
    manifest = tmp_path / "items.csv"
    output = tmp_path / "predictions.csv"
    args = ["--model", exported.version_dir, "--manifest", manifest,
            "--output", output, "--batch-size", "4"]
    # As if killed after 6 rows: the first run saw only those.
    write_csv(manifest, ["id", "image", "text"], rows[:6])
    assert run(*args) == 0
    capsys.readouterr()

    # The same rows reversed: refused in one line, exit 2, output untouched.
    before = output.read_bytes()
    write_csv(manifest, ["id", "image", "text"], rows[::-1])
    assert run(*args, "--resume") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Cannot resume" in err and "--overwrite" in err
    assert output.read_bytes() == before
    # One row edited inside the last batch written: refused too.
    edited = [list(r) for r in rows]
    edited[5][2] = "another title"
    write_csv(manifest, ["id", "image", "text"], edited)
    assert run(*args, "--resume") == 2
    assert "row 6 of" in capsys.readouterr().err

    # Rows appended after the predicted ones: resumed, each row once.
    write_csv(manifest, ["id", "image", "text"], rows)
    assert run(*args, "--resume") == 0
    written = read_csv(output)
    assert [row["id"] for row in written] == [f"id{i}" for i in range(12)]
    reference = predictor.predict([r[1] for r in rows], [r[2] for r in rows])
    for row, prediction in zip(written, reference):
        assert_same(row, prediction)

    # An output whose record is gone cannot be checked: refused.
    os.remove(str(output) + ".resume.json")
    assert run(*args, "--resume") == 2
    assert "is missing" in capsys.readouterr().err


def test_a_manifest_with_a_byte_order_mark(
    exported, images, predictor, tmp_path, loaded_once
):
    manifest = tmp_path / "excel.csv"
    with open(manifest, "w", newline="", encoding="utf-8-sig") as f:
        f.write(f"image,text\n{images['png']},plain blue shirt\n")
    output = tmp_path / "out.csv"
    assert run("--model", exported.version_dir, "--manifest", manifest,
               "--output", output) == 0
    (row,) = read_csv(output)
    assert row["error"] == "" and row["image"] == images["png"]
    assert_same(row, predictor.predict(images["png"], "plain blue shirt"))
    assert client.read_manifest(str(manifest)) == [(images["png"], "plain blue shirt")]
