"""Scores a whole catalogue with a CMA-CLIP export on Apache Beam.

```
python -m serving.beam_predict --model models/cmaclip \
    --input 'catalogue/*.csv' --output out/predictions \
    [--input-format csv|tfrecord] [--output-format csv|jsonl] \
    [--min-batch-size 1] [--max-batch-size 64] [--tasks color,style] \
    [--probabilities] [--only-accepted] [--num-shards N] \
    [--runner DirectRunner|DataflowRunner|FlinkRunner|SparkRunner] \
    [Beam pipeline options: --direct_num_workers 2, --project, --region, ...]
```

The same pipeline runs on one laptop (the DirectRunner, the default) and on
a cluster. `--model` is an export version folder or a model folder of
versions (the highest is used, as `serving.predict` picks it; the version is
fixed when the job starts), local or on any filesystem Beam knows.

Rows (`serving.catalogue_rows`: CSV manifests as `serving.predict` reads
them, or TFRecords of `tf.train.Example`s) are checked as `serving.predict`
checks them (the text is UTF-8 within the export's limit; the image is read
and decoded with the model's own decoder), then `RunInference` batches them
into the export's `serving_default` (`serving.saved_model_handler`: the
SavedModel is loaded once per worker process).

Outputs, sharded:

- `OUTPUT-SSSSS-of-NNNNN.csv` (or `.jsonl`): one row per input row, with
  `serving.predict`'s columns: the input's, per task `{task}_label`,
  `_score`, `_accepted`, `_image_weight` (λ) (and `_probabilities`), then
  `error`, empty or why the row has no prediction. Rows are in no order:
  keep an id column in the input.
- `OUTPUT_errors-SSSSS-of-NNNNN.jsonl`: the dead letters, one JSON object
  per bad row: `source` (file), `line` (CSV line), `error` and the input
  `row`.

Beam metrics (namespace `cmaclip`) count rows read, rows written, rows
predicted, errors per reason and accepted predictions per task; the summary
printed at the end comes from them. The command exits 1 when no row was
predicted, or when fewer rows were written than read.
"""

import argparse
import csv
import dataclasses
import io
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import apache_beam as beam  # noqa: E402
from apache_beam.metrics import Metrics  # noqa: E402
from apache_beam.metrics.metric import MetricsFilter  # noqa: E402
from apache_beam.ml.inference.base import KeyedModelHandler  # noqa: E402
from apache_beam.ml.inference.base import RunInference  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from serving.catalogue_rows import FORMATS  # noqa: E402
from serving.catalogue_rows import METRICS_NAMESPACE  # noqa: E402
from serving.catalogue_rows import ReadCatalogue  # noqa: E402
from serving.catalogue_rows import input_columns  # noqa: E402
from serving.catalogue_rows import open_uncompressed  # noqa: E402
from serving.prediction_output import ERROR_COLUMN  # noqa: E402
from serving.prediction_output import csv_fields  # noqa: E402
from serving.prediction_output import output_columns  # noqa: E402
from serving.prediction_output import output_record  # noqa: E402
from serving.saved_model_handler import CMACLIPModelHandler  # noqa: E402
from serving.saved_model_handler import is_remote  # noqa: E402
from serving.saved_model_handler import read_export_config  # noqa: E402
from serving.saved_model_handler import resolve_export  # noqa: E402

BAD = "bad"
OUTPUT_FORMATS = ("csv", "jsonl")
DEAD_LETTER_SUFFIX = "_errors"


# === The pipeline's steps ===


class CheckRows(beam.DoFn):
    """Good rows to `(row, (image bytes, text bytes))`; bad ones to `BAD`.

    The checks are `Predictor`'s own (`check_text`, `read_image`), run from
    the export's config without loading the model.
    """

    def __init__(self, config):
        self.config = config

    def setup(self):
        from cmaclip_tf.inference.predictor import Predictor

        config = self.config
        self._checker = Predictor(None, config["tasks"], config["labels"],
                                  max_text_bytes=config.get("max_text_bytes", 0))

    def process(self, row):
        row = dataclasses.replace(row)  # Beam's inputs are not ours to change.
        text = image = None
        if row.problem is None:
            text, row.problem = self._checker.check_text(row.text)
        if row.problem is None:
            image, row.problem = self._read_image(row)
        if row.problem is not None:
            yield beam.pvalue.TaggedOutput(BAD, row)
            return
        row.image = None  # Travels once, as the model's input.
        yield row, (image, text)

    def _read_image(self, row):
        if row.image is None and not is_remote(row.image_path):
            # The very messages serving.predict writes.
            return self._checker.read_image(row.image_path)
        where, data = row.image_path, row.image
        if data is None:
            try:
                with open_uncompressed(row.image_path) as f:
                    data = f.read()
            except Exception as error:  # BeamIOError, IOError, per filesystem.
                return None, f"missing_image: {where}: {error}"
        data, problem = self._checker.read_image(data)
        if problem is not None:
            reason, detail = problem.split(": ", 1)
            problem = f"{reason}: {where or row.where}: {detail}"
        return data, problem


class RoutePredictions(beam.DoFn):
    """`(row, PredictionResult)` to `(row, prediction)`; refused rows to `BAD`."""

    def process(self, keyed):
        row, result = keyed
        prediction = result.inference
        if "error" in prediction:
            row = dataclasses.replace(row, problem=prediction["error"])
            yield beam.pvalue.TaggedOutput(BAD, row)
            return
        yield row, prediction


class CountRecords(beam.DoFn):
    """Counts output records in Beam metrics, as `serving.predict`'s summary does."""

    def __init__(self, tasks):
        self.tasks = list(tasks)

    def process(self, record):
        Metrics.counter(METRICS_NAMESPACE, "rows_written").inc()
        error = record.get(ERROR_COLUMN)
        if error:
            reason = str(error).split(":", 1)[0]
            Metrics.counter(METRICS_NAMESPACE, f"errors/{reason}").inc()
        else:
            Metrics.counter(METRICS_NAMESPACE, "predicted").inc()
            for task in self.tasks:
                if record.get(f"{task}_accepted") is True:
                    Metrics.counter(METRICS_NAMESPACE, f"accepted/{task}").inc()
        yield record


def encode_record(record, columns, output_format):
    """One output line (without its newline), as UTF-8 bytes."""
    if output_format == "jsonl":
        line = json.dumps(record, ensure_ascii=False)
    else:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(csv_fields(record, columns))
        line = buffer.getvalue()
    # surrogateescape writes back input bytes that were not UTF-8.
    return line.encode("utf-8", "surrogateescape")


def dead_letter(row):
    record = {"source": row.source, "line": row.line, "error": row.problem,
              "row": row.fields}
    return json.dumps(record, ensure_ascii=False).encode("utf-8", "surrogateescape")


def build_pipeline(pipeline, args, version_dir, config, columns, tasks):
    """Adds the read, check, predict and write steps to `pipeline`."""
    rows = pipeline | "Read" >> ReadCatalogue(args.input, args.input_format)
    checked = rows | "Check" >> beam.ParDo(CheckRows(config)).with_outputs(
        BAD, main="good"
    )
    handler = CMACLIPModelHandler(
        version_dir, tasks=tasks, probabilities=args.probabilities,
        min_batch_size=args.min_batch_size, max_batch_size=args.max_batch_size,
    )
    predicted = (
        checked.good
        | "Predict" >> RunInference(KeyedModelHandler(handler))
        | "Route" >> beam.ParDo(RoutePredictions()).with_outputs(BAD, main="good")
    )
    bad = (checked[BAD], predicted[BAD]) | "BadRows" >> beam.Flatten()

    def record(row, prediction=None):
        return output_record(row, prediction, tasks, args.probabilities,
                             args.only_accepted)

    suffix = f".{args.output_format}"
    header = ",".join(columns) if args.output_format == "csv" else None
    (
        (predicted.good | "Records" >> beam.MapTuple(record),
         bad | "BadRecords" >> beam.Map(record))
        | "AllRecords" >> beam.Flatten()
        | "Count" >> beam.ParDo(CountRecords(tasks))
        | "Encode" >> beam.Map(encode_record, columns, args.output_format)
        | "Write" >> beam.io.WriteToText(
            args.output, file_name_suffix=suffix, header=header,
            num_shards=args.num_shards,
        )
    )
    (
        bad
        | "EncodeDeadLetters" >> beam.Map(dead_letter)
        | "WriteDeadLetters" >> beam.io.WriteToText(
            args.output + DEAD_LETTER_SUFFIX, file_name_suffix=".jsonl",
        )
    )


# === The command ===


def counters(result):
    """`{name: value}` of the job's counters in our namespace, over all steps."""
    totals = {}
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        name = counter.key.metric.name
        totals[name] = totals.get(name, 0) + (value or 0)
    return totals


def model_call_line(result):
    """Rows, batches and the rate of the model calls, from `RunInference`'s metrics.

    The rate is per model copy (per worker process): rows over the summed
    time of the calls, so start-up, reading and checking are left out.
    """
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    latency = [d.committed or d.attempted for d in query["distributions"]
               if d.key.metric.name.endswith("inference_batch_latency_micro_secs")]
    latency = [d for d in latency if d is not None and d.count]
    if not latency:
        return None
    rows = sum(c.committed or c.attempted or 0 for c in query["counters"]
               if c.key.metric.name.endswith("num_inferences"))
    batches = sum(d.count for d in latency)
    seconds = sum(d.sum for d in latency) / 1e6
    return (f"model calls: {rows} rows in {batches} batches ({rows / batches:.1f} "
            f"rows each), {rows / max(seconds, 1e-9):.1f} rows/s per worker process")


def summary_lines(totals, tasks):
    """The closing summary, worded as `serving.predict`'s."""
    from serving.predict import Summary

    summary = Summary(tasks)
    summary.rows = totals.get("rows_written", 0)
    for name, value in totals.items():
        kind, _, key = name.partition("/")
        if kind == "errors" and value:
            summary.errors[key] = value
        elif kind == "accepted" and value:
            summary.accepted[key] = value
    return summary.lines()


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m serving.beam_predict",
        description=(
            "Predict every row of a catalogue with a CMA-CLIP export on Apache "
            "Beam. Other flags are Beam pipeline options (--runner, "
            "--direct_num_workers, --project, ...)."
        ),
    )
    parser.add_argument(
        "--model", required=True,
        help="Export version folder, or model folder of versions (highest used).",
    )
    parser.add_argument(
        "--input", required=True, action="append",
        help="File pattern of the manifests (repeat for several).",
    )
    parser.add_argument(
        "--output", required=True,
        help="Output prefix: OUTPUT-SSSSS-of-NNNNN.csv and OUTPUT_errors-*.jsonl.",
    )
    parser.add_argument(
        "--input-format", choices=FORMATS,
        help="Default: tfrecord for .tfrecord* patterns, else csv.",
    )
    parser.add_argument("--output-format", choices=OUTPUT_FORMATS, default="csv")
    parser.add_argument("--min-batch-size", type=int, default=1)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--num-shards", type=int, default=0,
                        help="Output shards (default: the runner decides).")
    parser.add_argument("--tasks", help="Comma-separated tasks (default: all).")
    parser.add_argument(
        "--only-accepted", action="store_true",
        help="Leave a task's label, score and λ empty where it is not accepted.",
    )
    parser.add_argument(
        "--probabilities", action="store_true",
        help="Add {task}_probabilities ({label: probability}).",
    )
    args, beam_args = parser.parse_known_args(argv)
    if not 1 <= args.min_batch_size <= args.max_batch_size:
        parser.error("Need 1 <= --min-batch-size <= --max-batch-size.")
    if args.input_format is None:
        tfrecord = all(".tfrecord" in pattern for pattern in args.input)
        args.input_format = "tfrecord" if tfrecord else "csv"
    return args, beam_args


def main(argv=None):
    args, beam_args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        version_dir = resolve_export(args.model)
        config = read_export_config(version_dir)
        tasks = list(config["tasks"])
        if args.tasks:
            chosen = args.tasks.split(",")
            unknown = [task for task in chosen if task not in tasks]
            if unknown:
                raise ValueError(f"Unknown task(s) {unknown}; pass one or more of "
                                 f"the model's tasks {tasks}.")
            tasks = chosen
        columns = output_columns(
            input_columns(args.input, args.input_format), tasks, args.probabilities
        )
    except (FileNotFoundError, ValueError) as error:
        sys.stderr.write(f"{error}\n")
        return 1
    if not is_remote(args.output):
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)

    print(f"model: {version_dir}  tasks: {', '.join(tasks)}", flush=True)
    start = time.perf_counter()
    pipeline = beam.Pipeline(options=PipelineOptions(beam_args))
    build_pipeline(pipeline, args, version_dir, config, columns, tasks)
    result = pipeline.run()
    result.wait_until_finish()
    elapsed = time.perf_counter() - start

    totals = counters(result)
    read, written = totals.get("rows_read", 0), totals.get("rows_written", 0)
    print(
        f"{args.output}-*.{args.output_format}: {written} rows written in "
        f"{elapsed:.1f} s ({written / max(elapsed, 1e-9):.1f} rows/s)"
    )
    for line in summary_lines(totals, tasks):
        print(line)
    errors = written - totals.get("predicted", 0)
    print(f"dead letters: {args.output}{DEAD_LETTER_SUFFIX}-*.jsonl ({errors} rows)")
    calls = model_call_line(result)
    if calls:
        print(calls)
    if written != read:
        sys.stderr.write(f"{read} rows read but {written} written; see the job's "
                         "logs.\n")
        return 1
    if not totals.get("predicted"):
        sys.stderr.write("No row was predicted; see the dead letters.\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
