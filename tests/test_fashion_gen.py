"""Fashion-Gen HDF5 files, streamed in blocks: counts, labels, pixels, bad
records."""

import h5py
import numpy as np
import pytest

from cmaclip_tf.data import BadRecordCounter
from cmaclip_tf.data import LabelVocabularies
from cmaclip_tf.data import fashion_gen
from cmaclip_tf.data import load_dataset
from fixtures_data import SUBCATEGORIES
from fixtures_data import write_fashion_gen


@pytest.fixture(scope="module")
def fashion_gen_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fashion_gen")
    return str(root), write_fashion_gen(str(root))


def row_of(record):
    return int(record["id"].decode().rsplit("row ", 1)[1])


def test_splits_labels_pixels_and_bad_records(fashion_gen_dir):
    root, fixture = fashion_gen_dir
    dataset = load_dataset(
        "fashion_gen",
        data_dir=root,
        tasks=["subcategory", "category"],
        val_size=4,
    )
    assert dataset.tasks.to_json()["tasks"] == {
        "subcategory": sorted(SUBCATEGORIES),
        "category": ["DRESSES", "JACKETS & COATS", "JEANS", "TOPS"],
    }
    assert dataset.num_examples == {"train": 28, "validation": 4, "test": 9}
    raw = {
        s: list(dataset.splits[s].as_numpy_iterator())
        for s in ("train", "validation", "test")
    }
    assert (
        len(raw["train"]) + len(raw["validation"]) == 32 - 1
    )  # One undecodable.
    assert len(raw["test"]) == 8  # SNEAKERS is not a training class.
    counts = dataset.bad_records.counts()
    assert counts["test"] == {"unknown_label": 1}
    assert (
        sum(counts.get("train", {}).values())
        + sum(counts.get("validation", {}).values())
        == 1
    )
    # Stratified: one validation example per sub-category.
    assert sorted(
        int(r["labels"]["subcategory"]) for r in raw["validation"]
    ) == [0, 1, 2, 3]

    with h5py.File(f"{root}/{fashion_gen.TRAIN_FILE}", "r") as f:
        for record in raw["train"][:3] + raw["validation"][:1]:
            row = row_of(record)
            np.testing.assert_array_equal(
                record["image"], f["input_image"][row]
            )
            assert (
                record["image"].shape == (256, 256, 3)
                and record["image"].dtype == np.uint8
            )
            subcategory = fixture["subcategories"]["train"][row]
            assert (
                dataset.tasks["subcategory"].name(
                    record["labels"]["subcategory"]
                )
                == subcategory
            )
            assert (
                record["text"].decode()
                == f"Item {row}: {subcategory.lower()} in cotton. Logo at chest."
            )
    assert fixture["undecodable_train_row"] not in {
        row_of(r) for r in raw["train"] + raw["validation"]
    }


def test_default_task_is_subcategory(fashion_gen_dir):
    root, _ = fashion_gen_dir
    dataset = load_dataset("fashion_gen", data_dir=root, val_fraction=0.125)
    assert list(dataset.tasks) == ["subcategory"]
    assert dataset.num_examples["validation"] == 4


def test_streams_in_bounded_blocks(fashion_gen_dir, monkeypatch):
    root, fixture = fashion_gen_dir
    reads = []
    original = fashion_gen._read_rows

    def recording(data, block):
        rows = original(data, block)
        reads.append(len(rows))
        return rows

    monkeypatch.setattr(fashion_gen, "_read_rows", recording)
    tasks = LabelVocabularies({"subcategory": sorted(SUBCATEGORIES)})
    indices = np.array([0, 2, 5, 6, 7, 8, 20, 31])  # Sparse and dense runs.
    source = fashion_gen.FashionGenSource(
        f"{root}/{fashion_gen.TRAIN_FILE}",
        indices,
        "train",
        tasks,
        BadRecordCounter(),
        block_size=3,
    )
    rows = [row_of(r) for r in source()]
    assert rows == [0, 2, 5, 6, 7, 8, 20, 31]
    assert max(reads) <= 2 * 3  # Never more than two blocks' rows at once.


def test_missing_files_are_named(tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match="fashiongen_256_256_train.h5 and "
        "fashiongen_256_256_validation.h5 not found",
    ):
        load_dataset("fashion_gen", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="no task"):
        fashion_gen.check_tasks(["color"])
