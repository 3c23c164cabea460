"""A manifest streamed for prediction: rows in order, images checked in parallel.

`Manifest` reads a CSV or JSON Lines manifest row by row; `checked_images`
reads each row's image, holds its header to the pixel limit and decodes it
with the model's own decoder in `tf.data`, a bounded number at a time, and
explains in Python any row that fails, so a bad row never reaches the model
nor costs its batch.
"""

import collections
import dataclasses
import os

import tensorflow as tf

from cmaclip_tf.datasets import bad_records
from cmaclip_tf.datasets.manifest import IMAGE_COLUMN
from cmaclip_tf.datasets.manifest import TEXT_COLUMN
from cmaclip_tf.datasets.manifest import manifest_columns
from cmaclip_tf.datasets.manifest import manifest_rows
from cmaclip_tf.limits.image_headers import oversized_image
from cmaclip_tf.limits.serving_limits import MAX_IMAGE_PIXELS
from cmaclip_tf.preprocessing import ImagePreprocessor
from serving.consumed_rows import row_digest

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
        digest: the row's `row_digest`, for `--resume`'s check.
    """

    index: int
    fields: dict
    image_path: str = ""
    text: bytes = b""
    problem: str = None
    digest: str = ""


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

    def digests(self):
        """Yields each data row's `row_digest`, in order."""
        for _, fields, problem in manifest_rows(self.path):
            yield row_digest(fields, problem)

    def rows(self, predictor, skip=0):
        """Yields a `Row` per data row after the first `skip`, text checked."""
        for index, (line, fields, problem) in enumerate(manifest_rows(self.path)):
            if index < skip:
                continue
            digest = row_digest(fields, problem)
            where = f"{self.path}:{line}"
            if problem is not None:
                reason, detail = problem
                yield Row(index, {}, problem=f"{reason}: {where}: {detail}",
                          digest=digest)
                continue
            image = fields.get(IMAGE_COLUMN)
            if image in (None, ""):
                yield Row(
                    index,
                    fields,
                    problem=f"{bad_records.MISSING_IMAGE}: {where}: the image "
                    "column is empty",
                    digest=digest,
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
                digest=digest,
            )


def checked_images(rows, explain, num_parallel_calls=None,
                   max_image_pixels=MAX_IMAGE_PIXELS):
    """Yields `(row, image bytes or None)` in order; `None` for bad rows.

    Image files are read and decoded in a parallel, order-keeping `tf.data`
    map; the decode is the check the model's own decoder would make (its
    pixels are dropped), and it runs only once the header is within
    `max_image_pixels` (`oversized_image`, in Python). A row whose read or
    decode fails is dropped there (`ignore_errors`) and `explain(row)` says
    why, in Python. Each chunk of rows ends with a marker that cannot fail,
    so dropped rows resolve by the end of their chunk, and at most a few
    chunks are in flight even when every image is bad.

    Args:
        rows: iterable of `Row`; rows with a `problem` skip the read.
        explain: `row -> (image bytes, problem)`, for rows the pipeline drops.
        num_parallel_calls: parallel reads (default: `tf.data.AUTOTUNE`).
        max_image_pixels: int. Images over it are dropped before decoding
            (and explained); 0: no limit.
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

    def within_limit(data):
        return oversized_image(data.numpy(), max_image_pixels) is None

    def read(index, path, is_marker):
        def checked_read():
            data = tf.io.read_file(path)
            header = tf.debugging.Assert(
                tf.py_function(within_limit, [data], tf.bool),
                ["image over the pixel limit"],
            )
            with tf.control_dependencies([header]):  # No decoding before it.
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


def is_jsonl(path):
    return path.endswith((".jsonl", ".json"))
