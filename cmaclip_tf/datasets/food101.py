"""UPMC Food-101 in its distributed layout.

    DATA_DIR/images/train/<class>/<file>.jpg
    DATA_DIR/images/test/<class>/<file>.jpg
    DATA_DIR/texts/train_titles.csv    (no header: filename, text, class)
    DATA_DIR/texts/test_titles.csv

One task, `label` (101 classes). The validation split is a stratified sample
of the training split: 5,000 examples by default, as MMBT does, or
`val_fraction` of it (the paper's 0.2).
"""

import csv
import os

from cmaclip_tf.datasets import bad_records
from cmaclip_tf.datasets.dataset_builder import DatasetBuilder
from cmaclip_tf.datasets.file_records import FileRecord

TASK = "label"
DEFAULT_VAL_SIZE = 5000
SOURCE_URL = "https://www.kaggle.com/gianmarco96/upmcfood101"


def titles_file(data_dir, split):
    return os.path.join(data_dir, "texts", f"{split}_titles.csv")


def check_layout(data_dir):
    """Raises `FileNotFoundError` naming what is missing from `data_dir`."""
    expected = [
        titles_file(data_dir, "train"),
        titles_file(data_dir, "test"),
        os.path.join(data_dir, "images", "train"),
        os.path.join(data_dir, "images", "test"),
    ]
    missing = [p for p in expected if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(
            f"UPMC Food-101 not found in {data_dir}: missing "
            f"{', '.join(os.path.relpath(p, data_dir) for p in missing)}. Get it "
            f"from {SOURCE_URL} (folders images/ and texts/) and pass its folder "
            "as --data-dir."
        )


def read_food101_split(data_dir, split):
    """`FileRecord`s of the `train` or `test` titles file, in file order."""
    path = titles_file(data_dir, split)
    records = []
    with open(
        path, newline="", encoding="utf-8-sig", errors="surrogateescape"
    ) as f:
        reader = csv.reader(f)
        start = 1
        for fields in reader:
            line, start = start, reader.line_num + 1
            if not fields:
                continue
            location = f"{path}:{line}"
            if len(fields) != 3:
                records.append(
                    FileRecord(
                        "",
                        "",
                        {},
                        location,
                        (
                            bad_records.MALFORMED_ROW,
                            f"{len(fields)} fields; expected filename, text, class",
                        ),
                    )
                )
                continue
            filename, text, label = fields
            image = os.path.join(data_dir, "images", split, label, filename)
            records.append(FileRecord(image, text, {TASK: label}, location))
    return records


class Food101Dataset(DatasetBuilder):
    """UPMC Food-101: `build(data_dir)`; validation carved out of train."""

    name = "food101"

    def build(self, data_dir=None, num_workers=4, **_):
        data_dir = self.require("its data folder", data_dir, "--data-dir")
        if self.tasks is not None and self.tasks != [TASK]:
            raise ValueError(f"Food-101 has one task, {TASK!r}; got {self.tasks}.")
        check_layout(data_dir)
        train = read_food101_split(data_dir, "train")
        test = read_food101_split(data_dir, "test")
        train, validation, notes = self.carve_file_validation(
            train, [TASK], default_size=DEFAULT_VAL_SIZE
        )
        return self.file_dataset(
            {"train": train, "validation": validation, "test": test}, [TASK],
            f"UPMC Food-101 in {data_dir}", notes, num_workers,
        )
