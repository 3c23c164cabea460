"""Multi-task manifests: labels, missing labels, bad records, vocabularies."""

import csv
import os

import pytest
from fixtures_data import encoded_image
from fixtures_data import write_manifest

from cmaclip_tf.datasets import BadRecordCounter
from cmaclip_tf.datasets import BadRecordError
from cmaclip_tf.datasets import LabelVocabularies
from cmaclip_tf.datasets import load_dataset


def label_ids(names, vocabulary):
    return [vocabulary.index(n) if n else -1 for n in names]


@pytest.mark.parametrize("jsonl", [False, True])
def test_yields_good_rows_with_labels_and_counts_bad_rows(tmp_path, jsonl):
    fixture = write_manifest(str(tmp_path), jsonl=jsonl)
    dataset = load_dataset(
        "manifest", manifest=fixture["path"], val_manifest=fixture["path"]
    )
    assert dataset.tasks.to_json() == {
        "tasks": {
            "color": ["blue", "green", "red"],
            "pattern": ["plain", "striped"],
        }
    }
    for split in ("train", "validation"):
        raw = list(dataset.splits[split].as_numpy_iterator())
        assert len(raw) == fixture["good"] == 8
        assert [r["text"].decode() for r in raw] == fixture["texts"]
        for task in ("color", "pattern"):
            assert [int(r["labels"][task]) for r in raw] == label_ids(
                fixture["labels"][task], dataset.tasks[task]
            )
    expected_bad = dict(fixture["bad"])
    assert dataset.bad_records.counts() == {
        "train": expected_bad,
        "validation": expected_bad,
    }
    # A second epoch (read from tensors now) yields the same records, and
    # the counts do not grow.
    first = list(dataset.split("train").as_numpy_iterator())
    second = list(dataset.split("train").as_numpy_iterator())
    assert [r["text"].decode() for r in first] == fixture["texts"]
    assert [r["id"] for r in second] == [r["id"] for r in first]
    assert [r["image"] for r in second] == [r["image"] for r in first]
    assert dataset.bad_records.total("train") == 4
    assert len(list(dataset.split("test"))) == 0
    messages = "\n".join(dataset.bad_records.messages("train"))
    assert (
        os.path.basename(fixture["path"]) in messages
        and "broken.jpg" in messages
    )
    assert dataset.splits["test"].reduce(0, lambda n, _: n + 1).numpy() == 0


def test_missing_labels_are_minus_one_in_batches(tmp_path, tiny_clip):
    from cmaclip_tf.preprocessing import ImagePreprocessor
    from cmaclip_tf.preprocessing import TextPreprocessor
    from cmaclip_tf.preprocessing.input_pipeline import make_batches

    fixture = write_manifest(str(tmp_path))
    dataset = load_dataset(
        "manifest", manifest=fixture["path"], val_manifest=fixture["path"]
    )
    batches = make_batches(
        dataset.splits["validation"],
        TextPreprocessor.from_tokenizer(tiny_clip.tokenizer, 16),
        ImagePreprocessor(24),
        batch_size=8,
        training=False,
    )
    ((features, labels),) = list(batches)
    assert labels["color"].numpy().tolist() == [2, 0, 1, -1, 2, 0, 1, 2]
    assert labels["pattern"].numpy().tolist() == [0, 1, -1, 1, 1, -1, 0, 0]
    assert features["images"].shape == (8, 24, 24, 3)
    assert features["token_ids"].shape == (8, 16)


def test_unknown_label_in_evaluation_data_is_counted_or_raised(tmp_path):
    fixture = write_manifest(str(tmp_path))
    val = tmp_path / "val.csv"
    with open(val, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "text", "color", "pattern"])
        writer.writerow(["images/0.jpg", "fine", "red", "plain"])
        writer.writerow(["images/1.png", "new color", "magenta", "plain"])
    dataset = load_dataset(
        "manifest", manifest=fixture["path"], val_manifest=str(val)
    )
    assert len(list(dataset.splits["validation"])) == 1
    assert dataset.bad_records.counts()["validation"] == {"unknown_label": 1}
    assert "val.csv:3" in dataset.bad_records.messages("validation")[0]
    assert "'magenta'" in dataset.bad_records.messages("validation")[0]

    strict = load_dataset(
        "manifest",
        manifest=fixture["path"],
        val_manifest=str(val),
        on_bad_record="error",
    )
    # Raised in Python when the split is first read, not from inside tf.data.
    with pytest.raises(BadRecordError, match=r"val\.csv:3.*unknown label.*magenta"):
        strict.split("validation")


def test_error_policy_stops_at_the_first_bad_train_row(tmp_path):
    fixture = write_manifest(str(tmp_path))
    dataset = load_dataset(
        "manifest",
        manifest=fixture["path"],
        val_manifest=fixture["path"],
        on_bad_record="error",
    )
    with pytest.raises(BadRecordError, match=r"train\.csv:5.*corrupt image"):
        dataset.num_examples


def test_absolute_paths_and_default_validation_split(tmp_path):
    rows = []
    for i in range(20):
        path = tmp_path / f"{i}.png"
        path.write_bytes(encoded_image(image_format="PNG"))
        rows.append(
            [
                str(path) if i % 2 else path.name,
                f"item {i}",
                "a" if i < 10 else "b",
            ]
        )
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows([["image", "text", "kind"]] + rows)
    dataset = load_dataset("manifest", manifest=str(manifest), seed=1)
    # 10% of 20, stratified: one of each class.
    assert dataset.num_examples == {"train": 18, "validation": 2, "test": 0}
    val = list(dataset.splits["validation"].as_numpy_iterator())
    assert sorted(int(r["labels"]["kind"]) for r in val) == [0, 1]
    train = list(dataset.splits["train"].as_numpy_iterator())
    assert len(train) == 18 and dataset.bad_records.counts() == {}


def test_label_vocabularies_round_trip_and_reuse(tmp_path):
    fixture = write_manifest(str(tmp_path))
    dataset = load_dataset(
        "manifest", manifest=fixture["path"], val_manifest=fixture["path"]
    )
    path = dataset.save(str(tmp_path / "run"))
    assert os.path.basename(path) == "label_vocabularies.json"
    loaded = LabelVocabularies.load(str(tmp_path / "run"))
    assert loaded == dataset.tasks
    assert loaded.num_classes == {"color": 3, "pattern": 2}
    reused = load_dataset(
        "manifest",
        manifest=fixture["path"],
        val_manifest=fixture["path"],
        label_vocabularies=str(tmp_path / "run"),
    )
    assert reused.tasks == dataset.tasks


def test_clear_errors_for_missing_files_and_columns(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv not found"):
        load_dataset("manifest", manifest=str(tmp_path / "nope.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("picture,text,color\nx.png,t,red\n")
    with pytest.raises(ValueError, match="no image column"):
        load_dataset("manifest", manifest=str(bad))
    with pytest.raises(ValueError, match="Unknown dataset"):
        load_dataset("imagenet")


def test_bad_record_counter_policy():
    counter = BadRecordCounter()
    counter.report("train", "corrupt_image", "a.csv:2", "truncated")
    counter.report("train", "corrupt_image", "a.csv:2", "truncated")
    counter.report("test", "unknown_label", "b.csv:9")
    assert counter.counts() == {
        "train": {"corrupt_image": 1},
        "test": {"unknown_label": 1},
    }
    assert counter.total() == 2
    assert "train: 1 bad records skipped (corrupt_image 1)" in counter.summary()
    with pytest.raises(BadRecordError, match="a.csv:3: missing image"):
        BadRecordCounter("error").report("train", "missing_image", "a.csv:3")
    with pytest.raises(ValueError):
        BadRecordCounter("ignore")


def test_image_text_pairs_without_task_columns_need_tasks_none_asked(tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(encoded_image((200, 30, 40)))
    (folder / "b.jpg").write_bytes(encoded_image((30, 30, 200)))
    (folder / "c.jpg").write_bytes(b"not an image")
    manifest = folder / "pairs.csv"
    manifest.write_text("image,text\na.jpg,a red dress\nb.jpg,blue shorts\n"
                        "c.jpg,broken\nmissing.jpg,gone\n")
    # A labelled run needs a task column; pretraining asks for none.
    with pytest.raises(ValueError, match="no task columns"):
        load_dataset("manifest", manifest=str(manifest))
    dataset = load_dataset("manifest", manifest=str(manifest),
                           val_manifest=str(manifest), tasks=())
    assert dataset.task_names == []
    assert dataset.num_examples == {"train": 2, "validation": 2, "test": 0}
    assert dataset.bad_records.counts()["train"] == {
        "corrupt_image": 1, "missing_image": 1}
    texts = [e["text"] for e in dataset.split("train").as_numpy_iterator()]
    assert texts == [b"a red dress", b"blue shorts"]
    # Without a validation manifest, a share of train (one stratum) is carved.
    carved = load_dataset("manifest", manifest=str(manifest), tasks=(),
                          val_fraction=0.5)
    assert carved.num_examples["train"] + carved.num_examples["validation"] == 2


def _catalogue_with_columns(tmp_path):
    """A catalogue whose train manifest adds `sku` (an id) and `size` (the
    validation manifest has no such column), and one red row typed `gren`."""
    from fixtures_data import write_catalogue

    catalogue = write_catalogue(str(tmp_path))
    with open(catalogue["train"], newline="") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows):
        row.update(sku=f"SKU-{1000 + i}", size="SML"[i % 3])
    rows[7]["color"] = "gren"
    train = tmp_path / "train_more.csv"
    with open(train, "w", newline="") as f:
        writer = csv.DictWriter(f, ["image", "text", "color", "shape", "sku",
                                    "size"])
        writer.writeheader()
        writer.writerows(rows)
    return str(train), catalogue["val"]


def test_ids_and_columns_without_validation_labels_are_no_tasks(tmp_path):
    train, val = _catalogue_with_columns(tmp_path)
    dataset = load_dataset("manifest", manifest=train, val_manifest=val)
    assert dataset.task_names == ["color", "shape"]
    (note,) = dataset.notes
    assert note == (
        "Columns not trained as tasks: sku (an id? 37 distinct values in 37 "
        f"rows); size (no label in the validation manifest {val}). To train "
        "them anyway, name the tasks: --tasks color,shape,sku,size.")
    # Named, a column is a task; the validation manifest must then have it.
    named = load_dataset("manifest", manifest=train, tasks=["color", "sku"])
    assert named.task_names == ["color", "sku"] and not named.notes
    with pytest.raises(ValueError, match="no column for task.*--tasks"):
        load_dataset("manifest", manifest=train, val_manifest=val,
                     tasks=["color", "size"])
    # Carved out of train, validation has every column: only the id goes.
    carved = load_dataset("manifest", manifest=train)
    assert carved.task_names == ["color", "shape", "size"]


def test_class_counts_and_classes_training_never_saw(tmp_path):
    train, val = _catalogue_with_columns(tmp_path)
    dataset = load_dataset("manifest", manifest=train, val_manifest=val)
    assert dataset.tasks["color"].names == ["blue", "green", "gren", "red"]
    # 12 rows a color; of red's, a missing and a corrupt image and the typo.
    assert dataset.class_counts("train") == {"color": [12, 12, 1, 10],
                                             "shape": [18, 17]}
    assert dataset.unknown_labels("validation") == {("color", "teal"): 1}
    assert dataset.unknown_labels("train") == {}


def test_empty_manifests_are_one_clear_error(tmp_path):
    header_only = tmp_path / "train.csv"
    header_only.write_text("image,text,color\n")
    with pytest.raises(ValueError, match=r"train\.csv has no data rows"):
        load_dataset("manifest", manifest=str(header_only))
    unlabelled = tmp_path / "unlabelled.csv"
    (tmp_path / "a.png").write_bytes(encoded_image(image_format="PNG"))
    unlabelled.write_text("image,text,color\na.png,red dress,\na.png,shirt,\n")
    with pytest.raises(ValueError, match=r"no label in the training manifest"):
        load_dataset("manifest", manifest=str(unlabelled))
    with pytest.raises(ValueError, match=r"has a label for task\(s\) \['color'\]"):
        load_dataset("manifest", manifest=str(unlabelled), tasks=["color"])

@pytest.mark.parametrize("jsonl", [False, True])
def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path, jsonl):
    # Excel's "CSV UTF-8" starts the file with one.
    fixture = write_manifest(str(tmp_path), jsonl=jsonl)
    plain = load_dataset("manifest", manifest=fixture["path"],
                         val_manifest=fixture["path"])
    with open(fixture["path"], "rb") as f:
        content = f.read()
    with open(fixture["path"], "wb") as f:
        f.write(b"\xef\xbb\xbf" + content)
    marked = load_dataset("manifest", manifest=fixture["path"],
                          val_manifest=fixture["path"])
    assert marked.tasks.to_json() == plain.tasks.to_json()
    assert marked.num_examples == plain.num_examples
    assert marked.bad_records.counts() == plain.bad_records.counts()
