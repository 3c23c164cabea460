"""`python -m serving.beam_predict` on a tiny export, on the DirectRunner:
the same answers as `serving.predict` and `Predictor`, in memory and over
two worker processes; dead letters; TFRecord input; the version it picks;
a model and manifest on a remote filesystem."""

import csv
import glob
import json
import os
import shutil

import pytest
import tiny_export
from test_predictor import exported  # noqa: F401  Shared fixtures.
from test_predictor import grey_images
from test_predictor import predictor  # noqa: F401

pytest.importorskip("apache_beam")

from apache_beam.io.filesystem import FileMetadata  # noqa: E402
from apache_beam.io.localfilesystem import LocalFileSystem  # noqa: E402

from serving import beam_predict  # noqa: E402
from serving import predict  # noqa: E402
from serving.saved_model_handler import resolve_export  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["jpeg", "png", "gif", "grey_jpeg", "grey_png"]
TEXTS = ["Red striped cotton dress", "plain blue denim jacket, size 42",
         "Ünïcödé Straße — 100% silk", "grey wool scarf", ""]
# Row id -> the reason it has no prediction.
BAD_ROWS = {"12": "missing_image", "13": "corrupt_image", "14": "missing_image",
            "15": "text_too_long"}


@pytest.fixture(scope="module")
def catalogue(exported, tmp_path_factory):
    """Two CSV shards: 12 good rows (paths relative to the CSV), then bad ones.

    Returns `(pattern, {id: (image name, text)} of the good rows)`.
    """
    folder = tmp_path_factory.mktemp("catalogue")
    encoded = {**exported.images, **grey_images()}
    for name, data in encoded.items():
        (folder / f"{name}.img").write_bytes(data)
    (folder / "broken.jpg").write_bytes(exported.images["jpeg"][:400])
    good = {str(i): (NAMES[i % 5], TEXTS[i % 4] + f" {i}" * (i % 3)) for i in range(12)}
    rows = [[i, f"{name}.img", text, f"shelf {i}"] for i, (name, text) in good.items()]
    rows += [[12, "missing.jpg", "x", ""], [13, "broken.jpg", "y", ""],
             [14, "", "", ""], [15, "gif.img", "x" * 9000, ""]]
    header = ["id", "image", "text", "shelf"]
    for shard, part in (("a", rows[:7]), ("b", rows[7:])):
        with open(folder / f"items-{shard}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(part)
        # A row with too few fields in each shard: a malformed row.
        with open(folder / f"items-{shard}.csv", "a", encoding="utf-8") as f:
            f.write(f"malformed-{shard},gif.img\n")
    return str(folder / "items-*.csv"), good


def read_outputs(prefix, suffix=".csv"):
    """`(rows by id, dead letters)` from all shards of a run's two outputs."""
    rows = []
    for path in sorted(glob.glob(f"{prefix}-*-of-*{suffix}")):
        with open(path, newline="", encoding="utf-8") as f:
            if suffix == ".csv":
                rows += list(csv.DictReader(f))
            else:
                rows += [json.loads(line) for line in f]
    dead = []
    for path in glob.glob(f"{prefix}{beam_predict.DEAD_LETTER_SUFFIX}-*.jsonl"):
        with open(path, encoding="utf-8") as f:
            dead += [json.loads(line) for line in f]
    return rows, dead


def assert_same(row, prediction):
    """An output row (CSV strings or JSON values) against a prediction dict."""
    for task in tiny_export.TASKS:
        value = prediction[task]
        assert row[f"{task}_label"] == value["label"]
        assert str(row[f"{task}_accepted"]) == str(value["accepted"])
        for key in ("score", "image_weight"):
            assert float(row[f"{task}_{key}"]) == pytest.approx(value[key], abs=1e-5)
        probabilities = row[f"{task}_probabilities"]
        if isinstance(probabilities, str):
            probabilities = json.loads(probabilities)
        assert probabilities == pytest.approx(value["probabilities"], abs=1e-5)


def check_run(prefix, catalogue, reference):
    """Every input row once, good ones as `reference`, bad ones dead-lettered."""
    pattern, good = catalogue
    rows, dead = read_outputs(prefix)
    by_id = {row["id"]: row for row in rows if row["id"]}
    assert len(rows) == len(good) + len(BAD_ROWS) + 2  # And 2 malformed rows.
    assert sorted(by_id) == sorted([*good, *BAD_ROWS])
    for key in good:
        assert by_id[key]["error"] == ""
        assert by_id[key]["shelf"] == f"shelf {key}"
        assert_same(by_id[key], reference[key])
    for key, reason in BAD_ROWS.items():
        assert by_id[key]["error"].startswith(reason + ": ")
        assert by_id[key]["color_label"] == by_id[key]["color_score"] == ""
    assert sorted(d["error"].split(":")[0] for d in dead) == sorted(
        [*BAD_ROWS.values(), "malformed_row", "malformed_row"]
    )
    malformed = [d for d in dead if d["error"].startswith("malformed_row")]
    assert sorted((os.path.basename(d["source"]), d["line"]) for d in malformed) == [
        ("items-a.csv", 9), ("items-b.csv", 11)
    ]
    missing = next(d for d in dead if d["row"].get("id") == "12")
    assert missing["row"] == {"id": "12", "image": "missing.jpg", "text": "x",
                              "shelf": ""}
    assert missing["error"].endswith("missing.jpg: No such file or directory")
    return by_id


def run_beam(*args):
    return beam_predict.main([*map(str, args)])


@pytest.fixture(scope="module")
def reference(catalogue, predictor):
    _, good = catalogue
    folder = os.path.dirname(catalogue[0])
    keys = sorted(good)
    predictions = predictor.predict(
        [os.path.join(folder, f"{good[k][0]}.img") for k in keys],
        [good[k][1] for k in keys], probabilities=True,
    )
    return dict(zip(keys, predictions))


@pytest.mark.large  # A Beam pipeline end to end.
def test_same_answers_as_serving_predict_and_predictor(
    exported, catalogue, reference, tmp_path, capsys
):
    pattern, good = catalogue
    prefix = str(tmp_path / "out" / "predictions")
    assert run_beam("--model", exported.model_base_path, "--input", pattern,
                    "--output", prefix, "--probabilities", "--max-batch-size", 4,
                    "--direct_running_mode=in_memory") == 0
    summary = capsys.readouterr().out
    assert "rows: 18  predicted: 12  errors: 6" in summary
    assert ("errors: corrupt_image 1, malformed_row 2, missing_image 2, "
            "text_too_long 1") in summary
    assert "accepted pattern: 0 of 12 (0.0%)" in summary  # Its threshold is None.
    by_id = check_run(prefix, catalogue, reference)

    # serving.predict on each shard: the same columns, errors and numbers.
    for shard in ("a", "b"):
        manifest = pattern.replace("*", shard)
        output = tmp_path / f"predict-{shard}.csv"
        assert predict.main(["--model", exported.model_base_path, "--manifest",
                             manifest, "--output", str(output), "--probabilities",
                             "--no-progress"]) == 0
        with open(output, newline="", encoding="utf-8") as f:
            offline = list(csv.DictReader(f))
        for row in offline:
            if not row["id"]:
                continue  # The malformed row: no fields to match by.
            beam_row = by_id[row["id"]]
            assert list(beam_row) == list(row)
            assert beam_row["error"] == row["error"]
            for task in tiny_export.TASKS:
                assert beam_row[f"{task}_label"] == row[f"{task}_label"]
                for key in ("score", "image_weight"):
                    assert float(beam_row[f"{task}_{key}"] or 0) == pytest.approx(
                        float(row[f"{task}_{key}"] or 0), abs=1e-5)


@pytest.mark.large  # Two worker processes start TensorFlow: about a minute.
def test_two_worker_processes(exported, catalogue, reference, tmp_path, monkeypatch):
    # The workers are new interpreters: they import serving from the repo.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    prefix = str(tmp_path / "predictions")
    assert run_beam("--model", exported.version_dir, "--input", catalogue[0],
                    "--output", prefix, "--probabilities",
                    "--direct_running_mode=multi_processing",
                    "--direct_num_workers=2") == 0
    check_run(prefix, catalogue, reference)
    assert len(glob.glob(prefix + "-*-of-00002.csv")) == 2


@pytest.mark.large  # A Beam pipeline end to end.
def test_tfrecords_to_json_lines(exported, predictor, tmp_path, capsys):
    import tensorflow as tf

    def example(**features):
        feature = {}
        for name, value in features.items():
            if isinstance(value, int):
                values = tf.train.Int64List(value=[value])
                feature[name] = tf.train.Feature(int64_list=values)
            else:
                values = tf.train.BytesList(value=[value])
                feature[name] = tf.train.Feature(bytes_list=values)
        return tf.train.Example(features=tf.train.Features(feature=feature))

    images = [exported.images["jpeg"], exported.images["png"],
              grey_images()["grey_png"]]
    texts = ["Red striped cotton dress", "plain blue shirt", "grey scarf"]
    path = tmp_path / "items.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i, (image, text) in enumerate(zip(images, texts)):
            writer.write(example(id=i, image=image, text=text.encode())
                         .SerializeToString())
        writer.write(example(id=3, image=images[0][:300], text=b"cut")
                     .SerializeToString())
        writer.write(example(id=4, text=b"no image").SerializeToString())
        writer.write(b"not an example")
    prefix = str(tmp_path / "out" / "predictions")
    assert run_beam("--model", exported.version_dir, "--input", path, "--output",
                    prefix, "--output-format", "jsonl", "--tasks", "color",
                    "--probabilities") == 0
    assert "rows: 6  predicted: 3  errors: 3" in capsys.readouterr().out
    rows, dead = read_outputs(prefix, ".jsonl")
    by_id = {row.get("id"): row for row in rows}
    assert sorted(by_id, key=str) == [0, 1, 2, 3, 4, None]
    assert all("image" not in row and "pattern_label" not in row for row in rows)
    expected = predictor.predict(images, texts, probabilities=True)
    for i, prediction in enumerate(expected):
        assert by_id[i]["text"] == texts[i]
        assert by_id[i]["color_label"] == prediction["color"]["label"]
        assert by_id[i]["color_probabilities"] == pytest.approx(
            prediction["color"]["probabilities"], abs=1e-5)
    assert [by_id[k]["error"].split(":")[0] for k in (3, 4, None)] == [
        "corrupt_image", "missing_image", "malformed_row"]
    assert len(dead) == 3


@pytest.mark.large  # A Beam pipeline end to end.
def test_nothing_predicted_exits_1(exported, tmp_path, capsys):
    manifest = tmp_path / "items.csv"
    manifest.write_text("id,image,text\n1,missing.jpg,x\n2,,\n", encoding="utf-8")
    prefix = str(tmp_path / "predictions")
    assert run_beam("--model", exported.version_dir, "--input", manifest,
                    "--output", prefix) == 1
    captured = capsys.readouterr()
    assert "rows: 2  predicted: 0  errors: 2" in captured.out
    assert "No row was predicted" in captured.err
    rows, dead = read_outputs(prefix)
    assert sorted(row["id"] for row in rows) == ["1", "2"]
    assert len(dead) == 2
    # A pattern that matches nothing fails before the job starts.
    assert run_beam("--model", exported.version_dir, "--input",
                    tmp_path / "none-*.csv", "--output", prefix) == 1
    assert "No file matches --input" in capsys.readouterr().err


def test_the_highest_version_is_used(exported, tmp_path):
    model_dir = tmp_path / "models" / "cmaclip"
    for version in ("2", "10", "9"):
        shutil.copytree(exported.version_dir, model_dir / version)
    (model_dir / "11").mkdir()  # No saved_model.pb: not a version.
    assert resolve_export(str(model_dir)) == str(model_dir / "10")
    assert resolve_export(str(tmp_path / "models")) == str(model_dir / "10")
    with pytest.raises(ValueError, match="not an export"):
        resolve_export(os.path.dirname(exported.bundle_dir))


class FakeRemoteFileSystem(LocalFileSystem):
    """`fake://PATH`: the local disk behind a scheme, as `gs://` would be.

    Beam finds filesystems by subclass, so defining it registers it.
    """

    PREFIX = "fake://"

    @classmethod
    def scheme(cls):
        return "fake"

    def _local(self, path):
        return path[len(self.PREFIX):] if path.startswith(self.PREFIX) else path

    def join(self, basepath, *paths):
        return self.PREFIX + super().join(self._local(basepath), *paths)

    def split(self, path):
        head, tail = super().split(self._local(path))
        return self.PREFIX + head, tail

    def _path_open(self, path, *args, **kwargs):
        return super()._path_open(self._local(path), *args, **kwargs)

    def exists(self, path):
        return super().exists(self._local(path))

    def metadata(self, path):
        metadata = super().metadata(self._local(path))
        metadata.path = self.PREFIX + metadata.path
        return metadata

    def _list(self, dir_or_prefix):
        for folder, _, names in os.walk(self._local(dir_or_prefix)):
            for name in names:
                path = os.path.join(folder, name)
                yield FileMetadata(self.PREFIX + path, os.path.getsize(path),
                                   os.path.getmtime(path))


@pytest.mark.large  # The same pipeline as above, through another filesystem.
def test_model_and_manifest_on_a_remote_filesystem(exported, predictor, tmp_path,
                                                   capsys):
    model_dir = tmp_path / "models" / "cmaclip"
    shutil.copytree(exported.version_dir, model_dir / "3")
    names = ["jpeg", "png", "gif"]
    for name in names:
        (tmp_path / f"{name}.img").write_bytes(exported.images[name])
    with open(tmp_path / "items.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "image", "text"])
        writer.writerows([i, f"{name}.img", TEXTS[i]] for i, name in enumerate(names))
        writer.writerow([3, "missing.img", "x"])
    prefix = str(tmp_path / "out" / "predictions")
    remote = FakeRemoteFileSystem.PREFIX
    assert run_beam("--model", remote + str(model_dir), "--input",
                    remote + str(tmp_path / "*.csv"), "--output", prefix,
                    "--probabilities") == 0
    assert f"model: {remote}{model_dir / '3'}" in capsys.readouterr().out
    rows, dead = read_outputs(prefix)
    by_id = {row["id"]: row for row in rows}
    expected = predictor.predict([exported.images[n] for n in names], TEXTS[:3],
                                 probabilities=True)
    for i, prediction in enumerate(expected):
        assert_same(by_id[str(i)], prediction)
    assert by_id["3"]["error"].startswith(
        f"missing_image: {remote}{tmp_path / 'missing.img'}: ")
    assert [d["row"]["id"] for d in dead] == ["3"]
