"""Every dataset kind through the trainer, as users bring them.

Each source is written in its publishers' layout (not by our generator) with
a bad record planted, read at a batch size that divides nothing, and trained
`--stage all` for one epoch per stage. Together the runs cover every variant
and the feature cache on and off. The CSV catalogue's `full` run is then
exported, loaded by the server in a fresh process and asked over gRPC.
"""

import glob
import json
import math
import os
import re
import subprocess
import sys

import grpc
import numpy as np
import pytest
import tensorflow as tf
from fixtures_data import write_catalogue
from fixtures_data import write_fashion_gen
from fixtures_data import write_food101
from micro_model import micro_model_path
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving.server_process import ServerProcess
from trainers import run as run_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = "7"  # Divides none of the splits below.
# The one-layer micro model: these runs pin the data paths, not accuracy.
MICRO = micro_model_path()
COMMON = ["--epochs", "1", "--batch-size", BATCH, "--seed", "3", "--model", MICRO]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The data folders and the flags that read them, by kind."""
    root = tmp_path_factory.mktemp("user_data")
    csv_catalogue = write_catalogue(str(root / "csv"))
    jsonl_catalogue = write_catalogue(str(root / "jsonl"), jsonl=True)
    write_food101(str(root / "food101"), train_per_class=10, test_per_class=3)
    write_fashion_gen(str(root / "fashion_gen"), train_per_class=10,
                      validation_per_class=3)
    from cmaclip_tf.datasets.tfds.build import build_dataset

    build_dataset("upmc_food101/val20", str(root / "food101"), str(root / "tfds"))
    return {
        "synthetic": ["--dataset", "synthetic", "--num-examples", "40"],
        "csv": ["--dataset", "manifest", "--manifest", csv_catalogue["train"],
                "--val-manifest", csv_catalogue["val"],
                "--test-manifest", csv_catalogue["val"]],
        "jsonl": ["--dataset", "manifest", "--manifest", jsonl_catalogue["train"],
                  "--test-manifest", jsonl_catalogue["val"]],
        "food101": ["--dataset", "food101", "--data-dir", str(root / "food101")],
        "fashion_gen": ["--dataset", "fashion_gen", "--data-dir",
                        str(root / "fashion_gen"), "--tasks",
                        "subcategory,category"],
        "tfds": ["--dataset", "tfds:upmc_food101/val20", "--data-dir",
                 str(root / "tfds")],
        "fixtures": {"csv": csv_catalogue, "jsonl": jsonl_catalogue},
    }


def train(argv, capsys):
    """Runs trainers/run.py in this process; returns its console output."""
    import keras

    keras.backend.clear_session()
    assert run_cli.main(argv) == 0
    return capsys.readouterr().out


def read_metrics(workdir):
    with open(os.path.join(workdir, "metrics.json")) as f:
        return json.load(f)


def tensorboard_tags(workdir, stage):
    tags = set()
    for path in glob.glob(os.path.join(workdir, "tensorboard", stage, "*", "*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags |= {value.tag for value in event.summary.value}
    return tags


def assert_every_epoch_ran_all_its_steps(out, train_examples, batch):
    """Steps per epoch come from the good records: no epoch ends early."""
    steps = train_examples // batch
    epochs = re.findall(r"^(\d+)/(\d+) - ", out, flags=re.MULTILINE)
    assert epochs, out
    assert all(int(a) == int(b) == steps for a, b in epochs), (epochs, steps)
    assert "ended after" not in out


CARVED = ("train", "validation")  # Validation carved out of the train rows.
MATRIX = [
    # kind, variant, cache features, stages, bad records expected in
    # metrics.json by group of splits (a record planted in the train rows
    # lands in train or in the validation carved out of them).
    ("synthetic", "no_ma_sa", True, 3, {}),
    ("jsonl", "no_ma", True, 3,
     {CARVED: {"missing_image": 1, "corrupt_image": 1, "malformed_row": 1},
      ("test",): {"unknown_label": 1}}),
    ("food101", "clip_linear", False, 2,
     {CARVED: {"missing_image": 1, "corrupt_image": 1},
      ("test",): {"unknown_label": 1, "malformed_row": 1}}),
    ("fashion_gen", "full", True, 3, {("test",): {"unknown_label": 1}}),
    # Built from the Food-101 folder; ramen is one of the builder's 101 classes.
    ("tfds", "no_ma", True, 2,
     {CARVED: {"missing_image": 1, "corrupt_image": 1},
      ("test",): {"malformed_row": 1}}),
]


def merged_counts(counts, splits):
    merged = {}
    for split in splits:
        for reason, n in counts.get(split, {}).items():
            merged[reason] = merged.get(reason, 0) + n
    return merged


@pytest.mark.large
@pytest.mark.parametrize("kind,variant,cache,num_stages,bad", MATRIX,
                         ids=[m[0] for m in MATRIX])
def test_stage_all_on_every_dataset_kind(sources, kind, variant, cache,
                                         num_stages, bad, tmp_path, capsys):
    workdir = str(tmp_path / "run")
    argv = [*sources[kind], *COMMON, "--stage", "all", "--variant", variant,
            "--workdir", workdir]
    if cache:
        argv.append("--cache-features")
    out = train(argv, capsys)
    metrics = read_metrics(workdir)
    stages = ["warmup", "end2end", "tuning"][:num_stages]
    assert sorted(metrics["stages"]) == sorted(stages)
    for stage in stages:
        for split in ("validation", "test"):
            for values in metrics["stages"][stage][split].values():
                assert values["count"] > 0 and 0 <= values["accuracy"] <= 1
    # Every planted bad record is counted, once, and nothing else is.
    counts = metrics["bad_records"]
    for splits, reasons in bad.items():
        assert merged_counts(counts, splits) == reasons, counts
    assert sum(sum(c.values()) for c in counts.values()) == sum(
        sum(r.values()) for r in bad.values())
    if kind == "fashion_gen":
        recovered = metrics["recovered_records"]
        assert sum(r.get("latin1_text", 0) for r in recovered.values()) == 3
    train_examples = int(re.search(r"train ([\d,]+)", out).group(1).replace(",", ""))
    assert_every_epoch_ran_all_its_steps(out, train_examples, int(BATCH))
    if cache:
        assert "Feature cache" in out
        # Deleted when each stage ends (--keep-feature-cache keeps it).
        assert not glob.glob(os.path.join(workdir, "*", "feature_cache"))
    if variant == "full":
        assert "attention_maps" in tensorboard_tags(workdir, "warmup")


@pytest.mark.large
def test_zero_shot_on_a_food101_folder(sources, tmp_path, capsys):
    workdir = str(tmp_path / "run")
    train([*sources["food101"], *COMMON, "--variant", "zero_shot",
           "--workdir", workdir], capsys)
    test = read_metrics(workdir)["stages"]["zero_shot"]["test"]["label"]
    assert test["count"] == 9  # 3 classes x 3; the unknown and malformed rows out.


@pytest.mark.large
def test_csv_catalogue_trains_exports_and_serves(sources, tmp_path):
    """The user's path end to end, each step in its own process."""
    workdir = str(tmp_path / "run")
    env = dict(os.environ, PYTHONPATH=REPO, PYTHONUNBUFFERED="1")
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # The run quiets TensorFlow itself.
    result = subprocess.run(
        # The end2end stage runs no epoch here: the JSONL catalogue (the same
        # reader) trains it in the matrix above.
        [sys.executable, "trainers/run.py", *sources["csv"], *COMMON,
         "--end2end-epochs", "0", "--stage", "all", "--variant", "full",
         "--workdir", workdir],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # The console is what a user reads: no TensorFlow start-up lines, no
    # decoder complaints, no retracing warnings, a header before each bar.
    assert result.stderr.strip() == "", result.stderr[-3000:]
    for noise in ("cuInit", "cudart", "retracing", "JPEG", "Traceback"):
        assert noise not in result.stdout
    lines = result.stdout.splitlines()
    assert all(
        line.startswith(("[", "stage ", "warmup ", "end2end ", "tuning ",
                         "Done in", "Export it")) or re.match(r"\d+/\d+ - ", line)
        for line in lines
    ), result.stdout
    fixture = sources["fixtures"]["csv"]
    assert "missing_image 1" in result.stdout and "corrupt_image 1" in result.stdout
    assert "unknown_label 1" in result.stdout
    export_line = lines[-1]
    assert export_line.startswith("Export it for TF Serving: python -m serving.export")

    # The printed next command, as the user would run it.
    models = str(tmp_path / "models")
    command = export_line.split(": ", 1)[1].split()
    command[command.index("--model-base-path") + 1] = models
    exported = subprocess.run(
        [sys.executable, *command[1:]], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=600,
    )
    assert exported.returncode == 0, exported.stderr[-3000:]

    server = ServerProcess(models, "cmaclip")
    try:
        channel = grpc.insecure_channel(server.address)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "cmaclip"
        image = os.path.join(os.path.dirname(fixture["train"]), "images",
                             "green_4.jpg")
        with open(image, "rb") as f:
            request.inputs["image_bytes"].CopyFrom(
                tf.make_tensor_proto([f.read()]))
        request.inputs["text"].CopyFrom(
            tf.make_tensor_proto(["Classic square item 4 in green"]))
        response = stub.Predict(request, timeout=60)
        color = tf.make_ndarray(response.outputs["color_label"])[0].decode()
        assert color in ("blue", "green", "red")
        probabilities = tf.make_ndarray(response.outputs["color_probabilities"])
        np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    finally:
        server.stop()


@pytest.mark.large
def test_the_ablation_suite_runs_on_a_users_manifest(sources, tmp_path):
    """The suite end to end on a manifest: each method, its noise-robustness
    evaluation on the run's own data, and the report."""
    from trainers import experiments

    fixture = sources["fixtures"]["csv"]
    workdir = tmp_path / "suite"
    run_args = (f"--manifest {fixture['train']} --val-manifest {fixture['val']} "
                f"--test-manifest {fixture['val']}")
    assert experiments.main([
        "--suite", "ablation", "--methods", "zero_shot,full", "--seeds", "1",
        "--dataset", "manifest", "--epochs", "1", "--end2end-epochs", "0",
        "--tuning-epochs", "0", "--batch-size", BATCH,
        "--model", MICRO, "--workdir", str(workdir), "--run-args", run_args,
    ]) == 0
    for method in ("zero_shot", "full"):
        with open(workdir / method / "seed_0" / "noise_robustness.json") as f:
            noise = json.load(f)
        # The manifest's attribute words are its class names: removing them
        # leaves no title naming a color; putting them in names every one.
        assert noise["no_attribute_words"]["color"]["named_share"] == 0.0
        assert noise["correct_attribute_words"]["color"]["named_share"] == 1.0
        assert noise["as_is"]["color"]["count"] == 6  # 7 rows, teal unknown.
    assert (workdir / "full" / "seed_0" / "inference" / "model.keras").is_file()
    report = (workdir / "report.md").read_text()
    assert "| Zero-shot CLIP |" in report and "| CMA-CLIP |" in report
    assert "| Color |" in report and "### Mean λ" in report
    rows = (workdir / "report.csv").read_text().splitlines()[1:]
    assert len(rows) == 1 + 4 + 2 * 4 * 3  # Command, main table, noise table.
    assert not math.isnan(float(rows[1].split(",")[4]))
