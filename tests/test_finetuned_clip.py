"""--variant finetuned_clip: CLIP trained contrastively on the training
split's image-title pairs, then zero-shot with class prompts from that CLIP."""

import json
import os

import numpy as np
import pytest
from micro_model import micro_model_config
from micro_model import micro_model_path
from trainer_processes import run_trainer

# The micro model (a random one-layer CLIP): the test pins the mechanics.
QUICK = ["--dataset", "synthetic", "--num-examples", "48", "--batch-size", "8",
         "--quiet", "--seed", "1", "--model", micro_model_path()]


def _metrics(workdir):
    with open(os.path.join(workdir, "metrics.json")) as f:
        return json.load(f)["stages"]


@pytest.mark.large
def test_finetunes_on_titles_then_classifies_with_that_clip(tmp_path):
    import keras

    from cmaclip_tf.models import load_clip
    from trainers.suites.noise_robustness import load_run_model

    workdir = str(tmp_path / "finetuned")
    out = run_trainer("run", [*QUICK, "--variant", "finetuned_clip", "--epochs",
                              "2", "--workdir", workdir])
    assert "[contrastive] Epoch 2/2" in out
    stages = _metrics(workdir)
    # Retrieval over the validation split's image-title pairs (48 -> 8).
    assert stages["contrastive"]["start"]["count"] == 8
    tuned = load_clip(os.path.join(workdir, "preset"))
    best = load_clip(micro_model_config()["clip_preset"]).backbone
    best.load_weights(os.path.join(workdir, "contrastive", "best.weights.h5"))
    for a, b in zip(tuned.backbone.weights, best.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b))

    # Its classification is zero-shot CLIP's with the fine-tuned preset.
    reference = str(tmp_path / "zero_shot")
    run_trainer("run", [*QUICK, "--variant", "zero_shot", "--clip-preset",
                        os.path.join(workdir, "preset"), "--workdir", reference])
    assert stages["zero_shot"] == _metrics(reference)["zero_shot"]
    # Noise robustness rebuilds the run's model from that CLIP too.
    model = load_run_model(workdir)[0]
    for a, b in zip(model.clip_backbone.weights, tuned.backbone.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b))
    # No CMA-CLIP bundle to export.
    assert "Export it for TF Serving" not in out
