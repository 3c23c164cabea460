"""The models by name: CMA-CLIP, its ablations and the baselines.

Kept free of TensorFlow imports, so command lines can list them cheaply.
"""

# What `CMACLIP` builds: the full model, the paper's ablations "w/o MA" and
# "w/o MA+SA", and CLIP's pooled embeddings into linear heads ("CLIP +
# linear heads").
VARIANTS = ("full", "no_ma", "no_ma_sa", "clip_linear")
# Variants on CLIP's pooled, projected embeddings (no fusion transformer).
POOLED_VARIANTS = ("no_ma_sa", "clip_linear")
# Baselines that are not a `CMACLIP`: CLIP with class prompts, as is or
# after contrastive fine-tuning on the training split's image-title pairs.
BASELINES = ("zero_shot", "finetuned_clip")
ALL_VARIANTS = VARIANTS + BASELINES
