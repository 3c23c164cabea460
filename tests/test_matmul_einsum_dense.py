"""MatmulEinsumDense: Keras's attention projections as 2-D matmuls, the same
outputs and gradients, no broadcast batch matmul left in the graph."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cmaclip_tf.layers import MatmulEinsumDense
from cmaclip_tf.layers import use_matmul_projections
from cmaclip_tf.models import create_cma_clip

TASKS = {"color": 5, "pattern": 3}


def _attention(seed=0):
    keras.utils.set_random_seed(seed)
    layer = keras.layers.MultiHeadAttention(num_heads=4, key_dim=8)
    query = keras.random.normal((3, 7, 32), seed=seed)
    layer(query, query)
    return layer, query


def _outputs_and_gradients(layer, query):
    with tf.GradientTape() as tape:
        tape.watch(query)
        out = layer(query, query)
        loss = tf.reduce_sum(out * tf.sin(out))
    gradients = tape.gradient(loss, [query, *layer.trainable_weights])
    return [out.numpy()] + [g.numpy() for g in gradients]


def test_same_outputs_and_gradients_as_einsum_dense():
    layer, query = _attention()
    expected = _outputs_and_gradients(layer, query)
    config = layer.get_config()
    weights = [w.path for w in layer.weights]
    assert use_matmul_projections(layer) == 4  # Query, key, value, output.
    got = _outputs_and_gradients(layer, query)
    for a, b in zip(got, expected):  # Kernel gradients sum 21 rows.
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert layer.get_config() == config
    assert [w.path for w in layer.weights] == weights
    assert use_matmul_projections(layer) == 0  # Already switched.


def _batch_matmuls(layer, query):
    graph = tf.function(lambda q: layer(q, q)).get_concrete_function(query).graph
    return sum(op.type in ("BatchMatMulV2", "BatchMatMulV3") for op in graph.get_operations())


def test_no_broadcast_batch_matmul_is_left():
    layer, query = _attention()
    assert _batch_matmuls(layer, query) == 4  # Query, key, value, output.
    use_matmul_projections(layer)
    assert _batch_matmuls(layer, query) == 0  # (The scores are einsums.)


@pytest.mark.parametrize("equation,output_shape,bias_axes,input_shape", [
    ("abc,cde->abde", (None, 4, 8), "de", (2, 5, 16)),
    ("abcd,cde->abe", (None, 16), "e", (2, 5, 4, 8)),
    ("ab,bc->ac", 16, "c", (2, 16)),  # Another equation: EinsumDense's path.
])
def test_each_equation_equals_einsum_dense(equation, output_shape, bias_axes, input_shape):
    layer = keras.layers.EinsumDense(equation, output_shape=output_shape,
                                     bias_axes=bias_axes, activation="gelu",
                                     bias_initializer="random_normal")
    x = keras.random.normal(input_shape, seed=1)
    expected = keras.ops.convert_to_numpy(layer(x))
    layer.__class__ = MatmulEinsumDense
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected,
                               rtol=1e-5, atol=1e-6)


def test_every_projection_of_the_model_is_switched():
    model, _, _ = create_cma_clip("tiny", TASKS)
    kinds = [type(layer) for layer in model._flatten_layers()]
    # Two CLIP layers per tower and two fusion layers, four projections each.
    assert kinds.count(MatmulEinsumDense) == 24
    assert keras.layers.EinsumDense not in kinds
