"""load_clip: one code path for preset names and folders; CLIP's epsilon."""

import json
import os

import keras_hub
import numpy as np
import pytest

from cmaclip_tf.models import load_clip
from cmaclip_tf.models import tiny_clip as tiny_clip_module
from cmaclip_tf.models.clip_components import set_text_layer_norm_epsilon


def test_tiny_preset_is_a_keras_hub_preset_folder():
    preset_dir = tiny_clip_module.tiny_clip_preset_dir()
    for name in ("config.json", "model.weights.h5", "tokenizer.json",
                 "image_converter.json", "metadata.json"):
        assert os.path.isfile(os.path.join(preset_dir, name)), name
    with open(os.path.join(preset_dir, "config.json")) as f:
        assert json.load(f)["class_name"] == "CLIPBackbone"


def test_name_and_folder_load_the_same_model(tiny_clip):
    from_folder = load_clip(tiny_clip_module.tiny_clip_preset_dir())
    for a, b in zip(tiny_clip.backbone.get_weights(),
                    from_folder.backbone.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_named_presets_go_through_the_same_keras_hub_call(monkeypatch):
    calls = []

    def fake_from_preset(cls_name):
        def from_preset(preset, **kwargs):
            calls.append((cls_name, preset))
            raise RuntimeError("offline")
        return from_preset

    monkeypatch.setattr(keras_hub.models.CLIPBackbone, "from_preset",
                        fake_from_preset("backbone"))
    with pytest.raises(RuntimeError, match="offline"):
        load_clip("clip_vit_base_patch32")
    with pytest.raises(RuntimeError, match="offline"):
        load_clip("tiny_clip")
    assert calls[0] == ("backbone", "clip_vit_base_patch32")
    assert calls[1] == ("backbone", tiny_clip_module.tiny_clip_preset_dir())


def test_text_layer_norm_epsilon_is_clip_s(tiny_clip):
    assert tiny_clip.text_encoder.layer_norm.epsilon == 1e-5
    # keras-hub alone would give 1e-6 for the same preset.
    raw = keras_hub.models.CLIPBackbone.from_preset(
        tiny_clip_module.tiny_clip_preset_dir()
    )
    assert raw.text_encoder.layer_norm.epsilon == 1e-6


def test_epsilon_changes_the_output_as_expected(tiny_clip):
    ids = np.array([[718, 5, 6, 719, 0, 0]], "int32")
    encoder = tiny_clip.text_encoder
    out_5 = np.asarray(encoder({"token_ids": ids}))
    set_text_layer_norm_epsilon(encoder, 1e-6)
    out_6 = np.asarray(encoder({"token_ids": ids}))
    set_text_layer_norm_epsilon(encoder)
    assert np.abs(out_5 - out_6).max() > 0
    np.testing.assert_allclose(out_5, out_6, atol=1e-3)


def test_vision_position_ids_are_filled(tiny_clip):
    ids = np.asarray(tiny_clip.vision_encoder.embedding.position_ids)
    np.testing.assert_array_equal(ids, np.arange(17)[None, :])


def test_tokenizer_has_clip_special_tokens_at_the_top(tiny_clip):
    tokenizer = tiny_clip.tokenizer
    size = tokenizer.vocabulary_size()
    assert tokenizer.start_token_id == size - 2
    assert tokenizer.end_token_id == size - 1
    assert tiny_clip.text_encoder.vocabulary_size == size


def test_image_converter_has_clip_normalization(tiny_clip):
    config = tiny_clip.image_converter.get_config()
    assert tuple(config["image_size"]) == (64, 64)
    assert config["interpolation"] == "bicubic"
    # A pixel equal to CLIP's mean maps to zero.
    mean = np.array(tiny_clip_module.CLIP_MEAN) * 255
    out = np.array(config["scale"]) * mean + np.array(config["offset"])
    np.testing.assert_allclose(out, 0, atol=1e-6)
