"""UPMC Food-101 from its distributed layout: counts, labels, stratified
validation split, bad records."""

import collections

import pytest
from fixtures_data import FOOD_CLASSES
from fixtures_data import write_food101

from cmaclip_tf.datasets import load_dataset
from cmaclip_tf.datasets.stratified_split import stratified_split


@pytest.fixture(scope="module")
def food101_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("upmc_food101")
    return str(root), write_food101(str(root))


def test_splits_labels_and_bad_records(food101_dir):
    root, fixture = food101_dir
    dataset = load_dataset("food101", data_dir=root, val_size=3, seed=0)
    assert dataset.tasks.to_json() == {"tasks": {"label": list(FOOD_CLASSES)}}
    rows = {s: len(source.records) for s, source in dataset.sources.items()}
    assert rows == {"train": 16, "validation": 3, "test": fixture["test_rows"]}

    raw = {
        s: list(dataset.splits[s].as_numpy_iterator())
        for s in ("train", "validation", "test")
    }
    # 19 train rows; one corrupt and one missing image, in either split.
    assert (
        len(raw["train"]) + len(raw["validation"]) == fixture["train_rows"] - 2
    )
    # The sizes count good records only: what an epoch can batch.
    assert dataset.num_examples == {s: len(r) for s, r in raw.items()}
    counts = dataset.bad_records.counts()
    merged = collections.Counter(counts.get("train", {})) + collections.Counter(
        counts.get("validation", {})
    )
    assert dict(merged) == fixture["bad"]["train"]
    assert counts["test"] == fixture["bad"]["test"]

    # Test: two of each class, in file order; the unknown class is skipped.
    assert [int(r["labels"]["label"]) for r in raw["test"]] == [
        0,
        0,
        1,
        1,
        2,
        2,
    ]
    assert raw["test"][0]["text"].decode() == "Best apple pie recipe, 0"
    assert raw["test"][0]["id"].decode().endswith("test_titles.csv:1")
    assert raw["test"][0]["image"][:3] == b"\xff\xd8\xff"
    # Validation keeps one example per class (3 of 19 rows, stratified).
    val_ids = {r["id"].decode() for r in raw["validation"]}
    train_ids = {r["id"].decode() for r in raw["train"]}
    assert not val_ids & train_ids


def test_val_fraction_and_stratification():
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    train, val = stratified_split(labels, 20, seed=0)
    by_class = collections.Counter(labels[i] for i in val)
    assert by_class == {"a": 12, "b": 6, "c": 2}
    assert len(train) == 80 and not set(train) & set(val)
    again, _ = stratified_split(labels, 20, seed=0)
    assert list(again) == list(train)
    other, _ = stratified_split(labels, 20, seed=1)
    assert list(other) != list(train)


def test_val_fraction_option(food101_dir):
    root, _ = food101_dir
    dataset = load_dataset("food101", data_dir=root, val_fraction=0.2)
    assert len(dataset.sources["validation"].records) == 4  # round(19 * 0.2)
    assert len(dataset.sources["train"].records) == 15
    assert not dataset.notes


def test_clear_errors(tmp_path, food101_dir):
    with pytest.raises(
        FileNotFoundError, match=r"texts/train_titles\.csv.*kaggle"
    ):
        load_dataset("food101", data_dir=str(tmp_path))
    root, _ = food101_dir
    # MMBT's 5,000 cannot come out of 19 rows when asked for explicitly...
    with pytest.raises(ValueError, match="--val-size or --val-fraction"):
        load_dataset("food101", data_dir=root, val_size=5000)
    # ...and by default a small folder gets 10% of train, with a note.
    small = load_dataset("food101", data_dir=root)
    assert len(small.sources["validation"].records) == 2  # round(19 * 0.1)
    assert len(small.notes) == 1 and "--val-size" in small.notes[0]
    with pytest.raises(ValueError, match="pass --data-dir"):
        load_dataset("food101")
