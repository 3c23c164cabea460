"""`cmaclip_tf.convert_hf` against outputs `transformers` computed.

The fixture `tests/fixtures/hf_tiny_clip/` is a tiny random Hugging Face CLIP
checkpoint and `reference_outputs.npz`, both written by
`tests/fixtures/make_hf_clip_fixture.py` (which needs torch; these tests do
not). The checkpoint is converted to a preset folder and loaded back through
`load_clip`, exactly as a user would.
"""

import json
import os
import shutil

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import load_file
from safetensors.numpy import save_file

from cmaclip_tf import convert_hf
from cmaclip_tf.models import load_clip
from cmaclip_tf.models.tiny_clip import CLIP_MEAN
from cmaclip_tf.models.tiny_clip import CLIP_STD

FIXTURE_DIR = os.path.join(
    os.path.dirname(__file__), "fixtures", "hf_tiny_clip"
)
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def reference():
    with np.load(os.path.join(FIXTURE_DIR, "reference_outputs.npz")) as data:
        return {name: data[name] for name in data.files}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The fixture converted through the command line, then `load_clip`ed."""
    preset_dir = str(tmp_path_factory.mktemp("converted") / "hf_tiny_clip")
    assert (
        convert_hf.main(["--checkpoint", FIXTURE_DIR, "--output", preset_dir])
        == 0
    )
    return load_clip(preset_dir)


@pytest.fixture(scope="module")
def outputs(converted, reference):
    backbone = converted.backbone
    images, token_ids = reference["pixel_values"], reference["input_ids"]
    logits = backbone({"images": images, "token_ids": token_ids})
    return {
        "vision_sequence_output": backbone.vision_encoder({"images": images}),
        "text_sequence_output": backbone.text_encoder({"token_ids": token_ids}),
        "image_embeds": backbone.get_vision_embeddings(images),
        "text_embeds": backbone.get_text_embeddings(token_ids),
        "logits_per_image": logits["vision_logits"],
        "logits_per_text": logits["text_logits"],
    }


def assert_close(actual, expected):
    np.testing.assert_allclose(
        np.asarray(actual), expected, rtol=0, atol=TOLERANCE
    )


def copy_fixture(destination, exclude=(), config_update=None):
    """Copies the checkpoint (minus `exclude`), optionally editing config."""
    os.makedirs(destination, exist_ok=True)
    for name in os.listdir(FIXTURE_DIR):
        if name not in exclude and name != "reference_outputs.npz":
            shutil.copy(os.path.join(FIXTURE_DIR, name), destination)
    if config_update is not None:
        path = os.path.join(destination, "config.json")
        with open(path) as f:
            config = json.load(f)
        config_update(config)
        with open(path, "w") as f:
            json.dump(config, f)
    return str(destination)


# --- Numeric parity with transformers ---------------------------------------


def test_vision_sequence_output_matches_post_layernorm_of_hf(
    outputs, reference
):
    # keras-hub applies HF's `post_layernorm` to every token.
    sequence = np.asarray(outputs["vision_sequence_output"])
    assert_close(sequence, reference["vision_sequence_output"])
    assert_close(sequence[:, 0], reference["vision_pooled_output"])
    # The raw HF `last_hidden_state` is a different quantity.
    assert np.abs(sequence - reference["vision_last_hidden_state"]).max() > 0.1


def test_text_sequence_output_matches_hf(outputs, reference):
    assert_close(
        outputs["text_sequence_output"], reference["text_sequence_output"]
    )


def test_projected_embeddings_match_hf(outputs, reference):
    assert_close(outputs["image_embeds"], reference["image_embeds"])
    assert_close(outputs["text_embeds"], reference["text_embeds"])


def test_logits_match_hf(outputs, reference):
    assert reference["logits_per_image"].shape == (3, 4)
    assert_close(outputs["logits_per_image"], reference["logits_per_image"])
    assert_close(outputs["logits_per_text"], reference["logits_per_text"])


def test_token_ids_match_hf_tokenizer(converted, reference):
    tokenizer = converted.tokenizer
    strings = reference["test_strings"]
    assert len(strings) == 10
    for text, ids, length in zip(
        strings, reference["token_ids"], reference["token_lengths"]
    ):
        actual = [tokenizer.start_token_id]
        actual += np.asarray(tokenizer(str(text))).tolist()
        actual += [tokenizer.end_token_id]
        assert actual == ids[:length].tolist(), str(text)


def test_image_converter_matches_hf_image_processor(converted, reference):
    # The fixture's non-CLIP mean and std come from preprocessor_config.json.
    images = reference["images"].astype("float32")
    assert_close(converted.image_converter(images), reference["pixel_values"])


def test_converted_preset_keeps_clip_details(converted):
    backbone = converted.backbone
    vision, text = backbone.vision_encoder, backbone.text_encoder
    # Top-level projection_dim (16), not the towers' unused default (512).
    assert backbone.projection_dim == 16
    assert backbone.vision_projection.kernel.shape == (32, 16)
    assert backbone.text_projection.kernel.shape == (24, 16)
    assert vision.intermediate_activation == "quick_gelu"
    assert text.intermediate_activation == "gelu"
    np.testing.assert_array_equal(
        np.asarray(vision.embedding.position_ids), [np.arange(10)]
    )
    assert text.layer_norm.epsilon == 1e-5
    assert all(w.dtype == "float32" for w in backbone.trainable_weights)
    logit_scale = float(np.asarray(backbone.clip_head.logit_scale))
    hf_logit_scale = float(
        load_file(os.path.join(FIXTURE_DIR, "model.safetensors"))["logit_scale"]
    )
    assert logit_scale == pytest.approx(hf_logit_scale, abs=1e-7)
    assert logit_scale != pytest.approx(np.log(1 / 0.07), abs=1e-3)


# --- Checkpoint variants -----------------------------------------------------


@pytest.mark.parametrize("merge_format", ["pairs", "strings"])
def test_tokenizer_from_tokenizer_json_alone(tmp_path, reference, merge_format):
    checkpoint = copy_fixture(tmp_path, exclude=("vocab.json", "merges.txt"))
    path = os.path.join(checkpoint, "tokenizer.json")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    merges = [
        m if isinstance(m, list) else m.split(" ")
        for m in data["model"]["merges"]
    ]
    data["model"]["merges"] = (
        merges if merge_format == "pairs" else [" ".join(m) for m in merges]
    )
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)

    tokenizer = convert_hf.convert_tokenizer(checkpoint)
    for text, ids, length in zip(
        reference["test_strings"],
        reference["token_ids"],
        reference["token_lengths"],
    ):
        actual = np.asarray(tokenizer(str(text))).tolist()
        assert actual == ids[1 : length - 1].tolist(), str(text)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_half_precision_checkpoint_converts_to_float32(
    tmp_path, converted, reference, dtype
):
    checkpoint = copy_fixture(tmp_path, exclude=("model.safetensors",))
    tensors = load_file(os.path.join(FIXTURE_DIR, "model.safetensors"))
    save_file(
        {k: v.astype(dtype) for k, v in tensors.items()},
        os.path.join(checkpoint, "model.safetensors"),
    )
    backbone = convert_hf.convert_backbone(checkpoint)

    # Rounding commutes with the transposes and reshapes, so each converted
    # weight is exactly the float32 conversion's weight rounded to `dtype`.
    for half, full in zip(backbone.weights, converted.backbone.weights):
        half, full = np.asarray(half), np.asarray(full)
        assert half.dtype == full.dtype
        if full.dtype.kind == "f":
            np.testing.assert_array_equal(
                half, full.astype(dtype).astype("float32")
            )
    assert (
        np.abs(
            np.asarray(backbone.text_projection.kernel)
            - np.asarray(converted.backbone.text_projection.kernel)
        ).max()
        > 0
    )
    logits = backbone(
        {
            "images": reference["pixel_values"],
            "token_ids": reference["input_ids"],
        }
    )["vision_logits"]
    np.testing.assert_allclose(
        np.asarray(logits), reference["logits_per_image"], atol=0.1
    )


def test_image_converter_defaults_to_clip_without_preprocessor_config(tmp_path):
    checkpoint = copy_fixture(tmp_path, exclude=("preprocessor_config.json",))
    converter = convert_hf.convert_image_converter(checkpoint, 24)
    np.testing.assert_allclose(
        converter.scale, [1 / (255 * s) for s in CLIP_STD], rtol=1e-6
    )
    np.testing.assert_allclose(
        converter.offset,
        [-m / s for m, s in zip(CLIP_MEAN, CLIP_STD)],
        rtol=1e-6,
    )
    assert converter.resizing.interpolation == "bicubic"
    assert tuple(converter.image_size) == (24, 24)


def test_projection_dim_defaults_to_hf_default(tmp_path):
    def drop_projection_dim(config):
        del config["projection_dim"]

    checkpoint = copy_fixture(tmp_path, config_update=drop_projection_dim)
    assert convert_hf.read_hf_config(checkpoint)["projection_dim"] == 512


def test_sharded_checkpoint_with_older_layout(tmp_path, converted):
    """Shards and an index, stored position ids, `pre_layernorm` spelled out."""
    checkpoint = copy_fixture(tmp_path, exclude=("model.safetensors",))
    tensors = load_file(os.path.join(FIXTURE_DIR, "model.safetensors"))
    for suffix in ("weight", "bias"):
        tensors[f"vision_model.pre_layernorm.{suffix}"] = tensors.pop(
            f"vision_model.pre_layrnorm.{suffix}"
        )
    # Older transformers saved these buffers; they are set, not loaded.
    tensors["text_model.embeddings.position_ids"] = np.arange(16)[None]
    tensors["vision_model.embeddings.position_ids"] = np.zeros((1, 10))
    shards = {"model-00001-of-00002.safetensors": {}}
    shards["model-00002-of-00002.safetensors"] = {}
    for key, value in tensors.items():
        shard = sorted(shards)[key.startswith("vision_model")]
        shards[shard][key] = value
    weight_map = {}
    for name, shard in shards.items():
        save_file(shard, os.path.join(checkpoint, name))
        weight_map.update({key: name for key in shard})
    with open(
        os.path.join(checkpoint, "model.safetensors.index.json"), "w"
    ) as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)

    backbone = convert_hf.convert_backbone(checkpoint)
    for actual, expected in zip(backbone.weights, converted.backbone.weights):
        np.testing.assert_array_equal(np.asarray(actual), np.asarray(expected))


# --- Clear errors ------------------------------------------------------------


def test_error_for_missing_checkpoint_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        convert_hf.convert_checkpoint(
            str(tmp_path / "nope"), str(tmp_path / "out")
        )


def test_error_for_missing_config(tmp_path):
    checkpoint = copy_fixture(tmp_path, exclude=("config.json",))
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        convert_hf.convert_checkpoint(checkpoint, str(tmp_path / "out"))


@pytest.mark.parametrize(
    "model_type, message",
    [
        ("bert", "not a CLIP checkpoint: model_type is 'bert'"),
        ("siglip", "not a CLIP checkpoint"),
        ("clip_vision_model", "single CLIP tower"),
    ],
)
def test_error_for_non_clip_checkpoint(tmp_path, model_type, message):
    def set_model_type(config):
        config["model_type"] = model_type

    checkpoint = copy_fixture(tmp_path, config_update=set_model_type)
    with pytest.raises(ValueError, match=message):
        convert_hf.convert_checkpoint(checkpoint, str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


def test_error_for_torch_only_weights(tmp_path):
    checkpoint = copy_fixture(tmp_path, exclude=("model.safetensors",))
    open(os.path.join(checkpoint, "pytorch_model.bin"), "wb").close()
    with pytest.raises(
        FileNotFoundError,
        match="model.safetensors.*pytorch_model.bin.*safe_serialization",
    ):
        convert_hf.convert_checkpoint(checkpoint, str(tmp_path / "out"))


def test_error_for_missing_tokenizer_files(tmp_path):
    checkpoint = copy_fixture(
        tmp_path, exclude=("vocab.json", "merges.txt", "tokenizer.json")
    )
    with pytest.raises(FileNotFoundError, match="No tokenizer.*vocab.json"):
        convert_hf.convert_checkpoint(checkpoint, str(tmp_path / "out"))


def test_error_for_unsupported_activation(tmp_path):
    def set_activation(config):
        config["text_config"]["hidden_act"] = "gelu_new"

    checkpoint = copy_fixture(tmp_path, config_update=set_activation)
    with pytest.raises(ValueError, match="hidden_act is 'gelu_new'"):
        convert_hf.read_hf_config(checkpoint)


def test_error_for_missing_tensor(tmp_path):
    checkpoint = copy_fixture(tmp_path)
    path = os.path.join(checkpoint, "model.safetensors")
    tensors = load_file(path)
    del tensors["text_model.encoder.layers.1.mlp.fc2.bias"]
    save_file(tensors, path)
    with pytest.raises(
        ValueError, match="no tensor text_model.encoder.layers.1.mlp.fc2.bias"
    ):
        convert_hf.convert_backbone(checkpoint)


def test_error_when_config_and_weights_disagree(tmp_path):
    def one_text_layer(config):
        config["text_config"]["num_hidden_layers"] = 1

    checkpoint = copy_fixture(tmp_path, config_update=one_text_layer)
    with pytest.raises(ValueError, match="16 tensors .* have no place"):
        convert_hf.convert_backbone(checkpoint)


def test_error_for_non_empty_output_folder(tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        convert_hf.convert_checkpoint(FIXTURE_DIR, str(output))
    assert (output / "keep.txt").read_text() == "mine"


def test_command_line_reports_errors_without_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        convert_hf.main(
            [
                "--checkpoint",
                str(tmp_path / "nope"),
                "--output",
                str(tmp_path / "out"),
            ]
        )
    assert exit_info.value.code == 2
    assert "convert_hf: error: Checkpoint folder" in capsys.readouterr().err
