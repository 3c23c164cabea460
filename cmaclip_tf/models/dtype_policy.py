"""A model rebuilt under another dtype policy, with the same weights."""

import keras

# What a mixed-precision run's model serves in by default: CPUs have no fast
# bfloat16 or float16 matmuls, and float32 gives the scores as validated.
SERVING_DTYPE_POLICY = "float32"


def with_dtype_policy(model, policy=SERVING_DTYPE_POLICY):
    """A copy of `model` whose every layer computes under `policy`.

    Mixed-precision policies keep float32 variables, so the weights copy
    over unchanged; only the compute dtype differs.

    Args:
        model: a Keras model that serializes (e.g. `CMACLIP`).
        policy: a Keras dtype policy name: `float32`, `mixed_bfloat16`,
            `mixed_float16`.

    Returns:
        `model` itself if every layer already runs under `policy`, else a new
        model.

    Example:
    ```python
    model = keras.saving.load_model("runs/demo/inference/model.keras")
    served = with_dtype_policy(model, "float32")
    ```
    """
    policy = keras.dtype_policies.get(policy)
    if not layers_off_policy(model, policy):
        return model
    config = _with_policy(keras.saving.serialize_keras_object(model), policy.name)
    copy = keras.saving.deserialize_keras_object(config)
    copy.set_weights(model.get_weights())
    return copy


def layers_off_policy(model, policy=None):
    """The layers of `model` (itself and every nested one) whose dtype
    policy is not `policy` (default: the global one), as `path: policy`.

    A keras-hub preset's `config.json` pins each nested encoder's policy, so
    a model can run under mixed precision at the top and in float32 below.
    """
    name = keras.dtype_policies.get(policy or keras.config.dtype_policy()).name
    return [f"{layer.path or layer.name}: {layer.dtype_policy.name}"
            for layer in model._flatten_layers()
            # An input layer computes nothing.
            if not isinstance(layer, keras.layers.InputLayer)
            and layer.dtype_policy.name != name]


def _with_policy(config, name):
    """The serialized config with every layer's dtype policy set to `name`."""
    if isinstance(config, list):
        return [_with_policy(item, name) for item in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") == "DTypePolicy" and "config" in config:
        return dict(config, config=dict(config["config"], name=name))
    return {key: _with_policy(value, name) for key, value in config.items()}
