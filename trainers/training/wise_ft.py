"""WiSE-FT (Wortsman et al. 2022): CLIP's weights interpolated between the
stage's start and its fine-tuned best, `θ = (1 - α) θ_0 + α θ_ft`, with α
picked on validation.

Only the CLIP group is interpolated; the fusion, modality attention and
heads keep their fine-tuned weights. WiSE-FT interpolates the image
encoder and keeps one head, the zero-shot one, because it needs no
training; here the heads (and the fusion) of the start are the warm-up's,
trained on CLIP's features at θ_0, and the fine-tuned ones were trained
with CLIP moving towards θ_ft: neither fits an interpolated CLIP better,
but only the fine-tuned fusion has seen the task end to end, and
interpolating new modules that started from random weights has none of
the linear connectivity that makes a pretrained body's interpolation work.
At α = 1 the model is the fine-tuned one, so WiSE-FT can only pick
something that scores at least as well on validation.
"""

import numpy as np

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
START_WEIGHTS_FILE = "wise_ft_start.weights.h5"


def wise_ft_alphas(setting):
    """The α grid of a recipe's `wise_ft`: `true` for `DEFAULT_ALPHAS`, a
    list of numbers in [0, 1], or `false`/`null` (an empty tuple)."""
    if setting is True:
        return DEFAULT_ALPHAS
    if not setting:
        return ()
    return tuple(sorted(float(alpha) for alpha in setting))


def clip_weights(model):
    """The float weights of `model`'s CLIP backbone (not its random-seed
    states): what WiSE-FT interpolates."""
    return [
        v for v in model.clip_backbone.weights
        if "float" in str(v.dtype) and not v.path.endswith("seed_generator_state")
    ]


def interpolate(variables, start, fine_tuned, alpha):
    """Sets `variables` to `(1 - alpha) start + alpha fine_tuned`."""
    for variable, zero, tuned in zip(variables, start, fine_tuned):
        variable.assign(((1.0 - alpha) * zero + alpha * tuned).astype(zero.dtype))


def choose_alpha(model, start_path, fine_tuned_path, alphas, score):
    """Scores every α and leaves `model` at the best one.

    Args:
        model: the `CMACLIP` (any LoRA merged: its weights files hold
            merged kernels and load with the factors at zero).
        start_path: weights file of the stage's start (θ_0).
        fine_tuned_path: weights file of the fine-tuned best (θ_ft); the
            model keeps its non-CLIP weights.
        alphas: the grid, e.g. `DEFAULT_ALPHAS`.
        score: `fn() -> float`, the validation score of the model as it is.

    Returns:
        `(alpha, {alpha: score})`; ties go to the larger α (nearer the
        fine-tuned model the stage selected).

    Example:
    ```python
    alpha, scores = choose_alpha(model, "end2end/wise_ft_start.weights.h5",
                                 "end2end/best.weights.h5", DEFAULT_ALPHAS,
                                 lambda: validation_score(model))
    ```
    """
    variables = clip_weights(model)
    model.load_weights(start_path)
    start = [np.array(v.numpy()) for v in variables]
    model.load_weights(fine_tuned_path)
    fine_tuned = [np.array(v.numpy()) for v in variables]
    scores = {}
    for alpha in alphas:
        interpolate(variables, start, fine_tuned, alpha)
        scores[float(alpha)] = float(score())
    best = max(scores, key=lambda a: (scores[a], a))
    interpolate(variables, start, fine_tuned, best)
    return best, scores
