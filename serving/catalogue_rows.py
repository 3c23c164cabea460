"""A catalogue's rows read in Beam: CSV manifests or TFRecords of examples.

`ReadCatalogue(patterns, format)` reads, through Beam's filesystems (local,
`gs://`, `s3://`, ...):

- `csv`: manifests as `serving.predict` reads them, with a header, an `image`
  column (a path, relative to the CSV's folder, or absolute, or a URL such as
  `gs://bucket/a.jpg`) and a `text` column; every other column is copied
  through. Compressed files (`.gz`, `.bz2`, ...) are read as such. A file is
  parsed by one worker (quoted fields may span lines), so shard a large
  catalogue into many files.
- `tfrecord`: `tf.train.Example`s with the encoded image in a bytes feature
  `image` and the title in `text`; every other feature is copied through
  (one value as a scalar, several as a list).

Each row becomes a `CatalogueRow`; a row that cannot be parsed keeps a
`problem` and travels on to the dead-letter output, never dropped.
"""

import csv
import dataclasses
import io
import os

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import ReadAllFromTFRecord
from apache_beam.metrics import Metrics

from cmaclip_tf.datasets import bad_records
from cmaclip_tf.datasets.manifest import IMAGE_COLUMN
from cmaclip_tf.datasets.manifest import TEXT_COLUMN
from cmaclip_tf.datasets.manifest import csv_file_rows

FORMATS = ("csv", "tfrecord")
METRICS_NAMESPACE = "cmaclip"


@dataclasses.dataclass
class CatalogueRow:
    """One input row on its way through the pipeline.

    Attributes:
        source: the file it came from.
        line: its line in a CSV (`None` for a TFRecord).
        fields: the input's columns (empty for a row that could not be parsed).
        image_path: the image file (CSV rows).
        image: the encoded image (TFRecord rows, and once read).
        text: the raw text (a string or bytes, as read).
        problem: `"reason: detail"` once the row is known to be bad.
    """

    source: str
    line: int = None
    fields: dict = dataclasses.field(default_factory=dict)
    image_path: str = ""
    image: bytes = None
    text: object = ""
    problem: str = None

    @property
    def where(self):
        return self.source if self.line is None else f"{self.source}:{self.line}"


class ReadCatalogue(beam.PTransform):
    """File patterns to `CatalogueRow`s, spread over the workers.

    Args:
        patterns: list of file patterns (`catalogue/*.csv`, `gs://b/p-*.tfrecord`).
        input_format: `"csv"` or `"tfrecord"`.
    """

    def __init__(self, patterns, input_format):
        super().__init__()
        if input_format not in FORMATS:
            raise ValueError(
                f"input_format must be one of {FORMATS}; got {input_format!r}."
            )
        self.patterns = list(patterns)
        self.input_format = input_format

    def expand(self, pbegin):
        patterns = pbegin | "Patterns" >> beam.Create(self.patterns)
        if self.input_format == "tfrecord":
            rows = (
                patterns
                | "ReadTFRecords" >> ReadAllFromTFRecord(with_filename=True)
                | "ParseExamples" >> beam.MapTuple(example_row)
            )
        else:
            rows = (
                patterns
                | "MatchFiles" >> fileio.MatchAll()
                | "OpenFiles" >> fileio.ReadMatches()
                | "ParseCSV" >> beam.FlatMap(csv_rows)
            )
        # One file's rows are parsed by one worker; the model work is spread.
        return rows | "CountRows" >> beam.Map(_counted) | beam.Reshuffle()


def _counted(row):
    Metrics.counter(METRICS_NAMESPACE, "rows_read").inc()
    return row


def csv_rows(readable_file):
    """`CatalogueRow`s of one CSV manifest (a `fileio.ReadableFile`)."""
    path = readable_file.metadata.path
    folder = FileSystems.split(path)[0]
    with readable_file.open() as raw:
        text = io.TextIOWrapper(
            _Readable(raw), encoding="utf-8", errors="surrogateescape", newline=""
        )
        for line, fields, problem in csv_file_rows(text):
            row = CatalogueRow(path, line, fields or {})
            if problem is not None:
                reason, detail = problem
                row.problem = f"{reason}: {row.where}: {detail}"
            elif fields.get(IMAGE_COLUMN) in (None, ""):
                row.problem = (f"{bad_records.MISSING_IMAGE}: {row.where}: the image "
                               "column is empty")
            else:
                row.image_path = resolve_image_path(folder, fields[IMAGE_COLUMN])
                row.text = fields.get(TEXT_COLUMN) or ""
            yield row


def resolve_image_path(folder, image):
    """`image` as written, if absolute or a URL; else relative to `folder`."""
    if FileSystems.get_scheme(image) not in (None, "file") or os.path.isabs(image):
        return image
    if FileSystems.get_scheme(folder) in (None, "file"):
        return os.path.join(os.path.abspath(folder), image)
    return FileSystems.join(folder, image)


def example_row(path, record):
    """A `CatalogueRow` of one serialized `tf.train.Example`."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.example import example_pb2

    row = CatalogueRow(path)
    try:
        feature = example_pb2.Example.FromString(record).features.feature
    except DecodeError as error:
        row.problem = (f"{bad_records.MALFORMED_ROW}: {path}: not a tf.train.Example "
                       f"({error})")
        return row
    row.fields = {
        name: _feature_value(feature[name]) for name in feature if name != IMAGE_COLUMN
    }
    images = feature[IMAGE_COLUMN].bytes_list.value if IMAGE_COLUMN in feature else []
    texts = feature[TEXT_COLUMN].bytes_list.value if TEXT_COLUMN in feature else []
    if len(images) != 1 or not images[0]:
        row.problem = (f"{bad_records.MISSING_IMAGE}: {path}: the example has "
                       f"{'an empty' if images else 'no'} {IMAGE_COLUMN} feature")
    elif len(texts) > 1:
        row.problem = (f"{bad_records.MALFORMED_ROW}: {path}: {len(texts)} "
                       f"{TEXT_COLUMN} values; expected one")
    else:
        row.image = bytes(images[0])
        row.text = bytes(texts[0]) if texts else b""
    return row


def _feature_value(feature):
    kind = feature.WhichOneof("kind")
    values = list(getattr(feature, kind).value) if kind else []
    values = [
        value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
        for value in values
    ]
    return values[0] if len(values) == 1 else values


def input_columns(patterns, input_format):
    """The columns the rows will carry, for the output's CSV header.

    CSV: the union of the matched files' headers, in first-seen order.
    TFRecord: the features of the first example (but `image`).

    Raises:
        FileNotFoundError: a pattern matches no file.
    """
    paths = []
    for pattern, result in zip(patterns, FileSystems.match(list(patterns))):
        if not result.metadata_list:
            raise FileNotFoundError(
                f"No file matches --input {pattern}; pass a path or a pattern "
                "such as 'catalogue/*.csv'."
            )
        paths += sorted(metadata.path for metadata in result.metadata_list)
    columns = {}
    if input_format == "tfrecord":
        from apache_beam.io.tfrecordio import _TFRecordUtil

        with FileSystems.open(paths[0]) as f:
            record = _TFRecordUtil.read_record(f)
        if record is not None:
            columns.update(dict.fromkeys(example_row(paths[0], record).fields))
        return list(columns)
    for path in paths:
        with FileSystems.open(path) as raw:
            text = io.TextIOWrapper(_Readable(raw), encoding="utf-8",
                                    errors="surrogateescape", newline="")
            columns.update(dict.fromkeys(next(csv.reader(text), [])))
    return list(columns)


class _Readable(io.RawIOBase):
    """A Beam file object as an `io` stream that `TextIOWrapper` accepts.

    Beam's compressed and remote file objects lack `readable()`/`readinto`.
    """

    def __init__(self, f):
        super().__init__()
        self._f = f

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self._f.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def open_uncompressed(path):
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
