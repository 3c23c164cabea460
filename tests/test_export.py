"""SavedModel export: bundle round trip, layout, TF Serving's ops, loading
without keras or project code, outputs equal to the model's."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import tiny_export
from cmaclip_tf.inference import export
from cmaclip_tf.inference.inference_bundle import check_label_vocabularies
from cmaclip_tf.inference.inference_bundle import load_inference_bundle
from cmaclip_tf.limits.serving_limits import ServingLimits

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# TensorFlow Text's op libraries that `tensorflow_model_server` links: the
# deps of `@org_tensorflow_text//tensorflow_text:ops_lib`, which TF Serving's
# `SUPPORTED_TENSORFLOW_OPS` (tensorflow_serving/model_servers/BUILD) lists.
TF_SERVING_TEXT_OP_LIBRARIES = {
    "boise_offset_converter",
    "byte_splitter",
    "constrained_sequence_op",
    "fast_bert_normalizer",
    "fast_sentencepiece_tokenizer",
    "fast_wordpiece_tokenizer",
    "mst_ops",
    "ngrams_op",
    "normalize_ops",
    "phrase_tokenizer",
    "regex_split_ops",
    "sentence_breaking_ops",
    "sentencepiece_mobile_tokenizer",
    "sentencepiece_tokenizer",
    "split_merge_from_logits_tokenizer",
    "split_merge_tokenizer",
    "state_based_sentence_breaker_op",
    "text_similarity_metric_ops",
    "trimmer_ops",
    "unicode_script_tokenizer",
    "utf8_binarize_op",
    "whitespace_tokenizer",
    "whitespace_tokenizer_v2",
    "wordpiece_tokenizer",
}
# Registered by core TF, but their kernels call back into Python: no model
# server can run them.
PYTHON_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}

# Imports TensorFlow and TF Text's op kernels, nothing else: keras,
# keras_hub and this project cannot even be imported. (The `tensorflow_text`
# Python package itself imports keras, so its kernels are loaded directly,
# as a model server links them.)
ISOLATED_PRELUDE = textwrap.dedent(
    """
    import glob, importlib.abc, importlib.machinery, importlib.util, json, os, sys
    BLOCKED = ("keras", "keras_hub", "tf_keras", "cmaclip_tf", "serving", "trainers")

    class Blocker(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:
                return importlib.machinery.ModuleSpec(name, self)

        def create_module(self, spec):
            raise ImportError(f"{spec.name} is not available when serving")

        def exec_module(self, module):
            raise ImportError(module.__name__)

    sys.meta_path.insert(0, Blocker())
    import tensorflow as tf
    TEXT_OPS_DIR = os.path.join(
        importlib.util.find_spec("tensorflow_text").submodule_search_locations[0],
        "python", "ops",
    )
    from tensorflow.core.framework import op_def_pb2
    from tensorflow.python.client import pywrap_tf_session

    def registered_ops():
        buffer = pywrap_tf_session.TF_GetAllOpList()
        op_list = op_def_pb2.OpList.FromString(pywrap_tf_session.TF_GetBuffer(buffer))
        return {op.name for op in op_list.op}

    def load_text_ops():
        # library name -> the ops it registers
        libraries = {}
        for path in sorted(glob.glob(os.path.join(TEXT_OPS_DIR, "_*.so"))):
            before = registered_ops()
            tf.load_op_library(path)
            libraries[os.path.basename(path)[1:-3]] = sorted(registered_ops() - before)
        return libraries
    """
)


def run_isolated(script, *args, timeout=120):
    """Runs `script` after `ISOLATED_PRELUDE` in a fresh Python; returns stdout."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [sys.executable, "-c", ISOLATED_PRELUDE + textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    return tiny_export.tiny_export(str(tmp_path_factory.mktemp("tiny_export")))


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported.version_dir)


def saved_model_op_types(export_dir):
    """Op types in a SavedModel's graphs and function libraries, and the
    names of its library functions (which also appear as op types)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    op_types, functions = set(), set()
    for meta_graph in saved_model.meta_graphs:
        op_types |= {node.op for node in meta_graph.graph_def.node}
        for function in meta_graph.graph_def.library.function:
            functions.add(function.signature.name)
            op_types |= {node.op for node in function.node_def}
    return op_types, functions


# --- The inference bundle. ---


def test_bundle_round_trip(exported):
    bundle = load_inference_bundle(exported.bundle_dir)
    assert sorted(os.listdir(exported.bundle_dir)) == [
        "labels.json",
        "merges.txt",
        "metadata.json",
        "model.keras",
        "preprocessing.json",
        "vocab.json",
    ]
    assert bundle.label_vocabularies == tiny_export.LABELS
    assert bundle.metadata == {
        "model": "tiny",
        "stage": "test",
        "seed": 0,
        "score_thresholds": tiny_export.SCORE_THRESHOLDS,
        "format_version": 1,
        "tasks": tiny_export.TASKS,
    }
    assert bundle.sequence_length == 32 and bundle.image_size == (64, 64)
    # CLIP's normalization, recovered from the converter's scale and offset.
    np.testing.assert_allclose(
        bundle.preprocessing["mean"], [0.48145466, 0.4578275, 0.40821073], atol=1e-6
    )
    np.testing.assert_allclose(
        bundle.preprocessing["std"], [0.26862954, 0.26130258, 0.27577711], atol=1e-6
    )
    # The reloaded preprocessing and model give the training-time outputs.
    images = [exported.images["jpeg"], exported.images["png"]]
    expected = exported.reference_outputs(images, tiny_export.TEXTS)
    pixels = bundle.image_preprocessor(tf.constant(images))
    tokens = bundle.text_preprocessor(tf.constant(tiny_export.TEXTS))
    np.testing.assert_array_equal(
        tokens["token_ids"],
        exported.text_preprocessor(tf.constant(tiny_export.TEXTS))["token_ids"],
    )
    outputs = bundle.model({"images": pixels, **tokens}, training=False)
    np.testing.assert_allclose(
        tf.nn.softmax(outputs["color_logits"]),
        expected["color_probabilities"],
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "labels, message",
    [
        ({"color": ["r", "g", "b"]}, "model has tasks"),
        ({"color": ["r", "g"], "pattern": ["p", "s"]}, "3 classes but 2"),
        ({"color": ["r", "g", "b"], "pattern": ["p", "a\nb"]}, "line breaks"),
        ({"color": ["r", "r", "b"], "pattern": ["p", "s"]}, "repeated"),
    ],
)
def test_label_vocabularies_are_checked(labels, message):
    with pytest.raises(ValueError, match=message):
        check_label_vocabularies(tiny_export.TASKS, labels)


def test_missing_bundle_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="WORKDIR/inference"):
        load_inference_bundle(str(tmp_path))


# --- Layout, assets, warm-up. ---


def test_layout_and_assets(exported):
    model_dir = os.path.join(exported.model_base_path, exported.model_name)
    assert exported.version_dir == os.path.join(model_dir, "1")
    assert os.listdir(model_dir) == ["1"]  # The staging folder is gone.
    assets = os.path.join(exported.version_dir, "assets")
    assert sorted(os.listdir(assets)) == [
        "cmaclip_config.json",
        "labels.json",
        "labels_color.txt",
        "labels_pattern.txt",
    ]
    with open(os.path.join(assets, "labels_color.txt")) as f:
        assert f.read() == "red\ngreen\nblue\n"
    with open(os.path.join(assets, "cmaclip_config.json")) as f:
        config = json.load(f)
    assert config["tasks"] == tiny_export.TASKS
    assert config["labels"] == tiny_export.LABELS
    assert config["model_config"]["config"]["fusion_num_layers"] == 2
    assert config["preprocessing"]["sequence_length"] == 32
    assert config["signatures"]["serving_default"] == {
        "image_bytes": {"dtype": "string", "shape": [None]},
        "text": {"dtype": "string", "shape": [None]},
    }


def test_warmup_requests_are_prediction_logs(exported, loaded):
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(
        exported.version_dir, "assets.extra", "tf_serving_warmup_requests"
    )
    records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    assert len(records) == len(export.WARMUP_BATCH_SIZES)
    for record, batch_size in zip(records, export.WARMUP_BATCH_SIZES):
        request = prediction_log_pb2.PredictionLog.FromString(
            record
        ).predict_log.request
        assert request.model_spec.name == exported.model_name
        assert request.model_spec.signature_name == "serving_default"
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        assert inputs["image_bytes"].shape == (batch_size,)
        outputs = loaded.signatures["serving_default"](**inputs)
        assert outputs["color_probabilities"].shape == (batch_size, 3)


def test_versions(tmp_path, exported):
    assert export.next_version(str(tmp_path / "absent")) == 1
    for name in ("1", "7", "tmp", ".export-x", "12a"):
        (tmp_path / name).mkdir()
    assert export.next_version(str(tmp_path)) == 8
    # An existing version is never overwritten (checked before building).
    with pytest.raises(FileExistsError, match="another --version"):
        export.export_saved_model(
            exported.bundle_dir,
            exported.model_base_path,
            exported.model_name,
            version=1,
        )


# --- What stock TF Serving can load. ---


def test_graph_has_only_core_and_tf_serving_text_ops(exported):
    registries = json.loads(
        run_isolated(
            """
        core = sorted(registered_ops())
        print(json.dumps({"core": core, "text": load_text_ops()}))
        """
        )
    )
    core_ops = set(registries["core"])
    linked_text_ops = set()
    for library, ops in registries["text"].items():
        if library in TF_SERVING_TEXT_OP_LIBRARIES:
            linked_text_ops |= set(ops)
    op_types, functions = saved_model_op_types(exported.version_dir)
    unknown = op_types - core_ops - linked_text_ops - functions
    assert not unknown, f"Ops stock TF Serving does not have: {sorted(unknown)}"
    assert not op_types & PYTHON_OPS
    # Sanity: the walk saw the whole pipeline, tokenizer and decoder included.
    assert {
        "NormalizeUTF8",
        "DecodeJpeg",
        "LookupTableFindV2",
        "Softmax",
        "MatMul",  # Dense layers and the attention projections.
        "Einsum",  # Attention scores.
    } <= op_types
    # ... and TF Text ops really came from the linked libraries, not core.
    assert "NormalizeUTF8" in linked_text_ops and "NormalizeUTF8" not in core_ops


FRESH_PROCESS_SCRIPT = """
load_text_ops()
export_dir, image_files, texts = json.loads(sys.argv[1])
model = tf.saved_model.load(export_dir)
images = [open(path, "rb").read() for path in image_files]
outputs = model.signatures["serving_default"](
    image_bytes=tf.constant(images), text=tf.constant(texts)
)
with open(os.path.join(export_dir, "assets", "labels.json")) as f:
    labels = json.load(f)
print(json.dumps({
    "outputs": {
        key: [s.decode() for s in value.numpy()] if value.dtype == tf.string
        else value.numpy().tolist()
        for key, value in outputs.items()
    },
    "labels": labels,
    "modules": sorted(
        m for m in sys.modules if m.split(".")[0] in BLOCKED + ("tensorflow_text",)
    ),
}))
"""


@pytest.mark.large  # A fresh TensorFlow process.
def test_fresh_process_loads_and_serves_without_keras(exported):
    image_files = [exported.image_files["jpeg"], exported.image_files["png"]]
    arguments = [exported.version_dir, image_files, tiny_export.TEXTS]
    outputs = json.loads(run_isolated(FRESH_PROCESS_SCRIPT, json.dumps(arguments)))
    assert outputs["modules"] == []
    assert outputs["labels"] == tiny_export.LABELS
    expected = exported.reference_outputs(
        [exported.images["jpeg"], exported.images["png"]], tiny_export.TEXTS
    )
    for task in tiny_export.TASKS:
        got = outputs["outputs"]
        np.testing.assert_allclose(
            got[f"{task}_probabilities"], expected[f"{task}_probabilities"], atol=1e-5
        )
        np.testing.assert_allclose(
            got[f"{task}_image_weight"], expected[f"{task}_image_weight"], atol=1e-5
        )
        assert got[f"{task}_label"] == expected[f"{task}_label"].tolist()
        np.testing.assert_allclose(
            got[f"{task}_score"], expected[f"{task}_probabilities"].max(-1), atol=1e-5
        )


# --- Signatures against the in-memory model. ---


def test_predict_tensors_equals_model(exported, loaded):
    images = exported.image_preprocessor(
        tf.constant([exported.images["jpeg"], exported.images["gif"]])
    )
    tokens = exported.text_preprocessor(tf.constant(tiny_export.TEXTS))
    outputs = loaded.signatures["predict_tensors"](images=images, **tokens)
    expected = exported.model({"images": images, **tokens}, training=False)
    for task, labels in tiny_export.LABELS.items():
        probabilities = tf.nn.softmax(expected[f"{task}_logits"]).numpy()
        np.testing.assert_allclose(
            outputs[f"{task}_probabilities"], probabilities, atol=1e-5
        )
        np.testing.assert_allclose(
            outputs[f"{task}_image_weight"], expected[f"{task}_image_weight"], atol=1e-5
        )
        np.testing.assert_allclose(
            outputs[f"{task}_score"], probabilities.max(-1), atol=1e-5
        )
        assert [s.decode() for s in outputs[f"{task}_label"].numpy()] == [
            labels[i] for i in probabilities.argmax(-1)
        ]


def test_accepted_applies_the_validation_thresholds(exported, loaded):
    outputs = loaded.signatures["serving_default"](
        image_bytes=tf.constant([exported.images["jpeg"], exported.images["png"]]),
        text=tf.constant(tiny_export.TEXTS),
    )
    color_score = outputs["color_score"].numpy()
    np.testing.assert_array_equal(
        outputs["color_accepted"].numpy(), color_score >= 0.34
    )
    # No threshold reached the precision on validation: accept nothing.
    np.testing.assert_array_equal(outputs["pattern_accepted"].numpy(), [False, False])


def test_serving_default_rejects_bad_batches_in_graph(loaded):
    serve = loaded.signatures["serving_default"]
    jpeg = tiny_export.sample_images()["jpeg"]
    cases = [
        ([jpeg, jpeg], ["one text"], "same batch size"),
        ([], [], "empty batch"),
        ([jpeg], ["x" * (ServingLimits.max_text_bytes + 1)], "longer than 8192 bytes"),
        ([b"not an image"], ["x"], "Invalid image"),
    ]
    for images, texts, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            serve(
                image_bytes=tf.constant(images, tf.string),
                text=tf.constant(texts, tf.string),
            )


def test_export_cli_without_a_bundle_says_what_to_do(tmp_path, capsys):
    from serving import export as export_cli

    assert export_cli.main(["--workdir", str(tmp_path), "--model-base-path",
                            str(tmp_path / "models"), "--model-name", "m"]) == 1
    assert "WORKDIR/inference" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "models")


@pytest.mark.large  # A second export through the command line.
def test_export_cli(exported, tmp_path, capsys):
    from serving import export as export_cli

    workdir = os.path.dirname(exported.bundle_dir)
    assert export_cli.main([
        "--workdir", workdir, "--model-base-path", str(tmp_path / "models"),
        "--model-name", "m", "--version", "5", "--max-text-bytes", "16",
    ]) == 0
    path = capsys.readouterr().out.strip()
    assert path == str(tmp_path / "models" / "m" / "5")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    jpeg = exported.images["jpeg"]
    assert serve(image_bytes=tf.constant([jpeg]), text=tf.constant(["x" * 16]))[
        "color_label"
    ].shape == (1,)
    with pytest.raises(tf.errors.InvalidArgumentError, match="longer than 16 bytes"):
        serve(image_bytes=tf.constant([jpeg]), text=tf.constant(["x" * 17]))
