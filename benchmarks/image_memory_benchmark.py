"""Peak memory of decoding and preprocessing one large image, per path.

    python benchmarks/image_memory_benchmark.py [--size 8000] [--json-out FILE]

Writes one `size` x `size` JPEG, then, each in a fresh process, runs it
through one path that decodes images: the check every reader makes
(`ImageValidator`: training and evaluation input, `Predictor`), the
training pipeline's per-example map (read, decode, CLIP's resize and crop,
as `make_batches`; the feature cache reads the same batches), the same map
with the width pass in one strip (the float copy of the whole image that
preprocessing held before), the export's image preprocessing
(`serving_default`'s), `Predictor.predict`, `serving.predict` on a one-row
manifest, and the development server's servable (its request check, then
the signature). Each row reports the resident memory before the image is
touched and the peak after (Linux `VmRSS`, `VmHWM`); the difference is what
the image cost. A JPEG of 8,000 x 8,000 is 183 MiB of uint8 pixels.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.result_table import print_table  # noqa: E402

PATHS = ("validator", "training", "training_one_strip", "export_preprocessing",
         "predictor", "serving_predict", "server")
IMAGE_SIZE = 224  # vit_b32's.


def memory_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def run_path(path, image, model_dir, workdir):
    """In the child: sets up `path`, then decodes `image` through it."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    from cmaclip_tf.preprocessing import ImagePreprocessor
    from cmaclip_tf.preprocessing import image_preprocessor

    if path == "validator":
        from cmaclip_tf.preprocessing import ImageValidator

        validator = ImageValidator()

        def run():
            assert validator.check_file(image) is None
    elif path in ("training", "training_one_strip"):
        if path == "training_one_strip":
            image_preprocessor.STRIP_ROWS = 1 << 30
        preprocessor = ImagePreprocessor(IMAGE_SIZE)

        def run():
            dataset = tf.data.Dataset.from_tensor_slices([image]).map(
                tf.io.read_file).map(preprocessor.preprocess_bytes).batch(1)
            for batch in dataset:
                assert batch.shape == (1, IMAGE_SIZE, IMAGE_SIZE, 3)
    elif path == "export_preprocessing":
        preprocess = tf.function(
            ImagePreprocessor(IMAGE_SIZE).__call__,
            input_signature=[tf.TensorSpec([None], tf.string)],
        )

        def run():
            with open(image, "rb") as f:
                assert preprocess(tf.constant([f.read()])).shape[0] == 1
    elif path == "predictor":
        from cmaclip_tf import Predictor

        predictor = Predictor.load(model_dir)
        predictor.predict([_small_png()], ["warm up"])

        def run():
            predictor.predict([image], ["a large photo"])
    elif path == "serving_predict":
        from serving import predict

        manifest = os.path.join(workdir, "one.csv")
        with open(manifest, "w") as f:
            f.write(f"image,text\n{image},a large photo\n")
        output = os.path.join(workdir, "out.csv")
        from cmaclip_tf import Predictor

        loaded = Predictor.load(model_dir)
        predict.Predictor.load = lambda *args, **kwargs: loaded
        loaded.predict([_small_png()], ["warm up"])

        def run():
            assert predict.main(["--model", model_dir, "--manifest", manifest,
                                 "--output", output, "--overwrite",
                                 "--no-progress"]) == 0
    elif path == "server":
        import numpy as np

        from cmaclip_tf.inference.model_versions import load_highest_version
        from cmaclip_tf.limits.serving_limits import ServingLimits
        from serving.model_versions import ServableVersion
        from serving.request_validation import check_images

        version, servable, _ = load_highest_version(
            model_dir, lambda folder: ServableVersion("cmaclip", 0, folder))
        servable.run("serving_default", {
            "image_bytes": np.array([_small_png()], object),
            "text": np.array([b"warm up"], object)})

        def run():
            with open(image, "rb") as f:
                images = np.array([f.read()], object)
            check_images(images, ServingLimits())
            servable.run("serving_default", {
                "image_bytes": images, "text": np.array([b"a photo"], object)})
    else:
        raise ValueError(path)
    before = memory_kib("VmRSS")
    run()
    peak = memory_kib("VmHWM")
    return {"path": path, "rss_before_mib": before / 1024,
            "peak_mib": peak / 1024, "image_cost_mib": (peak - before) / 1024}


def _small_png():
    import tensorflow as tf

    return tf.io.encode_png(tf.zeros([32, 32, 3], tf.uint8)).numpy()


def write_jpeg(path, size):
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:size, 0:size].astype(np.uint16)
    pixels = np.stack([(x // 8) % 256, (y // 8) % 256, ((x + y) // 16) % 256], -1)
    Image.fromarray(pixels.astype(np.uint8)).save(path, "JPEG", quality=90)


def export_model(root):
    from benchmarks.serving_load_benchmark import export_tiny_model

    base, name = export_tiny_model(root, "tiny")
    return os.path.join(base, name)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8000)
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--json-out")
    parser.add_argument("--child", nargs=4, metavar=("PATH", "IMAGE", "MODEL", "WORK"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_path(*args.child)))
        return 0
    paths = args.paths.split(",")
    with tempfile.TemporaryDirectory(prefix="cmaclip_image_memory_") as work:
        image = os.path.join(work, f"photo_{args.size}.jpg")
        write_jpeg(image, args.size)
        model_dir = ""
        if {"predictor", "serving_predict", "server"} & set(paths):
            model_dir = export_model(work)
        rows = []
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        for path in paths:
            child = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--child", path, image,
                 model_dir or "-", work],
                cwd=REPO, env=env, capture_output=True, text=True,
            )
            if child.returncode != 0:
                sys.stderr.write(child.stderr[-3000:])
                raise SystemExit(f"{path} failed")
            rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(f"One {args.size}x{args.size} JPEG "
              f"({os.path.getsize(image) / 2**20:.1f} MiB on disk, "
              f"{args.size * args.size * 3 / 2**20:.0f} MiB of pixels):")
    print_table(rows, ["path", "rss_before_mib", "peak_mib", "image_cost_mib"])
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
