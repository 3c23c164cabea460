"""Predicts a whole manifest offline with a CMA-CLIP model: a catalogue backfill.

```
python -m serving.predict --model models/cmaclip --manifest items.csv \
    --output predictions.csv [--batch-size 64] [--tasks color,style] \
    [--only-accepted] [--probabilities] [--resume] [--max-image-pixels N]
```

`--model` is what `cmaclip_tf.Predictor.load` takes: an export version
folder, a model folder of versions (the highest that loads is used; skipped
ones are named in one line) or a training workdir. The manifest is a CSV
(with a header) or JSON Lines file with an `image` column (a path, relative
to the manifest's folder or absolute) and a `text` column; every other
column (ids, ...) is copied to the output.

Each input row gives one output row, in input order: the input's columns,
then per task `{task}_label`, `{task}_score`, `{task}_accepted` and
`{task}_image_weight` (λ) (and `{task}_probabilities` with
`--probabilities`), then `error`: empty, or why the row has no prediction
(`missing_image`, `corrupt_image`, `image_too_large`, `undecodable_text`,
`text_too_long`, `malformed_row`). An image over `--max-image-pixels` (read
from its header, before decoding) is `image_too_large`. A bad row never
stops the run nor costs its batch. `--only-accepted` keeps only confident
answers: where a task's prediction is not accepted, its label, score and λ
are left empty.

Rows stream through `tf.data`: image files are read and decoded with the
model's own decoder in parallel, in order, a bounded number at a time, so
memory stays flat for any manifest size. A row that fails there is examined
again in Python for its message and never reaches the model. Output is
flushed after every batch; after an interruption, `--resume` continues where
the output file ends (a half-written last row is rewritten), so every row is
written exactly once. `OUTPUT.resume.json` records a running hash of the
input rows predicted so far (`serving.consumed_rows`): a resume over a
manifest whose first rows changed (reordered, edited, replaced) is refused
with exit code 2; rows appended after them are predicted. A progress bar
(rate, ETA) goes to stderr and a summary (rows, errors, accepted share per
task) to stdout. The exit status is 1 when no row was predicted (every row
failed, or there were none).
"""

import argparse
import collections
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if __name__ == "__main__":
    # As a command: no TensorFlow start-up or per-row log lines (--debug).
    from cmaclip_tf.runtime.tensorflow_logs import debug_requested
    from cmaclip_tf.runtime.tensorflow_logs import quiet_tensorflow

    quiet_tensorflow(debug_requested())

from tqdm import tqdm  # noqa: E402

from cmaclip_tf.inference.model_versions import load_error_line  # noqa: E402
from cmaclip_tf.inference.predictor import Predictor  # noqa: E402
from cmaclip_tf.limits.serving_limits import MAX_IMAGE_PIXELS  # noqa: E402
from serving.consumed_rows import ConsumedRows  # noqa: E402
from serving.consumed_rows import InputChangedError  # noqa: E402
from serving.manifest_stream import Manifest  # noqa: E402
from serving.manifest_stream import checked_images  # noqa: E402
from serving.prediction_output import ERROR_COLUMN  # noqa: E402
from serving.prediction_output import PredictionWriter  # noqa: E402
from serving.prediction_output import output_columns  # noqa: E402
from serving.prediction_output import output_record  # noqa: E402
from serving.prediction_output import read_written_rows  # noqa: E402


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

    def failure(self):
        """Why the output holds no prediction at all, or `None`."""
        errors = sum(self.errors.values())
        if self.rows and errors < self.rows:
            return None
        if not self.rows:
            return "no rows"
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.errors.items()))
        return f"no row was predicted: all {self.rows} rows failed ({reasons})"

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
                     progress=None, num_parallel_calls=None, consumed=None):
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
        consumed: optional `ConsumedRows`, told each batch before it is
            written.

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
        if consumed is not None:
            consumed.before_batch([row.digest for row, _ in resolved])
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
        manifest.rows(predictor, skip), explain, num_parallel_calls,
        predictor.max_image_pixels,
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
        "--max-image-pixels", type=int, default=MAX_IMAGE_PIXELS,
        help="Images over this many pixels (read from the header, before "
        "decoding; GIF frames counted) are image_too_large rows. Default: "
        "%(default)s (8192 x 8192); 0: no limit.",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="No progress bar on stderr."
    )
    parser.add_argument(
        "--debug", action="store_true", help="TensorFlow's own log lines."
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
        try:
            predictor = Predictor.load(args.model, args.max_image_pixels)
        except (FileNotFoundError, ValueError):
            raise
        except Exception as error:  # A corrupt SavedModel: one line, no traceback.
            raise ValueError(
                f"Cannot load {args.model}: {load_error_line(error)}"
            ) from None
        tasks = predictor.select_tasks(
            args.tasks.split(",") if args.tasks else None
        )
        columns = output_columns(manifest.columns, tasks, args.probabilities)
        summary = Summary(tasks)
        skip, start_at = 0, None
        consumed = ConsumedRows(args.output, args.manifest)
        if args.resume and os.path.exists(args.output):
            skip, start_at = read_written_rows(
                args.output, columns, columns[len(manifest.columns):], summary.add
            )
            if skip > manifest.num_rows:
                raise ValueError(
                    f"{args.output} holds {skip} rows but {args.manifest} only "
                    f"{manifest.num_rows}; is it another manifest's output?"
                )
            consumed.verify(skip, manifest.digests())
    except InputChangedError as error:
        sys.stderr.write(f"{error}\n")
        return 2
    except (FileNotFoundError, ValueError) as error:
        sys.stderr.write(f"{error}\n")
        return 1

    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    writer = PredictionWriter(args.output, columns, start_at)
    consumed.save()
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
            consumed=consumed,
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
    failure = summary.failure()
    if failure:
        sys.stderr.write(f"error: {failure}; see the error column of "
                         f"{args.output}.\n" if summary.rows else
                         f"error: {args.manifest} has no rows to predict.\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
