"""Fashion-Gen HDF5 files, streamed in blocks: counts, labels, pixels, bad
records."""

import h5py
import numpy as np
import pytest
from fixtures_data import SUBCATEGORIES
from fixtures_data import write_fashion_gen

from cmaclip_tf.datasets import BadRecordCounter
from cmaclip_tf.datasets import LabelVocabularies
from cmaclip_tf.datasets import fashion_gen
from cmaclip_tf.datasets import load_dataset


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
    raw = {
        s: list(dataset.splits[s].as_numpy_iterator())
        for s in ("train", "validation", "test")
    }
    # Every train-file row is kept (Latin-1 text is decoded, not skipped);
    # SNEAKERS, not a training class, is the one bad test-file row.
    assert dataset.num_examples == {"train": 28, "validation": 4, "test": 8}
    assert {s: len(r) for s, r in raw.items()} == dataset.num_examples
    assert dataset.bad_records.counts() == {"test": {"unknown_label": 1}}
    recovered = dataset.bad_records.recovered_counts()
    assert sum(recovered.get(s, {}).get("latin1_text", 0)
               for s in ("train", "validation")) == 2
    assert recovered["test"] == {"latin1_text": 1}
    texts = {row_of(r): r["text"].decode("utf-8")
             for r in raw["train"] + raw["validation"]}
    assert texts[3] == "Café latte-colored jeans"
    assert texts[11] == "Robe décolletée, 100% laine"
    assert "Jean délavé" in {r["text"].decode("utf-8") for r in raw["test"]}
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
            if row not in fixture["latin1_rows"]["train"]:
                assert (
                    record["text"].decode()
                    == f"Item {row}: {subcategory.lower()} in cotton. Logo at chest."
                )


def test_default_task_is_subcategory(fashion_gen_dir):
    root, _ = fashion_gen_dir
    dataset = load_dataset("fashion_gen", data_dir=root, val_fraction=0.125)
    assert list(dataset.tasks) == ["subcategory"]
    assert dataset.num_examples["validation"] == 4
    assert not dataset.notes


def test_a_small_file_gets_a_small_validation_split_by_default(fashion_gen_dir):
    # The default 5,000 does not fit 32 rows: 10% of them, with a note.
    root, _ = fashion_gen_dir
    dataset = load_dataset("fashion_gen", data_dir=root)
    assert dataset.num_examples["validation"] == 3  # round(0.1 * 32)
    assert dataset.num_examples["train"] == 29
    assert "--val-size" in dataset.notes[0] and "--val-fraction" in dataset.notes[0]
    with pytest.raises(ValueError, match="--val-size or --val-fraction"):
        load_dataset("fashion_gen", data_dir=root, val_size=5000)


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
    source.good_rows()  # The check reads only the small text and label columns.
    reads.clear()
    rows = [row_of(r) for r in source.examples()]
    assert rows == [0, 2, 5, 6, 7, 8, 20, 31]
    assert max(reads) <= 2 * 3  # Never more than two blocks' rows at once.
    # In any order (an epoch's permutation), still block by block.
    reads.clear()
    order = [5, 0, 7, 3, 1, 6, 2, 4]
    shuffled = list(source.examples(order))
    assert [row_of(r) for r in shuffled] == [int(indices[i]) for i in order]
    assert max(reads) <= 2 * 3
    with h5py.File(f"{root}/{fashion_gen.TRAIN_FILE}", "r") as f:
        for record in shuffled:
            np.testing.assert_array_equal(
                record["image"], f["input_image"][row_of(record)]
            )


def test_missing_files_are_named(tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match="fashiongen_256_256_train.h5 and "
        "fashiongen_256_256_validation.h5 not found",
    ):
        load_dataset("fashion_gen", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="no task"):
        fashion_gen.check_tasks(["color"])
