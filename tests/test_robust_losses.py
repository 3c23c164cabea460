"""Noise-robust losses against hand computations: values, masking, gradients,
low-precision logits, the registry, and the JAX backend."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from cmaclip_tf.losses import get_loss
from cmaclip_tf.losses import masked_cross_entropy_sum
from cmaclip_tf.losses import masked_generalized_cross_entropy_sum
from cmaclip_tf.losses import masked_symmetric_cross_entropy_sum
from cmaclip_tf.losses import task_losses

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Worked by hand: row 0 gives the label p = 1/4, row 1 gives it p = 3/4,
# row 2 has no label (and absurd logits that must not matter).
LOGITS = np.array(
    [[0.0, np.log(3.0)], [np.log(3.0), 0.0], [1e4, -1e4]], np.float32
)
LABELS = np.array([0, 0, -1])
# CE: -ln(1/4) - ln(3/4) = ln 4 + ln(4/3).
HAND_CE = np.log(4.0) + np.log(4.0 / 3.0)
# GCE, q = 1/2: (1 - sqrt(1/4)) / (1/2) + (1 - sqrt(3/4)) / (1/2)
#             = 1 + 2 - sqrt(3) = 1.2679492.
HAND_GCE_HALF = 3.0 - np.sqrt(3.0)
# SCE, alpha 0.1, beta 1, A = -4: 0.1 * CE + 4 * (1 - p_y) summed
#   = 0.1 * (ln 4 + ln 4/3) + 4 * (3/4 + 1/4) = 0.1 * HAND_CE + 4.
HAND_SCE = 0.1 * HAND_CE + 4.0


def reference(logits, labels, name, q=0.7, alpha=0.1, beta=1.0, a=-4.0):
    """The papers' definitions in float64 numpy, over the full distribution."""
    total = 0.0
    for z, y in zip(np.asarray(logits, np.float64), labels):
        if y < 0:
            continue
        p = np.exp(z - z.max())
        p /= p.sum()
        if name == "gce":
            total += (1 - p[y] ** q) / q
            continue
        ce = -np.log(p[y])
        log_label = np.where(np.arange(len(p)) == y, 0.0, a)  # log 0 -> A
        rce = -(p * log_label).sum()
        total += ce if name == "ce" else alpha * ce + beta * rce
    return total


def test_losses_equal_the_hand_computations():
    ce, count = masked_cross_entropy_sum(LOGITS, LABELS)
    gce, gce_count = masked_generalized_cross_entropy_sum(LOGITS, LABELS, q=0.5)
    sce, sce_count = masked_symmetric_cross_entropy_sum(LOGITS, LABELS)
    assert float(count) == float(gce_count) == float(sce_count) == 2.0
    assert float(ce) == pytest.approx(HAND_CE, rel=1e-6)
    assert float(gce) == pytest.approx(HAND_GCE_HALF, rel=1e-6)
    assert float(sce) == pytest.approx(HAND_SCE, rel=1e-6)
    assert all(t.dtype == "float32" for t in (ce, gce, sce, count))


@pytest.mark.parametrize("name", ["ce", "gce", "sce"])
def test_losses_equal_the_definitions_on_random_logits(name):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (64, 7)).astype(np.float32)
    labels = rng.integers(-1, 7, 64)
    loss_sum, count = get_loss(name)(logits, labels)
    assert float(count) == (labels >= 0).sum()
    assert float(loss_sum) == pytest.approx(
        reference(logits, labels, name), rel=1e-5
    )


def test_limits_of_the_parameters():
    # q -> 0 is cross-entropy, q = 1 is 1 - p_y (the MAE family).
    small_q, _ = masked_generalized_cross_entropy_sum(LOGITS, LABELS, q=1e-4)
    assert float(small_q) == pytest.approx(HAND_CE, rel=2e-3)
    mae, _ = masked_generalized_cross_entropy_sum(LOGITS, LABELS, q=1.0)
    assert float(mae) == pytest.approx(0.75 + 0.25, rel=1e-6)
    only_ce, _ = masked_symmetric_cross_entropy_sum(LOGITS, LABELS, 1.0, 0.0)
    assert float(only_ce) == pytest.approx(HAND_CE, rel=1e-6)
    # Another clamp: RCE = -A (1 - p_y) for each row.
    rce, _ = masked_symmetric_cross_entropy_sum(
        LOGITS, LABELS, alpha=0.0, beta=1.0, log_zero=-9.0
    )
    assert float(rce) == pytest.approx(9.0 * (0.75 + 0.25), rel=1e-6)


@pytest.mark.parametrize("name", ["ce", "gce", "sce"])
def test_unlabelled_rows_change_nothing_even_when_not_finite(name):
    loss = get_loss(name)
    expected = float(loss(LOGITS, LABELS)[0])
    logits = LOGITS.copy()
    logits[2] = [np.nan, np.inf]
    loss_sum, count = loss(logits, LABELS)
    assert float(loss_sum) == pytest.approx(expected, rel=1e-6)
    assert float(count) == 2.0
    nothing, none = loss(LOGITS, np.array([-1, -1, -1]))
    assert float(nothing) == 0.0 and float(none) == 0.0


def gradient(loss, logits, labels):
    logits = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss_sum, _ = loss(logits, labels)
    return tape.gradient(loss_sum, logits).numpy()


def test_gradients_equal_the_hand_computations():
    # Row 0 (p = [1/4, 3/4], label 0): d CE / dz = p - y = [-3/4, 3/4].
    # GCE's gradient is p_y^q times CE's (Zhang & Sabuncu, eq. 6): with
    # q = 1/2, 1/2 * [-3/4, 3/4]. SCE's is (alpha + beta * -A * p_y) times
    # CE's: (0.1 + 4 / 4) * [-3/4, 3/4].
    logits, labels = LOGITS[:1], LABELS[:1]
    ce = np.array([[-0.75, 0.75]])
    np.testing.assert_allclose(
        gradient(masked_cross_entropy_sum, logits, labels), ce, rtol=1e-5
    )
    np.testing.assert_allclose(
        gradient(get_loss({"name": "gce", "q": 0.5}), logits, labels),
        0.5 * ce,
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        gradient(masked_symmetric_cross_entropy_sum, logits, labels),
        1.1 * ce,
        rtol=1e-5,
    )


@pytest.mark.parametrize("name", ["ce", "gce", "sce"])
def test_gradients_are_finite_at_extreme_logits(name):
    logits = np.array(
        [[1e4, -1e4, 0.0], [-80.0, 80.0, 0.0], [0.0, 0.0, 0.0]], np.float32
    )
    labels = np.array([1, 1, 2])  # Row 0 is hopelessly wrong, row 1 right.
    loss_sum, _ = get_loss(name)(logits, labels)
    assert np.isfinite(float(loss_sum))
    grads = gradient(get_loss(name), logits, labels)
    assert np.all(np.isfinite(grads)), grads


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("name", ["ce", "gce", "sce"])
def test_low_precision_logits_are_computed_in_float32(name, dtype):
    logits = tf.cast(tf.constant(LOGITS[:2] * 3.0), dtype)
    loss_sum, count = get_loss(name)(logits, LABELS[:2])
    assert loss_sum.dtype == "float32" and count.dtype == "float32"
    rounded = tf.cast(logits, "float32").numpy()
    assert float(loss_sum) == pytest.approx(
        reference(rounded, LABELS[:2], name), rel=1e-5
    )


def test_registry_reads_specs_as_data():
    gce = get_loss({"name": "gce", "q": 0.5})
    assert float(gce(LOGITS, LABELS)[0]) == pytest.approx(HAND_GCE_HALF, rel=1e-6)
    default_gce = float(get_loss("gce")(LOGITS, LABELS)[0])
    assert default_gce == pytest.approx(
        reference(LOGITS, LABELS, "gce", q=0.7), rel=1e-6
    )
    with pytest.raises(ValueError, match="Unknown loss 'focal'"):
        get_loss("focal")
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['gamma'\]"):
        get_loss({"name": "sce", "gamma": 2.0})
    with pytest.raises(ValueError, match="0 < q <= 1"):
        get_loss({"name": "gce", "q": 0.0})
    with pytest.raises(ValueError, match="log_zero"):
        get_loss({"name": "sce", "log_zero": 0.0})


def test_logits_and_labels_of_other_batch_sizes_are_an_error():
    with pytest.raises(ValueError, match="3 rows of logits but 1 labels"):
        masked_cross_entropy_sum(LOGITS, LABELS[:1])


def test_per_task_specs():
    losses = task_losses({"color": "ce", "style": {"name": "gce", "q": 0.5}},
                         ["color", "style"])
    assert float(losses["color"](LOGITS, LABELS)[0]) == pytest.approx(
        HAND_CE, rel=1e-6)
    assert float(losses["style"](LOGITS, LABELS)[0]) == pytest.approx(
        HAND_GCE_HALF, rel=1e-6)
    with pytest.raises(ValueError, match="no task"):
        task_losses({"color": "ce"}, ["color", "style"])


@pytest.mark.large  # A second process with Keras on JAX.
def test_losses_and_gradients_under_the_jax_backend(tmp_path):
    script = (
        "import json, sys, jax, numpy as np, keras\n"
        "assert keras.backend.backend() == 'jax'\n"
        "from cmaclip_tf.losses import get_loss\n"
        "logits, labels = np.array(json.loads(sys.argv[1]), np.float32), "
        "np.array(json.loads(sys.argv[2]))\n"
        "out = {}\n"
        "for spec in ['ce', {'name': 'gce', 'q': 0.5}, 'sce']:\n"
        "    loss = get_loss(spec)\n"
        "    f = jax.jit(lambda z, y: loss(z, y)[0])\n"
        "    out[json.dumps(spec)] = [float(f(logits, labels)),\n"
        "        np.asarray(jax.grad(f)(logits[:1], labels[:1])).tolist()]\n"
        "print(json.dumps(out))\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=REPO)
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(LOGITS.tolist()),
         json.dumps(LABELS.tolist())],
        env=env, check=True, timeout=300, capture_output=True, text=True,
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    ce = np.array([[-0.75, 0.75]])
    for spec, value, scale in (
        ('"ce"', HAND_CE, 1.0),
        ('{"name": "gce", "q": 0.5}', HAND_GCE_HALF, 0.5),
        ('"sce"', HAND_SCE, 1.1),
    ):
        loss_sum, grad = out[spec]
        assert loss_sum == pytest.approx(value, rel=1e-5), spec
        np.testing.assert_allclose(grad, scale * ce, rtol=1e-5, err_msg=spec)
