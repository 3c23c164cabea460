"""The batch prediction command's output: columns, records, resumable writing.

One output row per input row: the input's columns, per task `{task}_label`,
`_score`, `_accepted`, `_image_weight` (and `_probabilities` on request),
then `error`. `PredictionWriter` flushes each batch; `read_written_rows`
finds where an interrupted output ends, so `--resume` writes every row once.
"""

import csv
import io
import json

from serving.manifest_stream import is_jsonl

OUTPUT_FIELDS = ("label", "score", "accepted", "image_weight")
ERROR_COLUMN = "error"


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
        self._write([csv_fields(record, self.columns) for record in records])

    def _write(self, lines):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(lines)
        # One write per batch: a kill leaves at most one partial row.
        self.file.write(buffer.getvalue())
        self.file.flush()

    def close(self):
        self.file.close()


def csv_fields(record, columns):
    """A record's CSV fields in `columns` order (dicts and lists as JSON)."""
    return [_csv_value(record.get(c)) for c in columns]


def _csv_value(value):
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value


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
