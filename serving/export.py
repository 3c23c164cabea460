"""Exports a training run's inference bundle as a TF Serving SavedModel.

```
python -m serving.export --workdir runs/fashion_gen --model-base-path /models \
    --model-name cmaclip [--version N]
```

Reads `WORKDIR/inference/` (written by the trainer from the best checkpoint)
and writes `MODEL_BASE_PATH/MODEL_NAME/<version>/` (default: one above the
highest version present), which a running TF Serving picks up on its own.
"""

import argparse
import os
import sys

if __name__ == "__main__":
    # As a command: no TensorFlow start-up or per-row log lines (--debug).
    from cmaclip_tf.runtime.tensorflow_logs import debug_requested
    from cmaclip_tf.runtime.tensorflow_logs import quiet_tensorflow

    quiet_tensorflow(debug_requested())

from cmaclip_tf.limits.serving_limits import ServingLimits  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m serving.export",
        description="Export WORKDIR/inference/ as a SavedModel for TF Serving.",
    )
    parser.add_argument(
        "--workdir", required=True, help="A training run's folder (holds inference/)."
    )
    parser.add_argument(
        "--model-base-path",
        required=True,
        help="TF Serving's base path; the export goes to "
        "MODEL_BASE_PATH/MODEL_NAME/<version>/.",
    )
    parser.add_argument("--model-name", required=True)
    parser.add_argument(
        "--version", type=int, help="Version number (default: highest present + 1)."
    )
    parser.add_argument(
        "--max-text-bytes",
        type=int,
        default=ServingLimits.max_text_bytes,
        help="Longest text the model accepts, in UTF-8 bytes "
        f"(default {ServingLimits.max_text_bytes}, the server's cap; 0: no limit).",
    )
    parser.add_argument(
        "--dtype-policy",
        default="float32",
        choices=["float32", "mixed_bfloat16", "mixed_float16", "trained"],
        help="What the export computes in: float32 (default, also for a model "
        "trained in mixed precision: CPUs have no fast bfloat16), a mixed "
        "policy for a GPU or TPU server, or trained: as the run trained.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="TensorFlow's own log lines."
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from cmaclip_tf.inference.export import export_saved_model

    bundle_dir = os.path.join(args.workdir, "inference")
    try:
        path = export_saved_model(
            bundle_dir,
            args.model_base_path,
            args.model_name,
            version=args.version,
            max_text_bytes=args.max_text_bytes,
            dtype_policy=None if args.dtype_policy == "trained" else args.dtype_policy,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        sys.stderr.write(f"{error}\n")
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
