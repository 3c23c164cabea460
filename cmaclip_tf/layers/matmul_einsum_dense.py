"""Attention projections as one 2-D matrix product each.

Keras's `MultiHeadAttention` projects with `EinsumDense`: `abc,cde->abde`
for the query, key and value (`[B, S, D]` to `[B, S, heads, head_dim]`) and
`abcd,cde->abe` for the output. On TensorFlow, where the sequence length
is static, Keras lowers both to a `[B, S, D] x [D, heads * head_dim]`
matmul, a broadcast `BatchMatMulV2` that CPUs run at about half the speed
of the 2-D `MatMul` that `Dense` gets (a tensordot), and whose gradient for
the kernel is a batched product then a sum over the batch; where it is not,
to an `Einsum`. These are a third of a transformer's matmul
FLOPs: CLIP's two towers (keras-hub's `CLIPEncoderLayer`) and the fusion
transformer (keras-hub's `TransformerEncoder`) are built of them.

`MatmulEinsumDense` is `EinsumDense` computing those two equations as
`ops.matmul` of the input and the kernel reshaped to a matrix (the same
product; any other equation, a LoRA or a quantized layer goes through
`EinsumDense` unchanged). `use_matmul_projections(layer)` switches every
`EinsumDense` inside a built layer to it in place, keeping its weights,
config and variable paths, as `set_text_layer_norm_epsilon` fixes CLIP's
epsilon in keras-hub's encoder after it is built.
"""

import keras
from keras import ops

# Keras's projection equations (`MultiHeadAttention` on rank-3 inputs).
_HEADS_OUT = "abc,cde->abde"  # [B, S, D] x [D, H, K] -> [B, S, H, K]
_HEADS_IN = "abcd,cde->abe"  # [B, S, H, K] x [H, K, E] -> [B, S, E]


@keras.saving.register_keras_serializable(package="cmaclip_tf")
class MatmulEinsumDense(keras.layers.EinsumDense):
    """`keras.layers.EinsumDense` whose attention projections are 2-D matmuls.

    Same arguments, weights and config as `EinsumDense`; `abc,cde->abde` and
    `abcd,cde->abe` run as one matrix product of the flattened input and
    kernel.

    Example:
    ```python
    layer = MatmulEinsumDense("abc,cde->abde", output_shape=(None, 8, 64),
                              bias_axes="de")
    layer(keras.random.normal((2, 50, 512))).shape  # (2, 50, 8, 64)
    ```
    """

    def call(self, inputs, training=None):
        if (self.equation not in (_HEADS_OUT, _HEADS_IN) or self.lora_enabled
                or self.quantization_mode is not None):
            return super().call(inputs, training=training)
        kernel = self.kernel
        if self.equation == _HEADS_OUT:
            depth, heads, head_dim = kernel.shape
            x = ops.matmul(inputs, ops.reshape(kernel, (depth, heads * head_dim)))
            x = ops.reshape(x, (*ops.shape(x)[:-1], heads, head_dim))
        else:
            heads, head_dim, depth = kernel.shape
            x = ops.reshape(inputs, (*ops.shape(inputs)[:-2], heads * head_dim))
            x = ops.matmul(x, ops.reshape(kernel, (heads * head_dim, depth)))
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x


def use_matmul_projections(layer):
    """Switches every `EinsumDense` in `layer` (itself included) to
    `MatmulEinsumDense`, in place; returns how many it switched."""
    switched = 0
    for sublayer in [layer, *layer._flatten_layers(include_self=False)]:
        if type(sublayer) is keras.layers.EinsumDense:
            sublayer.__class__ = MatmulEinsumDense
            switched += 1
    return switched
