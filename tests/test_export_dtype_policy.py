"""An export from a mixed-precision run serves in float32 unless asked to
keep the trained policy."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tiny_export
from cmaclip_tf.inference import export


@pytest.mark.large  # Two exports of a mixed-precision model: a minute.
def test_a_mixed_precision_model_exports_float32_unless_asked(tmp_path):
    import keras

    from cmaclip_tf.models.dtype_policy import layers_off_policy
    from cmaclip_tf.models.dtype_policy import with_dtype_policy

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        bundle_dir = str(tmp_path / "inference")
        model, text_preprocessor, image_preprocessor = (
            tiny_export.make_tiny_inference_bundle(bundle_dir, seed=3))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.dtype_policy.name == "mixed_bfloat16"
    # CLIP's towers trained in bfloat16 too (a preset pins them to float32),
    # and the float32 copy an export serves has no bfloat16 layer left.
    assert layers_off_policy(model.clip_backbone, "mixed_bfloat16") == []
    assert layers_off_policy(with_dtype_policy(model, "float32"), "float32") == []
    version_dir = export.export_saved_model(bundle_dir, str(tmp_path / "models"), "m")
    with open(os.path.join(version_dir, "assets", export.CONFIG_ASSET)) as f:
        assert json.load(f)["dtype_policy"] == "float32"
    images = image_preprocessor(tf.constant([tiny_export.sample_images()["jpeg"]] * 2))
    tokens = text_preprocessor(tf.constant(tiny_export.TEXTS))
    outputs = tf.saved_model.load(version_dir).signatures["predict_tensors"](
        images=images, **tokens)
    inputs = {"images": images, **tokens}
    float32 = with_dtype_policy(model, "float32")(inputs)
    bfloat16 = model(inputs)
    for task in tiny_export.TASKS:
        served = outputs[f"{task}_probabilities"].numpy()
        np.testing.assert_allclose(
            served, tf.nn.softmax(float32[f"{task}_logits"]).numpy(), atol=1e-6)
        # Not what the model computes in bfloat16.
        assert np.max(np.abs(
            served - tf.nn.softmax(bfloat16[f"{task}_logits"]).numpy())) > 1e-4
    # Asked for the trained policy, the export keeps it.
    kept = export.export_saved_model(bundle_dir, str(tmp_path / "models"), "m",
                                     dtype_policy=None)
    with open(os.path.join(kept, "assets", export.CONFIG_ASSET)) as f:
        assert json.load(f)["dtype_policy"] == "mixed_bfloat16"
