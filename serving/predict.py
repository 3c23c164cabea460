"""Predicts a whole manifest offline with a CMA-CLIP model: a catalogue backfill.

```
python -m serving.predict --model models/cmaclip --manifest items.csv \
    --output predictions.csv [--batch-size 64] [--tasks color,style] \
    [--only-accepted] [--probabilities] [--resume]
```

`--model` is what `cmaclip_tf.Predictor.load` takes: an export version
folder, a model folder of versions (the highest is used) or a training
workdir. The manifest is a CSV (with a header) or JSON Lines file with an
`image` column (a path, relative to the manifest's folder or absolute) and a
`text` column; every other column (ids, ...) is copied to the output.

Each input row gives one output row, in input order: the input's columns,
then per task `{task}_label`, `{task}_score`, `{task}_accepted` and
`{task}_image_weight` (λ) (and `{task}_probabilities` with
`--probabilities`), then `error`: empty, or why the row has no prediction
(`missing_image`, `corrupt_image`, `undecodable_text`, `text_too_long`,
`malformed_row`). A bad row never stops the run nor costs its batch.
`--only-accepted` keeps only confident answers: where a task's prediction is
not accepted, its label, score and λ are left empty.

Rows stream through `tf.data`: image files are read and decoded with the
model's own decoder in parallel, in order, a bounded number at a time, so
memory stays flat for any manifest size. A row that fails there is examined
again in Python for its message and never reaches the model. Output is
flushed after every batch; after an interruption, `--resume` continues where
the output file ends (a half-written last row is rewritten), so every row is
written exactly once. A progress bar (rate, ETA) goes to stderr and a
summary (rows, errors, accepted share per task) to stdout.
"""

import argparse
import collections
import csv
import dataclasses
import io
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402
from tqdm import tqdm  # noqa: E402

from cmaclip_tf.datasets import bad_records  # noqa: E402
from cmaclip_tf.datasets.manifest import IMAGE_COLUMN  # noqa: E402
from cmaclip_tf.datasets.manifest import TEXT_COLUMN  # noqa: E402
from cmaclip_tf.datasets.manifest import manifest_columns  # noqa: E402
from cmaclip_tf.datasets.manifest import manifest_rows  # noqa: E402
from cmaclip_tf.predictor import Predictor  # noqa: E402
from cmaclip_tf.preprocessing import ImagePreprocessor  # noqa: E402

OUTPUT_FIELDS = ("label", "score", "accepted", "image_weight")
ERROR_COLUMN = "error"
# Rows per trip from tf.data to Python: amortizes the per-element overhead.
STREAM_BATCH = 256


@dataclasses.dataclass
class Row:
    """One manifest row on its way through.

    Attributes:
        index: 0-based position among the manifest's rows.
        fields: the input's columns (empty for a row that could not be parsed).
        image_path: the image file, resolved against the manifest's folder.
        text: the text as UTF-8 bytes.
        problem: `"reason: detail"` once the row is known to be bad.
    """

    index: int
    fields: dict
    image_path: str = ""
    text: bytes = b""
    problem: str = None


# === Input ===


class Manifest:
    """A CSV or JSON Lines manifest, streamed row by row.

    Args:
        path: the manifest file.

    Attributes:
        columns: its columns in order (for JSON Lines, every key seen).
        num_rows: how many data rows it has (each gives one output row).
    """

    def __init__(self, path):
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Manifest {path} not found; pass a CSV or JSON Lines file with "
                "columns image and text (--manifest)."
            )
        self.path = path
        self.folder = os.path.dirname(os.path.abspath(path))
        self.jsonl = is_jsonl(path)
        # One pass to count rows (for the progress bar) and, for JSON Lines,
        # to collect the keys; nothing is kept.
        columns = {} if self.jsonl else dict.fromkeys(manifest_columns(path))
        self.num_rows = 0
        for _, fields, _ in manifest_rows(path):
            self.num_rows += 1
            if self.jsonl and fields:
                columns.update(dict.fromkeys(fields))
        self.columns = list(columns)
        missing = [c for c in (IMAGE_COLUMN, TEXT_COLUMN) if c not in columns]
        if missing and self.num_rows:
            raise ValueError(
                f"Manifest {path} has no {' or '.join(missing)} column; its "
                f"columns are {self.columns}. Expected image, text and any id "
                "columns."
            )

    def rows(self, predictor, skip=0):
        """Yields a `Row` per data row after the first `skip`, text checked."""
        for index, (line, fields, problem) in enumerate(manifest_rows(self.path)):
            if index < skip:
                continue
            where = f"{self.path}:{line}"
            if problem is not None:
                reason, detail = problem
                yield Row(index, {}, problem=f"{reason}: {where}: {detail}")
                continue
            image = fields.get(IMAGE_COLUMN)
            if image in (None, ""):
                yield Row(
                    index,
                    fields,
                    problem=f"{bad_records.MISSING_IMAGE}: {where}: the image "
                    "column is empty",
                )
                continue
            text = fields.get(TEXT_COLUMN)
            text, problem = predictor.check_text("" if text is None else str(text))
            yield Row(
                index,
                fields,
                image_path=os.path.join(self.folder, str(image)),
                text=text,
                problem=problem,
            )


def checked_images(rows, explain, num_parallel_calls=None):
    """Yields `(row, image bytes or None)` in order; `None` for bad rows.

    Image files are read and decoded in a parallel, order-keeping `tf.data`
    map; the decode is the check the model's own decoder would make (its
    pixels are dropped). A row whose read or decode fails is dropped there
    (`ignore_errors`) and `explain(row)` says why, in Python. Each chunk of
    rows ends with a marker that cannot fail, so dropped rows resolve by the
    end of their chunk, and at most a few chunks are in flight even when
    every image is bad.

    Args:
        rows: iterable of `Row`; rows with a `problem` skip the read.
        explain: `row -> (image bytes, problem)`, for rows the pipeline drops.
        num_parallel_calls: parallel reads (default: `tf.data.AUTOTUNE`).
    """
    pending = collections.deque()
    failure = []

    def chunks():
        # Chunks of rows: from_generator costs about as much per element as
        # the read and decode themselves.
        indexes, paths, last, sent = [], [], -1, -1
        try:
            for row in rows:
                pending.append(row)
                last = row.index
                if row.problem is None:
                    indexes.append(row.index)
                    paths.append(row.image_path)
                if len(indexes) >= STREAM_BATCH or last - sent >= 4 * STREAM_BATCH:
                    yield _chunk(indexes, paths, last)
                    indexes, paths, sent = [], [], last
        except Exception as error:  # Re-raised below: ignore_errors would hide it.
            failure.append(error)
        if last > sent:
            yield _chunk(indexes, paths, last)

    decoder = ImagePreprocessor(image_size=1)

    def read(index, path, is_marker):
        def checked_read():
            data = tf.io.read_file(path)
            shape = tf.shape(decoder.decode(data))
            with tf.control_dependencies(
                [tf.debugging.assert_positive(shape[0] * shape[1])]
            ):
                return tf.identity(data)

        image = tf.cond(is_marker, lambda: tf.constant(b""), checked_read)
        return index, image, is_marker

    dataset = (
        tf.data.Dataset.from_generator(
            chunks,
            output_signature=(
                tf.TensorSpec([None], tf.int64),
                tf.TensorSpec([None], tf.string),
                tf.TensorSpec([None], tf.bool),
            ),
        )
        .unbatch()
        .map(
            read,
            num_parallel_calls=num_parallel_calls or tf.data.AUTOTUNE,
            deterministic=True,
        )
        .ignore_errors()
        .batch(STREAM_BATCH)
        .prefetch(1)
    )

    def resolve(last, image=None):
        # Rows before `last` that brought no image failed the check or had a
        # problem already; `last` itself comes with `image` (None: marker).
        while pending and pending[0].index <= last:
            row = pending.popleft()
            data = image if row.index == last else None
            if row.problem is None and data is None:
                data, row.problem = explain(row)
            yield row, (data if row.problem is None else None)

    for indexes, images, markers in dataset.as_numpy_iterator():
        for index, image, is_marker in zip(indexes, images, markers):
            yield from resolve(index, None if is_marker else image)
    if failure:
        raise failure[0]
    if pending:
        raise RuntimeError(f"The pipeline stopped before row {pending[0].index}.")


def _chunk(indexes, paths, last):
    """Good rows' `(index, path, False)`, then the marker `(last, "", True)`."""
    return (
        indexes + [last],
        paths + [""],
        [False] * len(indexes) + [True],
    )


# === Output ===


def output_fields(probabilities):
    """The columns written per task, as `{task}_{field}`."""
    return OUTPUT_FIELDS + (("probabilities",) if probabilities else ())


def output_columns(input_columns, tasks, probabilities):
    """The input's columns, then per task its outputs, then `error`."""
    fields = output_fields(probabilities)
    added = [f"{task}_{field}" for task in tasks for field in fields]
    added.append(ERROR_COLUMN)
    clash = [c for c in added if c in input_columns]
    if clash:
        raise ValueError(
            f"The manifest already has column(s) {clash}, which the output "
            "adds; rename them in the manifest."
        )
    return list(input_columns) + added


def output_record(row, prediction, tasks, probabilities, only_accepted):
    """One output row: the input's fields, per-task outputs, `error`.

    `prediction` is `None` for a bad row. With `only_accepted`, a task whose
    prediction is not accepted keeps only `{task}_accepted` (False).
    """
    record = dict(row.fields)
    for task in tasks:
        value = prediction[task] if prediction else None
        shown = value is not None and (value["accepted"] or not only_accepted)
        for field in output_fields(probabilities):
            keep = shown or (value is not None and field == "accepted")
            record[f"{task}_{field}"] = value[field] if keep else None
    record[ERROR_COLUMN] = row.problem
    return record


class PredictionWriter:
    """Appends output rows to a CSV or JSON Lines file, flushed per batch.

    Args:
        path: the output file (`.jsonl`/`.json`: JSON Lines, else CSV).
        columns: the CSV header.
        start_at: byte offset to continue from (`--resume`), or `None` to
            start a new file.
    """

    def __init__(self, path, columns, start_at=None):
        self.jsonl = is_jsonl(path)
        self.columns = columns
        # surrogateescape writes back input bytes that were not UTF-8.
        self.file = open(
            path,
            "r+" if start_at is not None else "w",
            newline="",
            encoding="utf-8",
            errors="surrogateescape",
        )
        if start_at is not None:
            self.file.seek(start_at)
            self.file.truncate()
        if not self.jsonl and not start_at:
            self._write([self.columns])

    def write(self, records):
        if self.jsonl:
            self.file.write("".join(
                json.dumps(record, ensure_ascii=False) + "\n" for record in records
            ))
            self.file.flush()
            return
        self._write(
            [[_csv_value(record.get(c)) for c in self.columns] for record in records]
        )

    def _write(self, lines):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(lines)
        # One write per batch: a kill leaves at most one partial row.
        self.file.write(buffer.getvalue())
        self.file.flush()

    def close(self):
        self.file.close()


def _csv_value(value):
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value


def is_jsonl(path):
    return path.endswith((".jsonl", ".json"))


def read_written_rows(path, columns, added, on_record=None):
    """Counts the complete rows an earlier run wrote to `path`.

    Args:
        path: the output file.
        columns: the columns this run writes (`output_columns`).
        added: those of them that are outputs, not the input's.
        on_record: optional callable, given each complete row as a dict.

    Returns:
        `(count, end)`: how many complete rows there are and the byte offset
        after the last one (`(0, None)` for a CSV without its header yet). A
        last row without its newline is incomplete (the run was killed while
        writing it); the resumed run writes it again from `end`.
    """
    count, end = 0, None
    with open(path, "rb") as f:
        if is_jsonl(path):
            end = 0
            for number, raw in enumerate(f, start=1):
                if not raw.endswith(b"\n"):
                    break
                try:
                    record = json.loads(raw.decode("utf-8", "surrogateescape"))
                except json.JSONDecodeError as error:
                    raise ValueError(
                        f"{path}:{number} is not JSON ({error.msg}); it was not "
                        "written by serving.predict. Pass another --output."
                    ) from None
                # A row holds the input's keys it had, and every output key.
                if not set(columns) >= set(record) >= set(added):
                    _columns_differ(path, list(record), columns)
                count, end = count + 1, end + len(raw)
                if on_record is not None:
                    on_record(record)
            return count, end
        header = None
        for fields, record_end in _complete_csv_records(f):
            if header is None:
                header = fields
                if header != columns:
                    _columns_differ(path, header, columns)
            else:
                count += 1
                if on_record is not None:
                    on_record(dict(zip(header, fields)))
            end = record_end
        return count, end


def _complete_csv_records(f):
    """`(fields, end offset)` per CSV record that ends with a newline."""
    state = {"offset": 0, "complete": False}

    def lines():
        for raw in f:
            state["offset"] += len(raw)
            state["complete"] = raw.endswith(b"\n")
            yield raw.decode("utf-8", "surrogateescape")

    try:
        for fields in csv.reader(lines(), strict=True):
            if state["complete"]:
                yield fields, state["offset"]
    except csv.Error:  # Ends inside a quoted field: a partial last row.
        return


def _columns_differ(path, found, columns):
    raise ValueError(
        f"{path} was written with columns {found}; this run writes {columns}. "
        "Resume with the same --tasks and --probabilities, or pass another "
        "--output."
    )


class Summary:
    """Rows, errors and the accepted share per task of an output file."""

    def __init__(self, tasks):
        self.tasks = tasks
        self.rows = 0
        self.errors = collections.Counter()
        self.accepted = collections.Counter()

    def add(self, record):
        self.rows += 1
        error = record.get(ERROR_COLUMN)
        if error:
            self.errors[str(error).split(":", 1)[0]] += 1
            return
        for task in self.tasks:
            if record.get(f"{task}_accepted") in (True, "True"):
                self.accepted[task] += 1

    def lines(self):
        errors = sum(self.errors.values())
        predicted = self.rows - errors
        lines = [f"rows: {self.rows}  predicted: {predicted}  errors: {errors}"]
        if errors:
            lines.append("errors: " + ", ".join(
                f"{reason} {count}" for reason, count in sorted(self.errors.items())
            ))
        for task in self.tasks:
            share = self.accepted[task] / predicted if predicted else 0.0
            lines.append(
                f"accepted {task}: {self.accepted[task]} of {predicted} ({share:.1%})"
            )
        return lines


# === The run ===


def predict_manifest(predictor, manifest, writer, tasks, batch_size, skip=0,
                     probabilities=False, only_accepted=False, summary=None,
                     progress=None, num_parallel_calls=None):
    """Streams `manifest` through `predictor` into `writer`, in order.

    Args:
        predictor: `cmaclip_tf.Predictor`.
        manifest: `Manifest`.
        writer: `PredictionWriter`.
        tasks: list of task names to write.
        batch_size: int. Rows per model call.
        skip: int. Rows already written (`--resume`).
        probabilities, only_accepted: as the flags.
        summary: optional `Summary` to add the rows to.
        progress: optional `tqdm` bar, advanced per batch.
        num_parallel_calls: parallel image reads (default: autotuned).

    Returns:
        The number of rows written.
    """
    written = 0
    resolved = []

    def flush():
        good = [(row, image) for row, image in resolved if row.problem is None]
        predictions = predictor.predict_encoded(
            [image for _, image in good],
            [row.text for row, _ in good],
            probabilities=probabilities,
            tasks=tasks,
        )
        by_index = {}
        for (row, _), prediction in zip(good, predictions):
            # The model refused it after all (predict_encoded retried alone).
            row.problem = prediction.get("error")
            by_index[row.index] = None if row.problem else prediction
        records = [
            output_record(row, by_index.get(row.index), tasks, probabilities,
                          only_accepted)
            for row, _ in resolved
        ]
        writer.write(records)
        if summary is not None:
            for record in records:
                summary.add(record)
        if progress is not None:
            progress.update(len(records))
        resolved.clear()
        return len(records)

    def explain(row):
        return predictor.read_image(row.image_path)

    for row, image in checked_images(
        manifest.rows(predictor, skip), explain, num_parallel_calls
    ):
        resolved.append((row, image))
        if len(resolved) >= batch_size:
            written += flush()
    if resolved:
        written += flush()
    return written


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m serving.predict",
        description="Predict every row of a manifest with a CMA-CLIP model.",
    )
    parser.add_argument(
        "--model",
        required=True,
        help="Export version folder, model folder of versions, or training workdir.",
    )
    parser.add_argument(
        "--manifest", required=True, help="CSV or JSON Lines with image and text."
    )
    parser.add_argument(
        "--output", required=True, help="predictions.csv or predictions.jsonl."
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tasks", help="Comma-separated tasks (default: all).")
    parser.add_argument(
        "--only-accepted",
        action="store_true",
        help="Leave a task's label, score and λ empty where it is not accepted.",
    )
    parser.add_argument(
        "--probabilities",
        action="store_true",
        help="Add {task}_probabilities ({label: probability}).",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--resume",
        action="store_true",
        help="Continue where an interrupted run's --output ends.",
    )
    group.add_argument(
        "--overwrite", action="store_true", help="Replace an existing --output."
    )
    parser.add_argument(
        "--workers", type=int, help="Parallel image reads (default: autotuned)."
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="No progress bar on stderr."
    )
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1.")
    return args


def main(argv=None):
    args = parse_args(argv)
    if os.path.exists(args.output) and not (args.resume or args.overwrite):
        sys.stderr.write(
            f"{args.output} exists; pass --resume to continue it or --overwrite "
            "to start over.\n"
        )
        return 1
    if os.path.abspath(args.output) == os.path.abspath(args.manifest):
        sys.stderr.write("--output must not be the --manifest itself.\n")
        return 1
    try:
        manifest = Manifest(args.manifest)
        predictor = Predictor.load(args.model)
        tasks = predictor.select_tasks(
            args.tasks.split(",") if args.tasks else None
        )
        columns = output_columns(manifest.columns, tasks, args.probabilities)
        summary = Summary(tasks)
        skip, start_at = 0, None
        if args.resume and os.path.exists(args.output):
            skip, start_at = read_written_rows(
                args.output, columns, columns[len(manifest.columns):], summary.add
            )
            if skip > manifest.num_rows:
                raise ValueError(
                    f"{args.output} holds {skip} rows but {args.manifest} only "
                    f"{manifest.num_rows}; is it another manifest's output?"
                )
    except (FileNotFoundError, ValueError) as error:
        sys.stderr.write(f"{error}\n")
        return 1

    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    writer = PredictionWriter(args.output, columns, start_at)
    progress = tqdm(
        total=manifest.num_rows,
        initial=skip,
        unit="rows",
        file=sys.stderr,
        disable=args.no_progress,
        mininterval=0.5 if sys.stderr.isatty() else 30,
        smoothing=0.1,
    )
    start = time.perf_counter()
    try:
        count = predict_manifest(
            predictor,
            manifest,
            writer,
            tasks,
            args.batch_size,
            skip=skip,
            probabilities=args.probabilities,
            only_accepted=args.only_accepted,
            summary=summary,
            progress=progress,
            num_parallel_calls=args.workers,
        )
    except KeyboardInterrupt:
        # Every batch written so far is complete: --resume picks up from there.
        sys.stderr.write(
            f"\nInterrupted; rerun with --resume to continue {args.output}.\n"
        )
        return 130
    finally:
        progress.close()
        writer.close()
    elapsed = time.perf_counter() - start
    resumed = f" (resumed after {skip})" if skip else ""
    print(
        f"{args.output}: {count} rows written in {elapsed:.1f} s "
        f"({count / max(elapsed, 1e-9):.1f} rows/s){resumed}"
    )
    for line in summary.lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
