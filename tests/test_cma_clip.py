"""CMACLIP: variants, padding and order invariance, save/load, depths, groups."""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from cmaclip_tf.models import CMACLIP
from cmaclip_tf.models.cma_clip import VARIANTS

TASKS = {"color": 12, "pattern": 6, "style": 5}
SEQUENCE_LENGTH = 16
# Two fusion layers of width 64, and no dropout: outputs are deterministic.
SMALL_FUSION = dict(fusion_num_layers=2, fusion_hidden_dim=64, fusion_num_heads=4,
                    fusion_dropout=0.0, head_dropout=0.0)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _model(tiny_clip, variant="full"):
    keras.utils.set_random_seed(0)
    # A fresh copy, so tests that change weights don't leak into others.
    backbone = tiny_clip.backbone.from_config(tiny_clip.backbone.get_config())
    backbone.set_weights(tiny_clip.backbone.get_weights())
    return CMACLIP(backbone, TASKS, variant=variant, **SMALL_FUSION)


def _tokens(tiny_clip, texts, length=SEQUENCE_LENGTH):
    tokenizer = tiny_clip.tokenizer
    ids = np.zeros((len(texts), length), "int32")
    for row, text in enumerate(texts):
        body = list(np.asarray(tokenizer(text)))[: length - 2]
        row_ids = [tokenizer.start_token_id, *body, tokenizer.end_token_id]
        ids[row, : len(row_ids)] = row_ids
    lengths = (ids != 0).sum(1)
    return ids, np.arange(length)[None, :] < lengths[:, None]


def _inputs(tiny_clip, length=SEQUENCE_LENGTH):
    rng = np.random.default_rng(0)
    texts = [
        "acme red striped sheath dress",
        "women's blue dress",
        "",
        "green plaid shirt, size xl",
    ]
    ids, mask = _tokens(tiny_clip, texts, length)
    images = rng.normal(size=(4, 64, 64, 3)).astype("float32")
    return {"images": images, "token_ids": ids, "padding_mask": mask}


def _assert_outputs_close(got, want, atol=1e-5):
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_allclose(
            np.asarray(got[key]), np.asarray(want[key]), atol=atol, err_msg=key
        )


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_builds_and_runs(tiny_clip, variant):
    model = _model(tiny_clip, variant)
    outputs = model(_inputs(tiny_clip))
    for task, num_classes in TASKS.items():
        assert outputs[f"{task}_logits"].shape == (4, num_classes)
        image_weight = np.asarray(outputs[f"{task}_image_weight"])
        assert image_weight.shape == (4,)
        if variant != "full":  # The full model's λ: the hand computation below.
            np.testing.assert_allclose(image_weight, 0.5)
    assert np.isfinite(np.asarray(outputs["color_logits"])).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_same_text_padded_to_two_lengths_gives_same_logits(tiny_clip, variant):
    model = _model(tiny_clip, variant)
    short = model(_inputs(tiny_clip, length=SEQUENCE_LENGTH))
    long = model(_inputs(tiny_clip, length=2 * SEQUENCE_LENGTH))
    _assert_outputs_close(long, short, atol=1e-5)


def test_batch_order_does_not_change_per_example_outputs(tiny_clip):
    model = _model(tiny_clip)
    inputs = _inputs(tiny_clip)
    outputs = model(inputs)
    order = np.array([2, 0, 3, 1])
    shuffled = model({k: v[order] for k, v in inputs.items()})
    _assert_outputs_close(
        shuffled, {k: np.asarray(v)[order] for k, v in outputs.items()}
    )


def test_lambda_and_logits_match_a_hand_computation(tiny_clip):
    model = _model(tiny_clip)
    rng = np.random.default_rng(3)
    for layer in model.modality_attentions:
        layer.kernel.assign(rng.normal(size=64) * 0.3)
    inputs = _inputs(tiny_clip)
    outputs = model(inputs)
    embeddings = model.fuse(model.encode(**inputs))
    image = np.asarray(embeddings["image_embedding"], np.float64)
    text = np.asarray(embeddings["text_embedding"], np.float64)
    for task, attention, head in zip(TASKS, model.modality_attentions, model.heads):
        w = np.asarray(attention.kernel, np.float64)
        image_score, text_score = image @ w, text @ w  # eq. (4), (5)
        lam = 1.0 / (1.0 + np.exp(text_score - image_score))  # eq. (6)
        np.testing.assert_allclose(
            outputs[f"{task}_image_weight"], lam, rtol=1e-4, err_msg=task
        )
        # λ differs across examples and from 1/2: the check above can fail.
        assert np.ptp(lam) > 1e-2 and np.abs(lam - 0.5).max() > 0.05
        fused = lam[:, None] * image + (1.0 - lam[:, None]) * text  # eq. (3)
        np.testing.assert_allclose(
            outputs[f"{task}_logits"], head(fused.astype("float32")),
            atol=1e-4, err_msg=task,
        )


def test_call_is_encode_then_fuse_then_classify(tiny_clip):
    model = _model(tiny_clip)
    inputs = _inputs(tiny_clip)
    features = model.encode(**inputs)
    assert sorted(features) == ["image_sequence", "padding_mask", "text_sequence"]
    embeddings = model.fuse(features)
    assert sorted(embeddings) == ["image_embedding", "text_embedding"]
    _assert_outputs_close(model.classify(embeddings), model(inputs), atol=1e-6)
    # Calling the model takes raw inputs only; other depths have their step.
    with pytest.raises(ValueError, match="Pass CLIP features to `fuse`"):
        model(features)


@pytest.mark.parametrize("variant", VARIANTS)
def test_save_and_load_give_identical_outputs(tiny_clip, variant, tmp_path):
    model = _model(tiny_clip, variant)
    for layer in model.modality_attentions:
        if layer.weights:
            layer.weights[0].assign(np.linspace(-1, 1, 64))
    inputs = _inputs(tiny_clip)
    expected = model(inputs)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.clip_backbone.text_encoder.layer_norm.epsilon == 1e-5
    _assert_outputs_close(restored(inputs), expected, atol=0)
    assert restored.get_config()["tasks"] == TASKS


def test_module_groups_partition_the_trainable_variables(tiny_clip):
    model = _model(tiny_clip)
    groups = model.module_groups()
    grouped = [id(v) for variables in groups.values() for v in variables]
    assert len(grouped) == len(set(grouped))
    unused = {"vision_projection/kernel", "text_projection/kernel",
              "clip_head/logit_scale"}
    expected = [v for v in model.trainable_variables if v.path not in unused]
    assert sorted(grouped) == sorted(id(v) for v in expected)
    assert [tuple(v.shape) for v in groups["modality_attention"]] == [(64,)] * 3
    assert len(groups["fusion"]) > 0


def test_fusion_projections_start_from_clip(tiny_clip):
    model = _model(tiny_clip)
    np.testing.assert_array_equal(
        model.sequence_attention.image_projection.kernel,
        model.clip_backbone.vision_projection.kernel,
    )
    np.testing.assert_array_equal(
        model.sequence_attention.text_projection.kernel,
        model.clip_backbone.text_projection.kernel,
    )


def test_unknown_variant_is_a_clear_error(tiny_clip):
    with pytest.raises(ValueError, match="Unknown variant 'nope'"):
        CMACLIP(tiny_clip.backbone, TASKS, variant="nope")


def test_layers_and_model_use_keras_ops_only():
    sources = [
        os.path.join(REPO, "cmaclip_tf", "layers", name)
        for name in os.listdir(os.path.join(REPO, "cmaclip_tf", "layers"))
        if name.endswith(".py")
    ] + [os.path.join(REPO, "cmaclip_tf", "models", "cma_clip.py")]
    for path in sources:
        with open(path) as f:
            text = f.read()
        assert "import tensorflow" not in text, path
        assert not re.search(r"\btf\.", text), path


@pytest.mark.large  # A second process with Keras on JAX.
def test_model_runs_identically_under_the_jax_backend(tiny_clip, tmp_path):
    model = _model(tiny_clip)
    inputs = _inputs(tiny_clip)
    expected = {k: np.asarray(v) for k, v in model(inputs).items()}
    model.save(str(tmp_path / "model.keras"))
    np.savez(tmp_path / "inputs.npz", **inputs)
    script = (
        "import sys, jax, numpy as np, keras, cmaclip_tf.models\n"
        "assert keras.backend.backend() == 'jax'\n"
        "m = keras.models.load_model(sys.argv[1] + '/model.keras')\n"
        "x = dict(np.load(sys.argv[1] + '/inputs.npz'))\n"
        # One XLA program, as a JAX user runs it (op by op is minutes).
        "y = jax.jit(lambda x: m(x))(x)\n"
        "np.savez(sys.argv[1] + '/out.npz', **{k: np.asarray(v) for k, v in y.items()})\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=REPO)
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], env=env, check=True,
        timeout=300,
    )
    got = dict(np.load(tmp_path / "out.npz"))
    _assert_outputs_close(got, expected, atol=1e-4)
