"""TFDS builders (manual download), built on tiny fixtures into a tmp
data_dir, then read back through `load_dataset("tfds:...")`."""

import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from fixtures_data import FOOD_CLASSES  # noqa: E402
from fixtures_data import SUBCATEGORIES  # noqa: E402
from fixtures_data import write_fashion_gen  # noqa: E402
from fixtures_data import write_food101  # noqa: E402

from cmaclip_tf.datasets import load_dataset  # noqa: E402
from cmaclip_tf.datasets.tfds import FashionGen  # noqa: E402
from cmaclip_tf.datasets.tfds import UpmcFood101  # noqa: E402
from cmaclip_tf.datasets.tfds.build import build_dataset  # noqa: E402
from cmaclip_tf.datasets.tfds.build import main as build_main  # noqa: E402


def build(builder_class, config, manual_dir, data_dir):
    builder = builder_class(config=config, data_dir=str(data_dir))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    )
    return builder


def test_upmc_food101_builds_and_reads_back(tmp_path):
    fixture = write_food101(str(tmp_path / "raw"))
    builder = build_dataset(
        "upmc_food101/val20", str(tmp_path / "raw"), str(tmp_path / "tfds")
    )
    splits = builder.info.splits
    # 19 train rows, 2 bad, round(0.2 * 19) = 4 of them for validation. 8 test
    # rows, 1 malformed; "ramen" is one of the 101 classes, so it stays.
    assert (
        splits["train"].num_examples + splits["validation"].num_examples == 17
    )
    assert splits["validation"].num_examples in (3, 4)
    assert splits["test"].num_examples == fixture["test_rows"] - 1
    bad = builder.info.metadata["bad_records"]
    assert [reason for _, reason in bad["test"]] == ["malformed_row"]

    dataset = load_dataset(
        "tfds:upmc_food101/val20", data_dir=str(tmp_path / "tfds")
    )
    assert dataset.tasks["label"].names == sorted(dataset.tasks["label"].names)
    assert len(dataset.tasks["label"]) == 101
    test = list(dataset.splits["test"].as_numpy_iterator())
    names = [dataset.tasks["label"].name(r["labels"]["label"]) for r in test]
    assert sorted(names) == sorted(
        [c for c in FOOD_CLASSES for _ in range(2)] + ["ramen"]
    )
    assert all(
        r["image"][:3] == b"\xff\xd8\xff" for r in test
    )  # Still encoded.
    counts = dataset.bad_records.counts()
    assert counts["test"] == {"malformed_row": 1}
    assert (
        sum(sum(counts.get(s, {}).values()) for s in ("train", "validation"))
        == 2
    )


def test_fashion_gen_builds_and_reads_back(tmp_path, capsys):
    fixture = write_fashion_gen(
        str(tmp_path / "raw"), train_per_class=5, validation_per_class=1
    )
    # The command line: python -m cmaclip_tf.datasets.tfds NAME --manual_dir ...
    build_main(
        [
            "fashion_gen/val20",
            f"--manual_dir={tmp_path / 'raw'}",
            f"--data_dir={tmp_path / 'tfds'}",
        ]
    )
    assert "Built fashion_gen/val20" in capsys.readouterr().out
    builder = FashionGen(config="val20", data_dir=str(tmp_path / "tfds"))
    assert builder.info.features["subcategory"].names == sorted(SUBCATEGORIES)
    splits = builder.info.splits
    # Every train-file row is kept: Latin-1 descriptions are decoded.
    assert (
        splits["validation"].num_examples + splits["train"].num_examples == 20
    )
    assert splits["test"].num_examples == fixture["rows"]["validation"] - 1

    dataset = load_dataset(
        "tfds:fashion_gen/val20",
        data_dir=str(tmp_path / "tfds"),
        tasks=["subcategory", "category"],
    )
    test = list(dataset.splits["test"].as_numpy_iterator())
    # TFDS stores examples in key-hash order.
    assert sorted(
        dataset.tasks["subcategory"].name(r["labels"]["subcategory"])
        for r in test
    ) == sorted(fixture["subcategories"]["validation"][:-1])
    assert (
        test[0]["image"][:4] == b"\x89PNG"
    )  # Lossless: same pixels as the HDF5.
    assert dataset.bad_records.counts()["test"] == {"unknown_label": 1}


def test_missing_manual_files_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match=r"texts/train_titles\.csv"):
        build(UpmcFood101, "val20", tmp_path / "empty", tmp_path / "tfds")
    with pytest.raises(Exception, match=r"fashiongen_256_256_train\.h5"):
        build(FashionGen, "val20", tmp_path / "empty", tmp_path / "tfds")
    assert "manual_dir" in UpmcFood101.MANUAL_DOWNLOAD_INSTRUCTIONS
    with pytest.raises(FileNotFoundError, match="python -m cmaclip_tf.datasets.tfds"):
        load_dataset("tfds:upmc_food101", data_dir=str(tmp_path / "nothing"))
