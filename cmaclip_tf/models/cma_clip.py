"""CMA-CLIP: CLIP encoders, sequence- and modality-wise attention, task heads."""

import keras
from keras import ops

from cmaclip_tf.configs.variants import POOLED_VARIANTS
from cmaclip_tf.configs.variants import VARIANTS
from cmaclip_tf.layers import AverageFusion
from cmaclip_tf.layers import ConcatenationFusion
from cmaclip_tf.layers import MLPHead
from cmaclip_tf.layers import ModalityAttention
from cmaclip_tf.layers import SequenceWiseAttention
from cmaclip_tf.layers import end_of_text_embedding
from cmaclip_tf.layers import l2_normalize
from cmaclip_tf.layers import use_matmul_projections
from cmaclip_tf.models.clip_components import deserialize_clip_backbone
from cmaclip_tf.models.clip_components import set_text_layer_norm_epsilon

MODULE_GROUPS = ("clip", "fusion", "modality_attention", "heads")
RAW_INPUTS = ("images", "token_ids", "padding_mask")


@keras.saving.register_keras_serializable(package="cmaclip_tf")
class CMACLIP(keras.Model):
    """Multi-task image-text classifier of Liu et al. (2021), Figure 1.

    CLIP's vision and text encoders give the patch and token sequences; a
    `SequenceWiseAttention` fuses them into I' and T'; per task, a
    `ModalityAttention` weighs them into `c` and an `MLPHead` classifies `c`.

    Variants (the paper's ablations, Table 6):
    - `"full"`: CMA-CLIP.
    - `"no_ma"`: "w/o MA", `c = (I' + T') / 2`.
    - `"no_ma_sa"`: "w/o MA+SA", no fusion transformer; CLIP's pooled,
      projected image and text embeddings averaged into the heads.
    - `"clip_linear"`: the fine-tuned CLIP baseline: CLIP's pooled, projected
      embeddings concatenated into one linear layer per task.

    Calling the model takes raw inputs, a dict of `images` `[B, H, W, 3]`
    (CLIP-normalized), `token_ids` `[B, L]` and `padding_mask` `[B, L]`. The
    forward pass is three explicit steps, so that frozen stages can cache the
    output of a frozen front and feed it to the next step (the result is the
    same as calling the model):
    - `encode(images, token_ids, padding_mask)`: CLIP's sequences, a dict of
      `image_sequence`, `text_sequence`, `padding_mask`;
    - `fuse(features)`: I' and T', a dict of `image_embedding`,
      `text_embedding`;
    - `classify(embeddings)`: the outputs.

    Outputs: a dict with `{task}_logits` `[B, classes]` (float32) and
    `{task}_image_weight` (λ, `[B]`) for every task.

    Args:
        clip_backbone: `keras_hub.models.CLIPBackbone`.
        tasks: dict of task name to number of classes, in order.
        variant: one of `VARIANTS`.
        fusion_num_layers, fusion_hidden_dim, fusion_num_heads,
        fusion_intermediate_dim, fusion_dropout: `SequenceWiseAttention`
            settings (defaults: the paper's ViT-B/32 setting 12/512/8).
        head_hidden_dim: int. Hidden width of each MLP head. Defaults to the
            fused embedding's width.
        head_dropout: float. Dropout in each head.
        init_from_clip_projections: bool. Start the fusion input projections
            from CLIP's projection matrices when shapes match (and, with
            `zero_shot_start`, every fusion block's residual branch at zero).
        zero_shot_start: bool. The architecture that can start where
            zero-shot CLIP stands (`start_from_zero_shot`): I' and T'
            L2-normalized before the modality attention (CLIP compares unit
            vectors), an RMS-normalized fusion output (LayerNorm's centring
            would turn the embeddings), a linear path in each MLP head and a
            bias in each modality attention. Departs from the paper; False
            builds the paper's model as written.

    Example:
    ```python
    clip = load_clip("tiny_clip").backbone
    model = CMACLIP(clip, {"color": 12, "pattern": 6}, fusion_num_layers=2,
                    fusion_hidden_dim=64, fusion_num_heads=4)
    outputs = model({"images": images, "token_ids": ids, "padding_mask": mask})
    outputs["color_logits"], outputs["color_image_weight"]
    ```
    """

    def __init__(
        self,
        clip_backbone,
        tasks,
        variant="full",
        fusion_num_layers=12,
        fusion_hidden_dim=512,
        fusion_num_heads=8,
        fusion_intermediate_dim=None,
        fusion_dropout=0.1,
        head_hidden_dim=None,
        head_dropout=0.1,
        init_from_clip_projections=True,
        zero_shot_start=False,
        **kwargs,
    ):
        if variant not in VARIANTS:
            raise ValueError(
                f"Unknown variant {variant!r}; expected one of {VARIANTS}."
            )
        if not tasks:
            raise ValueError("`tasks` must name at least one task.")
        super().__init__(**kwargs)

        # === Config ===
        self.tasks = {str(k): int(v) for k, v in dict(tasks).items()}
        self.variant = variant
        self.fusion_num_layers = fusion_num_layers
        self.fusion_hidden_dim = fusion_hidden_dim
        self.fusion_num_heads = fusion_num_heads
        self.fusion_intermediate_dim = fusion_intermediate_dim
        self.fusion_dropout = fusion_dropout
        self.head_dropout = head_dropout
        self.init_from_clip_projections = init_from_clip_projections
        self.zero_shot_start = bool(zero_shot_start)
        if variant in POOLED_VARIANTS:
            embedding_dim = clip_backbone.projection_dim
        else:
            embedding_dim = fusion_hidden_dim
        if variant == "clip_linear":
            head_hidden_dim = 0  # Linear heads.
        elif not head_hidden_dim:
            head_hidden_dim = embedding_dim
        self.head_hidden_dim = head_hidden_dim

        # === Layers ===
        self.clip_backbone = clip_backbone
        set_text_layer_norm_epsilon(clip_backbone.text_encoder)
        self.sequence_attention = None
        if variant not in POOLED_VARIANTS:
            self.sequence_attention = SequenceWiseAttention(
                num_layers=fusion_num_layers, hidden_dim=fusion_hidden_dim,
                num_heads=fusion_num_heads, intermediate_dim=fusion_intermediate_dim,
                dropout=fusion_dropout, dtype=self.dtype_policy,
                output_norm="rms" if self.zero_shot_start else "layer",
                name="sequence_attention",
            )
        fusion_cls = {
            "full": ModalityAttention,
            "clip_linear": ConcatenationFusion,
        }.get(variant, AverageFusion)
        fusion_options = {}
        if fusion_cls is ModalityAttention and self.zero_shot_start:
            fusion_options["use_bias"] = True
        self.modality_attentions = [
            fusion_cls(dtype=self.dtype_policy, name=f"{task}_modality_attention",
                       **fusion_options)
            for task in self.tasks
        ]
        self.heads = [
            MLPHead(
                num_classes,
                self.head_hidden_dim,
                dropout=head_dropout,
                linear_path=self.zero_shot_start,
                dtype=self.dtype_policy,
                name=f"{task}_head",
            )
            for task, num_classes in self.tasks.items()
        ]
        self._build_layers(embedding_dim)

    def _build_layers(self, embedding_dim):
        vision = self.clip_backbone.vision_encoder
        text = self.clip_backbone.text_encoder
        if self.sequence_attention is not None:
            self.sequence_attention.build(
                (None, None, vision.hidden_dim), (None, None, text.hidden_dim)
            )
            if self.init_from_clip_projections:
                self.sequence_attention.initialize_projections(
                    self.clip_backbone.vision_projection.kernel,
                    self.clip_backbone.text_projection.kernel,
                )
                if self.zero_shot_start:
                    self.sequence_attention.start_as_identity()
        head_input_dim = embedding_dim
        if self.variant == "clip_linear":
            head_input_dim = 2 * embedding_dim
        for fusion, head in zip(self.modality_attentions, self.heads):
            fusion.build((None, embedding_dim), (None, embedding_dim))
            head.build((None, head_input_dim))
        use_matmul_projections(self)  # The fusion's (CLIP's are already).
        self.built = True

    # --- The three steps of the forward pass. ---

    def encode(self, images, token_ids, padding_mask):
        """CLIP's sequence outputs: the features a frozen CLIP can cache."""
        return {
            "image_sequence": self.clip_backbone.vision_encoder(
                {"images": images}
            ),
            "text_sequence": self.clip_backbone.text_encoder(
                {"token_ids": token_ids}
            ),
            "padding_mask": padding_mask,
        }

    def fuse(self, features, training=None):
        """I' and T' from CLIP features (a frozen fusion's cacheable output)."""
        image_sequence = features["image_sequence"]
        text_sequence = features["text_sequence"]
        padding_mask = features["padding_mask"]
        if self.sequence_attention is not None:
            image_embedding, text_embedding = self.sequence_attention(
                image_sequence, text_sequence, padding_mask, training=training
            )
        else:
            image_embedding, text_embedding = self.pooled_embeddings(features)
        return {"image_embedding": image_embedding, "text_embedding": text_embedding}

    def pooled_embeddings(self, features):
        """CLIP's own `(image, text)` embeddings from CLIP features.

        CLIP's pooling (image [CLS], text end-of-text) and projections: the
        embeddings CLIP's contrastive loss compares, and I', T' of the
        pooled variants.
        """
        image = self.clip_backbone.vision_projection(
            features["image_sequence"][:, 0, :]
        )
        text = self.clip_backbone.text_projection(
            end_of_text_embedding(features["text_sequence"],
                                  features["padding_mask"])
        )
        return image, text

    def classify(self, embeddings, training=None):
        """Per-task logits and λ from I' and T'."""
        image, text = embeddings["image_embedding"], embeddings["text_embedding"]
        if self.zero_shot_start:
            image, text = l2_normalize(image), l2_normalize(text)
        outputs = {}
        for task, fusion, head in zip(
            self.tasks, self.modality_attentions, self.heads
        ):
            fused, image_weight = fusion(image, text)
            outputs[f"{task}_logits"] = head(fused, training=training)
            outputs[f"{task}_image_weight"] = ops.cast(image_weight, "float32")
        return outputs

    def call(self, inputs, training=None):
        """Raw inputs to outputs: `classify(fuse(encode(...)))`."""
        missing = [key for key in RAW_INPUTS if key not in inputs]
        if missing:
            raise ValueError(
                f"CMACLIP takes raw inputs {list(RAW_INPUTS)}; got {sorted(inputs)}. "
                "Pass CLIP features to `fuse` and I', T' to `classify`."
            )
        features = self.encode(
            inputs["images"], inputs["token_ids"], inputs["padding_mask"]
        )
        embeddings = self.fuse(features, training=training)
        return self.classify(embeddings, training=training)

    def attention_scores(self, inputs, layer_index=-1):
        """Attention probabilities `[B, heads, S, S]` of one fusion layer.

        The sequence is the image [CLS] and patches followed by the text tokens.
        """
        if self.sequence_attention is None:
            raise ValueError(
                f"The `{self.variant}` variant has no sequence attention."
            )
        features = self.encode(
            inputs["images"], inputs["token_ids"], inputs["padding_mask"]
        )
        _, _, scores = self.sequence_attention(
            features["image_sequence"],
            features["text_sequence"],
            features["padding_mask"],
            return_attention_scores=True,
            attention_layer_index=layer_index,
        )
        return scores

    def start_from_zero_shot(self, class_embeddings, logit_scale,
                             image_weights=None):
        """Starts the heads (and modality attentions) as zero-shot CLIP.

        Each head's linear path becomes `logit_scale · Eᵀ` (the scale kept
        apart, `MLPHead`), with `E` the task's L2-normalized class-prompt
        embeddings, so a task's logits are
        `s·(λ·cos(I, prompt) + (1 - λ)·cos(T, prompt))`: image zero-shot at
        λ = 1, the title against the prompts at λ = 0. The full model's
        λ starts at `image_weights[task]` (its modality attention's bias);
        the averaging ablations stay at 0.5; CLIP + linear heads weighs its
        two halves by the same λ. Call it on a freshly built model whose
        fusion is the identity (`zero_shot_start=True`).

        Args:
            class_embeddings: `{task: [classes, projection_dim]}` normalized
                prompt embeddings; a task that is absent or None keeps its
                random start.
            logit_scale: float (CLIP's `exp(logit_scale)`), or `{task:
                float}`, e.g. each task's calibrated scale.
            image_weights: optional `{task: λ in (0, 1)}`; default 0.5.

        Returns:
            The tasks that were started from zero-shot.
        """
        if not self.zero_shot_start:
            raise ValueError("start_from_zero_shot needs zero_shot_start=True.")
        started = []
        for task, fusion, head in zip(self.tasks, self.modality_attentions,
                                      self.heads):
            embeddings = (class_embeddings or {}).get(task)
            if embeddings is None:
                continue
            kernel = ops.transpose(
                l2_normalize(ops.convert_to_tensor(embeddings, "float32")))
            weight = (image_weights or {}).get(task, 0.5)
            if isinstance(fusion, ConcatenationFusion):
                kernel = ops.concatenate([weight * kernel, (1 - weight) * kernel], 0)
            elif isinstance(fusion, ModalityAttention) and weight != 0.5:
                fusion.set_image_weight(weight)
            scale = (logit_scale.get(task) if isinstance(logit_scale, dict)
                     else logit_scale)
            head.initialize_zero_shot(kernel, scale)
            started.append(task)
        return started

    def module_groups(self):
        """Trainable variables by module group, for stage schedules.

        Groups: `clip` (the encoders, and the projections where the variant
        uses them), `fusion` (sequence-wise attention), `modality_attention`
        (one per task), `heads`. CLIP weights the variant never uses are in
        no group, so no stage trains them.
        """
        backbone = self.clip_backbone
        clip_layers = [backbone.vision_encoder, backbone.text_encoder]
        if self.sequence_attention is None:
            # Only the pooled variants use CLIP's projections. CLIP's
            # contrastive temperature (`clip_head`) is never used.
            clip_layers += [backbone.vision_projection, backbone.text_projection]
        groups = {
            "clip": [v for layer in clip_layers for v in layer.trainable_variables],
            "fusion": (
                list(self.sequence_attention.trainable_variables)
                if self.sequence_attention is not None
                else []
            ),
            "modality_attention": [
                v for layer in self.modality_attentions
                for v in layer.trainable_variables
            ],
            "heads": [
                v for layer in self.heads for v in layer.trainable_variables
            ],
        }
        return groups

    def task_variables(self):
        """`{task: variables}` that belong to one task alone: its modality
        attention's and its head's (trainable or not). A stage that trains
        only these trains each task independently of the others."""
        return {
            task: [*fusion.variables, *head.variables]
            for task, fusion, head in zip(self.tasks, self.modality_attentions,
                                          self.heads)
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "clip_backbone": keras.layers.serialize(self.clip_backbone),
                "tasks": dict(self.tasks),
                "variant": self.variant,
                "fusion_num_layers": self.fusion_num_layers,
                "fusion_hidden_dim": self.fusion_hidden_dim,
                "fusion_num_heads": self.fusion_num_heads,
                "fusion_intermediate_dim": self.fusion_intermediate_dim,
                "fusion_dropout": self.fusion_dropout,
                "head_hidden_dim": self.head_hidden_dim,
                "head_dropout": self.head_dropout,
                "init_from_clip_projections": self.init_from_clip_projections,
                "zero_shot_start": self.zero_shot_start,
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = deserialize_clip_backbone(config, custom_objects)
        # Weights come from the checkpoint; no need to copy projections.
        config["init_from_clip_projections"] = False
        return cls(**config)
