"""FusedAdamW, as the group optimizer builds it: the update of Keras's AdamW
(decay, moments, bias correction, learning-rate schedule, vectors spared from
decay, an embedding's sparse gradient, float16 loss scaling) in a fraction
of the graph."""

import keras
import numpy as np
import tensorflow as tf

from trainers.training.group_optimizer import group_optimizer
from trainers.training.learning_rate_schedule import WarmupSchedule

STEPS = 4


def _variables(seed=0):
    rng = np.random.default_rng(seed)
    return [
        tf.Variable(rng.normal(size=(6, 5)).astype("float32"), name="kernel"),
        tf.Variable(rng.normal(size=(5,)).astype("float32"), name="bias"),
        tf.Variable(rng.normal(size=(9, 4)).astype("float32"), name="embedding"),
    ]


def _gradients(variables, step, scale=1.0):
    """Dense gradients, and an embedding's `IndexedSlices` (rows 1 and 7)."""
    rng = np.random.default_rng(100 + step)
    kernel, bias, embedding = variables

    def normal(shape):
        return tf.constant(scale * rng.normal(size=shape).astype("float32"))

    return [
        normal(kernel.shape),
        normal(bias.shape),
        tf.IndexedSlices(normal((2, 4)), tf.constant([1, 7], tf.int64),
                         dense_shape=tf.constant(list(embedding.shape), tf.int64)),
    ]


def _train(make_optimizer, loss_scale=1.0):
    variables = _variables()
    optimizer = make_optimizer(variables)

    @tf.function
    def step(gradients):
        optimizer.apply(gradients, variables)

    for index in range(STEPS):
        step(_gradients(variables, index, loss_scale))
    return [v.numpy() for v in variables], step


def _schedule():
    return WarmupSchedule(total_steps=STEPS, warmup_steps=2)(0.05)


def _keras_adamw(variables):
    optimizer = keras.optimizers.AdamW(learning_rate=_schedule(), weight_decay=0.3,
                                       beta_1=0.8, beta_2=0.95, epsilon=1e-4)
    optimizer.exclude_from_weight_decay(var_list=[variables[1]])
    optimizer.build(variables)
    return optimizer


def _fused(variables, loss_scaling=False):
    return group_optimizer(variables, _schedule(), 0.3, loss_scaling=loss_scaling,
                           beta_1=0.8, beta_2=0.95, epsilon=1e-4)


def test_equals_keras_adamw_step_by_step():
    expected, _ = _train(_keras_adamw)
    fused, _ = _train(_fused)
    initial = [v.numpy() for v in _variables()]
    for got, want, start in zip(fused, expected, initial):
        assert np.max(np.abs(want - start)) > 1e-2  # Every variable moved.
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # Embedding rows that no step's gradient touches keep zero moments, so
    # they only decay, step by step at the scheduled rate.
    untouched = [0, 2, 3, 4, 5, 6, 8]
    rates = [float(_schedule()(i)) for i in range(STEPS)]
    decayed = initial[2][untouched] * np.prod([1 - r * 0.3 for r in rates])
    np.testing.assert_allclose(fused[2][untouched], decayed, rtol=1e-6)
    assert not np.allclose(decayed, initial[2][untouched])


def test_loss_scaled_float16_gradients_unscale_to_the_same_update():
    expected, _ = _train(_keras_adamw)
    scale = 2.0**15  # LossScaleOptimizer's initial scale.
    fused, _ = _train(lambda v: _fused(v, loss_scaling=True), loss_scale=scale)
    for got, want in zip(fused, expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def _graph_ops(make_optimizer):
    variables, step = _train(make_optimizer)
    graph = step.get_concrete_function(_gradients(variables, 0)).graph
    return len(graph.get_operations())


def test_the_update_takes_a_fraction_of_keras_adamw_graph():
    # Three variables here; per variable, Keras builds its moments, bias
    # correction, decay and learning-rate schedule anew.
    keras_ops, fused_ops = _graph_ops(_keras_adamw), _graph_ops(_fused)
    assert fused_ops < 0.5 * keras_ops, (fused_ops, keras_ops)


def test_each_kind_of_weight_decay_moves_a_weight_by_the_expected_amount():
    # One step from zero moments, learning rate a, decay rate λ, gradient g;
    # TensorFlow's Adam: w -= a_t m / (√v + ε), a_t = a √(1 - β2) / (1 - β1),
    # m = (1 - β1) g', v = (1 - β2) g'².
    a, decay, beta_1, beta_2, epsilon = 0.1, 0.5, 0.9, 0.999, 1e-3
    rng = np.random.default_rng(3)
    kernel = rng.normal(size=(3, 2)).astype("float32")
    bias = rng.normal(size=(2,)).astype("float32")
    gradients = [rng.normal(size=(3, 2)).astype("float32") * 1e-3,
                 rng.normal(size=(2,)).astype("float32") * 1e-3]

    def adam(weight, gradient):
        a_t = a * np.sqrt(1 - beta_2) / (1 - beta_1)
        m, v = (1 - beta_1) * gradient, (1 - beta_2) * gradient**2
        return weight - a_t * m / (np.sqrt(v) + epsilon)

    expected = {
        # AdamW: shrink by a λ w, then Adam on the gradient alone.
        "decoupled": adam(kernel * (1 - a * decay), gradients[0]),
        # Adam with weight decay (PyTorch's): λ w joins the gradient.
        "l2": adam(kernel, gradients[0] + decay * kernel),
    }
    for kind, want in expected.items():
        variables = [tf.Variable(kernel), tf.Variable(bias)]
        optimizer = group_optimizer(variables, a, {"kind": kind, "rate": decay},
                                    beta_1=beta_1, beta_2=beta_2, epsilon=epsilon)
        optimizer.apply([tf.constant(g) for g in gradients], variables)
        np.testing.assert_allclose(variables[0].numpy(), want, rtol=1e-5, err_msg=kind)
        # The two kinds differ by far more than rounding.
        assert np.max(np.abs(want - adam(kernel, gradients[0]))) > 1e-3
        # Vectors never decay.
        np.testing.assert_allclose(variables[1].numpy(), adam(bias, gradients[1]),
                                   rtol=1e-5, err_msg=kind)
    # A plain number is the decoupled kind (older recipes).
    assert group_optimizer([tf.Variable(kernel)], a, 0.5).weight_decay_kind == "decoupled"
