"""Multi-task manifests: CSV or JSON Lines files of image, text and labels.

Columns: `image` (a path relative to the manifest's folder, or absolute),
`text`, then one column per task. An empty label (or JSON `null`, or a
missing key in JSON Lines) means "no label for this task": the example adds
no loss for it (label -1). A CSV needs a header row; `.jsonl`/`.json` files
hold one JSON object per line. Files are UTF-8, with or without the
byte-order mark Excel's "CSV UTF-8" writes (read as `utf-8-sig`).

Label vocabularies come from the training manifest (or are passed in, from a
saved run); a label outside them in any split is a bad record naming the
file and row.
"""

import csv
import json
import os

from cmaclip_tf.datasets import bad_records
from cmaclip_tf.datasets.dataset_builder import DatasetBuilder
from cmaclip_tf.datasets.file_records import FileRecord
from cmaclip_tf.datasets.task_columns import left_out_columns
from cmaclip_tf.datasets.task_columns import left_out_note

# A train manifest without a validation manifest keeps this share for it.
DEFAULT_VAL_FRACTION = 0.1
IMAGE_COLUMN = "image"
TEXT_COLUMN = "text"


def manifest_tasks(path):
    """The task columns of a manifest: every column but `image` and `text`."""
    columns = _columns(path)
    return [c for c in columns if c not in (IMAGE_COLUMN, TEXT_COLUMN)]


def read_manifest(path, tasks=None):
    """Parses a manifest into `FileRecord`s (rows are checked when streamed).

    Args:
        path: a `.csv`, `.jsonl` or `.json` file.
        tasks: task columns to read; default (`None`): all but `image` and
            `text`, of which there must be at least one. An empty list or
            tuple reads no labels, so a manifest of image-text pairs only
            (for contrastive pretraining) is valid.

    Returns:
        `(records, tasks)`.

    Raises:
        FileNotFoundError: no such manifest.
        ValueError: the header lacks `image`, `text` or a requested task,
            or `tasks` is `None` and there are no task columns.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Manifest {path} not found; pass a CSV or JSON Lines file with "
            "columns image, text and one per task to classify (--manifest)."
        )
    columns = _columns(path)
    missing = [c for c in (IMAGE_COLUMN, TEXT_COLUMN) if c not in columns]
    if missing:
        raise ValueError(
            f"Manifest {path} has no {' or '.join(missing)} column; its columns "
            f"are {columns}. Expected image, text and one column per task."
        )
    available = [c for c in columns if c not in (IMAGE_COLUMN, TEXT_COLUMN)]
    if tasks is None and not available:
        raise ValueError(
            f"Manifest {path} has no task columns besides image and text."
        )
    tasks = list(tasks) if tasks is not None else available
    unknown = [t for t in tasks if t not in available and not _is_jsonl(path)]
    if unknown:
        raise ValueError(
            f"Manifest {path} has no column for task(s) {unknown}; its task "
            f"columns are {available}. Name only tasks every manifest has "
            "with --tasks."
        )
    rows = manifest_rows(path)
    folder = os.path.dirname(os.path.abspath(path))
    records = []
    for line, row, problem in rows:
        location = f"{path}:{line}"
        if problem is not None:
            records.append(FileRecord("", "", {}, location, problem))
            continue
        image = row.get(IMAGE_COLUMN)
        if image in (None, ""):
            records.append(
                FileRecord(
                    "",
                    "",
                    {},
                    location,
                    (bad_records.MISSING_IMAGE, "the image column is empty"),
                )
            )
            continue
        text = row.get(TEXT_COLUMN)
        text = "" if text is None else str(text)
        labels = {task: _label(row.get(task)) for task in tasks}
        records.append(
            FileRecord(os.path.join(folder, str(image)), text, labels, location)
        )
    return records, tasks


def manifest_columns(path):
    """Every column of a manifest, in order (a JSON Lines file is read through)."""
    return _columns(path)


def manifest_rows(path):
    """Streams `(line, {column: value}, problem)` per data row of a manifest.

    Keeps nothing in memory, so it reads a manifest of any size. `problem` is
    `(reason, detail)` for a row that cannot be parsed (its dict is `None`);
    blank lines yield nothing. CSV values are strings; JSON Lines values keep
    their JSON types.
    """
    return _jsonl_rows(path) if _is_jsonl(path) else _csv_rows(path)


def _label(value):
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _is_jsonl(path):
    return path.endswith((".jsonl", ".json"))


def _columns(path):
    if _is_jsonl(path):
        columns = []
        for _, row, problem in _jsonl_rows(path):
            if problem is None:
                columns += [k for k in row if k not in columns]
        return columns
    with open(
        path, newline="", encoding="utf-8-sig", errors="surrogateescape"
    ) as f:
        return next(csv.reader(f), [])


def _csv_rows(path):
    with open(
        path, newline="", encoding="utf-8-sig", errors="surrogateescape"
    ) as f:
        yield from csv_file_rows(f)


def csv_file_rows(f):
    """`(line, {column: value}, problem)` per data row of an open CSV text file.

    `f` is opened with `newline=""` (quoted fields may span lines); problems
    are rows whose field count differs from the header's.
    """
    reader = csv.reader(f)
    header = next(reader, [])
    start = reader.line_num + 1
    for fields in reader:
        line, start = start, reader.line_num + 1
        if not fields:
            continue
        if len(fields) != len(header):
            yield line, None, (
                bad_records.MALFORMED_ROW,
                f"{len(fields)} fields where the header has {len(header)}",
            )
            continue
        yield line, dict(zip(header, fields)), None


def _jsonl_rows(path):
    with open(path, "rb") as f:
        for line, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8-sig", errors="surrogateescape"))
            except json.JSONDecodeError as error:
                yield line, None, (
                    bad_records.MALFORMED_ROW,
                    f"invalid JSON: {error.msg}",
                )
                continue
            if not isinstance(row, dict):
                yield line, None, (
                    bad_records.MALFORMED_ROW,
                    "not a JSON object",
                )
                continue
            yield line, row, None


def _read_rows(path, tasks):
    """`read_manifest`, refusing a manifest without a data row."""
    records, tasks = read_manifest(path, tasks)
    if not records:
        raise ValueError(
            f"Manifest {path} has no data rows (a header only?); add one row "
            "per example: image, text and the task labels."
        )
    return records, tasks


class ManifestDataset(DatasetBuilder):
    """Manifests: `build(manifest, val_manifest=None, test_manifest=None)`.

    Without `val_manifest`, validation is a stratified share of the train
    manifest (`SplitSpec`; 10% by default); without `test_manifest`, the
    test split is empty. Without named tasks, the tasks are the columns
    that can be ones (`task_columns`); a note names those left out.
    """

    name = "manifest"

    def build(self, manifest=None, val_manifest=None, test_manifest=None,
              num_workers=4, **_):
        manifest = self.require("a train manifest", manifest, "--manifest")
        tasks = self.tasks
        if tasks is None and self.label_vocabularies is not None:
            tasks = list(self.label_vocabularies)  # A trained run's tasks.
        train, columns = _read_rows(manifest, tasks)
        validation = None
        if val_manifest:
            # Unnamed tasks: a column the validation manifest lacks is no task.
            present = columns if tasks is not None else [
                c for c in columns if c in manifest_tasks(val_manifest)]
            validation, _ = _read_rows(val_manifest, present)
        notes = []
        if tasks is None:
            left_out = left_out_columns(columns, train, validation, val_manifest)
            tasks = [c for c in columns if c not in left_out]
            if not tasks:
                raise ValueError(
                    f"Manifest {manifest} has no column to train as a task: "
                    f"{left_out_note(tasks, left_out)}"
                )
            if left_out:
                notes.append(left_out_note(tasks, left_out))
        else:
            tasks = columns
        if validation is None:
            train, validation, carve_notes = self.carve_file_validation(
                train, tasks, default_fraction=DEFAULT_VAL_FRACTION
            )
            notes += carve_notes
        test = _read_rows(test_manifest, tasks)[0] if test_manifest else []
        return self.file_dataset(
            {"train": train, "validation": validation, "test": test}, tasks,
            f"Manifest {manifest}", notes, num_workers,
        )
