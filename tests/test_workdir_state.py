"""A workdir belongs to one run's data, as a user meets it: a failed run
leaves nothing, a good run says what it read, the same command resumes, and
a command on other data is refused until --overwrite."""

import argparse
import csv
import json
import os

import keras
import pytest
from fixtures_data import write_catalogue
from micro_model import micro_model_path

from cmaclip_tf.datasets import LabelVocabularies
from trainers import run as run_cli
from trainers.training.workdir_state import check_workdir
from trainers.training.workdir_state import clear_workdir
from trainers.training.workdir_state import write_data_record


def write_user_catalogue(root):
    """The fixture catalogue as a user's export: an `sku` id column, and
    one red row's color typed `gren`. Returns the train manifest, the same
    with the typo fixed, and the validation manifest."""
    catalogue = write_catalogue(root)
    with open(catalogue["train"], newline="") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows):
        row["sku"] = f"SKU-{1000 + i}"
    assert rows[7]["color"] == "red"
    rows[7]["color"] = "gren"
    paths = {}
    for name, typo in (("typo", True), ("fixed", False)):
        path = os.path.join(root, f"train_{name}.csv")
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, ["image", "text", "color", "shape", "sku"])
            writer.writeheader()
            for i, row in enumerate(rows):
                if i == 7 and not typo:
                    row = dict(row, color="red")
                writer.writerow(row)
        paths[name] = path
    return paths["typo"], paths["fixed"], catalogue["val"]


def run(argv, capsys):
    keras.backend.clear_session()
    code = run_cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.large
def test_failed_run_then_good_run_then_other_data(tmp_path, capsys):
    typo, fixed, val = write_user_catalogue(str(tmp_path / "data"))
    workdir = tmp_path / "run"
    common = ["--dataset", "manifest", "--val-manifest", val,
              "--model", micro_model_path(), "--stage", "warmup",
              "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "7",
              "--quiet", "--workdir", str(workdir)]

    # Fails after the data loaded and the run's files were written, before
    # its first step (a CLIP preset that does not exist): nothing is left.
    code, _, err = run(["--manifest", typo, *common,
                        "--clip-preset", str(tmp_path / "no_preset")], capsys)
    assert code == 2 and err.startswith("error: ")
    assert not workdir.exists()

    # The good run in the same workdir reads its own data.
    code, out, _ = run(["--manifest", typo, *common], capsys)
    assert code == 0
    vocabularies = LabelVocabularies.load(str(workdir))
    assert vocabularies.to_json()["tasks"] == {
        "color": ["blue", "green", "gren", "red"], "shape": ["round", "square"]}
    data = [line for line in out.splitlines() if line.startswith("[data]")]
    assert "[data] manifest: train 35, validation 6, test 0; tasks color (4), " \
        "shape (2)" in data
    # Classes with counts (12 rows a color; of red's, one image is missing,
    # one corrupt and one row says gren), the typo flagged.
    assert "[data] color: blue 12, green 12, red 10, gren 1" in data
    assert "[data] color: rare in training (<= 2 rows; a typo?): gren 1" in data
    assert "[data] validation: classes training never saw (rows left out): " \
        "color teal 1" in data
    note = next(line for line in data if "sku" in line)
    assert "an id? 37 distinct values in 37 rows" in note
    assert "--tasks color,shape,sku" in note
    bad = next(line for line in data if "bad records skipped" in line)
    assert f"corrupt_image 1 ({typo}:3)" in bad and f"missing_image 1 ({typo}:7)" in bad
    assert out.count("bad records skipped") == 1  # Not again per epoch.
    with open(workdir / "bad_records.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["split"], r["location"], r["reason"]) for r in rows] == [
        ("train", f"{typo}:3", "corrupt_image"),
        ("train", f"{typo}:7", "missing_image"),
        ("validation", f"{val}:2", "unknown_label")]
    assert "'teal'" in rows[2]["detail"]

    # The same command resumes.
    code, out, _ = run(["--manifest", typo, *common], capsys)
    assert code == 0 and "[warmup] Already finished" in out

    # Other data in that workdir: refused in one line, the run untouched.
    code, out, err = run(["--manifest", fixed, *common], capsys)
    assert code == 2 and "[warmup]" not in out
    assert err.splitlines()[0] == (
        f"error: {workdir} holds a run on other data (color classes: 4 there, "
        "3 now; gone: gren); pass a new --workdir, or --overwrite to delete "
        "that run and start over.")
    assert LabelVocabularies.load(str(workdir)) == vocabularies
    code, out, _ = run(["--manifest", fixed, *common, "--overwrite"], capsys)
    assert code == 0 and "[warmup] Already finished" not in out
    assert LabelVocabularies.load(str(workdir)).to_json()["tasks"]["color"] == [
        "blue", "green", "red"]


def _state(workdir, tasks, **flags):
    os.makedirs(workdir, exist_ok=True)
    LabelVocabularies(tasks).save(str(workdir))
    record = {"flags": {"dataset": "manifest", "seed": 0, **flags},
              "manifests_sha256": {"manifest": "aa"},
              "examples": {"train": 10, "validation": 2, "test": 0}}
    write_data_record(str(workdir), record)
    return record


def test_every_kind_of_difference_is_named(tmp_path):
    workdir = tmp_path / "run"
    record = _state(workdir, {"color": ["blue", "red"]})
    same = LabelVocabularies({"color": ["blue", "red"]})
    check_workdir(str(workdir), record, same)  # The same data: resumes.
    check_workdir(str(tmp_path / "new"), record, same)  # No run there yet.
    cases = [
        (record, LabelVocabularies({"color": ["blue", "red"], "sku": ["a"]}),
         "tasks color there, color, sku now"),
        (record, LabelVocabularies({"color": ["blue", "gren", "red"]}),
         "color classes: 2 there, 3 now; new: gren"),
        (dict(record, flags=dict(record["flags"], seed=1)), same,
         "--seed 0 there, 1 now"),
        (dict(record, manifests_sha256={"manifest": "bb"}), same,
         "another --manifest file"),
        (dict(record, examples={"train": 9, "validation": 2, "test": 0}), same,
         "examples per split"),
    ]
    for new_record, vocabularies, difference in cases:
        with pytest.raises(ValueError, match="--overwrite") as error:
            check_workdir(str(workdir), new_record, vocabularies)
        assert f"holds a run on other data ({difference}" in str(error.value)


def test_overwrite_deletes_only_a_run_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(ValueError, match="holds no run"):
        clear_workdir(str(folder))
    assert (folder / "holiday.jpg").exists()
    _state(tmp_path / "run", {"color": ["red"]})
    clear_workdir(str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_data_record_hashes_manifest_contents(tmp_path):
    from trainers.training.workdir_state import data_record

    manifest = tmp_path / "m.csv"
    manifest.write_text("image,text,color\na.jpg,t,red\n")

    class Dataset:
        num_examples = {"train": 1, "validation": 0, "test": 0}

    args = argparse.Namespace(dataset="manifest", manifest=str(manifest),
                              data_dir=None, seed=0)
    first = data_record(args, Dataset())
    manifest.write_text("image,text,color\na.jpg,t,blue\n")
    second = data_record(args, Dataset())
    assert first["flags"] == second["flags"]
    assert first["manifests_sha256"] != second["manifests_sha256"]
    assert json.loads(json.dumps(first)) == first  # What data.json holds.
