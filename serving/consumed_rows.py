"""What input an output was predicted from, so `--resume` can check it.

Beside `predictions.csv`, `predictions.csv.resume.json` records a running
SHA-256 of the manifest rows whose predictions were written (each row's
parsed fields, in order), with the manifest's path, size and modification
time for messages. It is rewritten (atomically) before each batch is
written, with that batch's row digests as `pending`, so that an output cut
anywhere inside the batch can still be checked row by row. A resume reads
the manifest's first rows again and refuses if they are not the rows the
output holds: reordered, edited or replaced rows would misalign it. Rows
appended after them are new input and may be resumed.
"""

import hashlib
import json
import os

from cmaclip_tf.runtime.atomic_files import write_json

RECORD_SUFFIX = ".resume.json"


class InputChangedError(ValueError):
    """The rows an output was predicted from are not the manifest's now."""


def row_digest(fields, problem=None):
    """A row's SHA-256 (hex): its fields, or its parse problem when it has none."""
    payload = json.dumps(
        [fields or {}, list(problem) if problem and not fields else None],
        sort_keys=True, ensure_ascii=False, default=str,
    )
    return hashlib.sha256(payload.encode("utf-8", "surrogateescape")).hexdigest()


def record_path(output):
    return output + RECORD_SUFFIX


class ConsumedRows:
    """A running hash of the rows written so far, kept beside the output.

    Args:
        output: the output file; the record is `output + ".resume.json"`.
        manifest: the manifest's path.

    Example:
    ```python
    consumed = ConsumedRows("predictions.csv", "items.csv")
    consumed.verify(skip)            # On --resume; raises InputChangedError.
    consumed.before_batch(digests)   # Then write the batch's rows.
    ```
    """

    def __init__(self, output, manifest):
        self.path = record_path(output)
        self.manifest = manifest
        self.count = 0
        self._hash = hashlib.sha256()

    def _manifest_state(self):
        stat = os.stat(self.manifest)
        return {
            "path": os.path.abspath(self.manifest),
            "size": stat.st_size,
            "mtime": stat.st_mtime,
        }

    def save(self, pending=()):
        """Records the rows consumed so far, and the batch about to be written."""
        write_json(self.path, {
            "manifest": self._manifest_state(),
            "rows": self.count,
            "sha256": self._hash.hexdigest(),
            "pending": list(pending),
        })

    def before_batch(self, digests):
        """Call before writing a batch: records it, then counts it consumed."""
        self.save(digests)
        for digest in digests:
            self._add(digest)

    def _add(self, digest):
        self._hash.update(bytes.fromhex(digest))
        self.count += 1

    def verify(self, written, digests):
        """Checks that the output's `written` rows came from these rows.

        Args:
            written: rows the output holds (complete ones).
            digests: iterable of `row_digest` of the manifest's rows, in
                order; at least the first `written` are read.

        Raises:
            InputChangedError: no record, or the manifest's first `written`
                rows are not the ones predicted; one line, what to do.
        """
        fix = "pass --overwrite to predict it from the start."
        if not os.path.isfile(self.path):
            raise InputChangedError(
                f"Cannot resume: {self.path} (the record of which input rows "
                f"were predicted) is missing, so {self.manifest} cannot be "
                f"checked; {fix}"
            )
        with open(self.path, encoding="utf-8") as f:
            record = json.load(f)
        rows, pending = int(record["rows"]), list(record.get("pending", []))
        if not rows <= written <= rows + len(pending):
            raise InputChangedError(
                f"Cannot resume: the output holds {written} rows but its record "
                f"{self.path} says {rows} to {rows + len(pending)}; {fix}"
            )
        digests = iter(digests)
        for index in range(written):
            digest = next(digests, None)
            if digest is None:
                raise InputChangedError(
                    f"Cannot resume: {self.manifest} now has {index} rows, fewer "
                    f"than the {written} already predicted; {fix}"
                )
            if index == rows and self._hash.hexdigest() != record["sha256"]:
                raise self._changed(rows, record, fix)
            if index >= rows and digest != pending[index - rows]:
                raise InputChangedError(
                    f"Cannot resume: row {index + 1} of {self.manifest} is not "
                    f"the row predicted there (the manifest changed since "
                    f"the output was written); {fix}"
                )
            self._add(digest)
        if written == rows and self._hash.hexdigest() != record["sha256"]:
            raise self._changed(rows, record, fix)

    def _changed(self, rows, record, fix):
        was = record.get("manifest", {})
        return InputChangedError(
            f"Cannot resume: the first {rows} rows of {self.manifest} are not "
            f"the rows predicted from {was.get('path', 'it')} (reordered, edited "
            f"or replaced since); {fix}"
        )
