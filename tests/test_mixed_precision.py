"""--mixed-precision reaches every layer of CLIP's towers, not just the top.

A keras-hub preset's `config.json` pins each nested encoder's dtype policy
(float32), so before `load_clip` rebuilt them, a mixed-precision CMA-CLIP
computed its fusion and heads in half precision and its towers, most of the
compute, in float32.
"""

import keras
import numpy as np
import pytest
from micro_model import micro_model_config
from micro_model import micro_model_path

from cmaclip_tf.models import create_cma_clip
from cmaclip_tf.models.dtype_policy import layers_off_policy
from trainers import run as run_cli

TASKS = {"color": 3, "pattern": 2}


def _assert_towers_compute_in(model, policy, compute_dtype):
    backbone = model.clip_backbone
    assert layers_off_policy(backbone.vision_encoder, policy) == []
    assert layers_off_policy(backbone.text_encoder, policy) == []
    # Variables stay float32; activations come out in the compute dtype.
    assert {v.dtype for v in backbone.weights if "seed" not in v.path} <= {
        "float32", "int32", "int64"}
    size = backbone.vision_encoder.image_shape[0]
    features = model.encode(np.zeros((2, size, size, 3), "float32"),
                            np.ones((2, 8), "int32"), np.ones((2, 8), bool))
    assert features["image_sequence"].dtype == compute_dtype
    assert features["text_sequence"].dtype == compute_dtype


@pytest.mark.parametrize("policy,compute_dtype", [
    ("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")])
def test_the_python_api_under_a_global_policy(policy, compute_dtype):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model, _, _ = create_cma_clip(micro_model_config(), TASKS)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    _assert_towers_compute_in(model, policy, compute_dtype)
    # The fusion too; only the heads' logits and linear (zero-shot) paths
    # are float32 on purpose.
    assert sorted(p.split(": ")[0].rsplit("/", 1)[-1] for p in layers_off_policy(
        model, policy)) == ["linear", "linear", "logits", "logits"]


def test_an_explicit_dtype_wins_over_the_global_policy():
    model, _, _ = create_cma_clip(micro_model_config(), TASKS, dtype="mixed_bfloat16")
    _assert_towers_compute_in(model, "mixed_bfloat16", "bfloat16")


def test_the_command_line_flag(tmp_path):
    from trainers.training.training_run import TrainingRun

    args = run_cli.build_parser().parse_args([
        "--mixed-precision", "--model", micro_model_path(), "--num-examples", "16",
        "--workdir", str(tmp_path / "run"), "--quiet"])
    try:
        run = TrainingRun(args)
        model, _, _ = run.build_model()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    _assert_towers_compute_in(model, "mixed_bfloat16", "bfloat16")
