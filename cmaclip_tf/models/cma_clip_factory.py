"""Builds a CMA-CLIP model from a model config name or JSON path."""

from cmaclip_tf.models.clip_components import CLIPComponents
from cmaclip_tf.models.clip_components import build_clip_backbone
from cmaclip_tf.models.clip_loader import load_clip
from cmaclip_tf.models.cma_clip import CMACLIP
from cmaclip_tf.models.model_config import get_model_config


def create_cma_clip(
    model_config,
    tasks,
    variant="full",
    clip_preset=None,
    pretrained=True,
    dtype=None,
):
    """Returns `(model, clip_components, config)`.

    Args:
        model_config: a built-in name (`tiny`, `vit_b32`), a JSON path or a
            config dict.
        tasks: dict of task name to number of classes.
        variant: `full`, `no_ma` or `no_ma_sa`.
        clip_preset: overrides the config's `clip_preset` (a keras-hub preset
            name or a local preset folder).
        pretrained: bool. False builds CLIP from the config's
            `clip_architecture` with random weights and loads no preset (the
            tokenizer and image converter are then None), e.g. to benchmark
            `vit_b32` offline.
        dtype: optional dtype policy name for the model, CLIP's encoders
            included; default: the global policy.
    """
    config = get_model_config(model_config)
    if clip_preset:
        config["clip_preset"] = clip_preset
    if pretrained:
        clip = load_clip(config["clip_preset"], dtype=dtype)
        backbone = clip.backbone
    else:
        backbone = build_clip_backbone(config["clip_architecture"], dtype=dtype)
        clip = CLIPComponents(backbone, None, None, "random")
    fusion = config["fusion"]
    head = config["head"]
    model = CMACLIP(
        backbone,
        tasks,
        variant=variant,
        fusion_num_layers=fusion["num_layers"],
        fusion_hidden_dim=fusion["hidden_dim"],
        fusion_num_heads=fusion["num_heads"],
        fusion_intermediate_dim=fusion.get("intermediate_dim"),
        fusion_dropout=fusion.get("dropout", 0.0),
        head_hidden_dim=head.get("hidden_dim"),
        head_dropout=head.get("dropout", 0.0),
        zero_shot_start=config.get("zero_shot_start", False),
        dtype=dtype,
    )
    return model, clip, config
