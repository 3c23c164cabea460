"""LoRA (Hu et al. 2022) on CLIP's attention: trains low-rank updates of
the query and value projections of both towers instead of CLIP's weights.

Keras's `EinsumDense.enable_lora(rank)` adds the factors `A [.., rank]` and
`B [rank, out]` (B starts at zero, so the model starts unchanged) and
freezes the kernel; the projections it targets are the ones keras-hub's
`Backbone.enable_lora` picks (`default_lora_layer_names()`: `query`,
`value`). keras-hub's `enable_lora` also sets `trainable = False` on every
other layer, which empties the towers' `trainable_variables` that
`CMACLIP.module_groups` reads, so this freezes CLIP's other weights one
variable at a time instead: the towers stay trainable layers, and their
trainable variables are exactly the LoRA factors.

CLIP's projections are `MatmulEinsumDense` (`cmaclip_tf.layers`), which
hands a LoRA layer to `EinsumDense.call`. Saving needs nothing more: Keras
writes a LoRA layer's kernel merged (`W + (alpha / rank) A B`) in
`model.save` and `save_weights`, and loading one zeroes the factors; so
`best.weights.h5`, the inference bundle and the export carry the merged
weights and load into a model without LoRA.
"""

import keras


def enable_clip_lora(model, rank):
    """Turns on LoRA of rank `rank` in `model`'s CLIP towers, in place.

    Args:
        model: a built `CMACLIP`.
        rank: int >= 1.

    Returns:
        The LoRA layers (`EinsumDense`), query and value of every attention
        layer of both towers.

    Example:
    ```python
    layers = enable_clip_lora(model, rank=8)
    model.module_groups()["clip"]  # Only the layers' lora_kernel_a/_b.
    ```
    """
    if not isinstance(rank, int) or rank < 1:
        raise ValueError(f"The LoRA rank must be an integer >= 1; got {rank!r}.")
    backbone = model.clip_backbone
    targets = set(backbone.default_lora_layer_names())
    towers = (backbone.vision_encoder, backbone.text_encoder)
    layers = [
        layer for tower in towers for layer in tower._flatten_layers()
        if isinstance(layer, keras.layers.EinsumDense) and layer.name in targets
    ]
    if not layers:
        raise ValueError("CLIP has no query/value projections to put LoRA on.")
    for variable in backbone.weights:
        variable.trainable = False
    for layer in layers:
        layer.enable_lora(rank)
    return layers


def parameter_count(variables):
    """Number of scalars in `variables`."""
    total = 0
    for variable in variables:
        size = 1
        for dim in variable.shape:
            size *= int(dim)
        total += size
    return total
