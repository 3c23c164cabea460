"""Attention maps of text tokens over image patches (the paper's Figure 2):
the map against a hand computation, token positions, the rendered PNG, the
visualize CLI and the TensorBoard hook."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cmaclip_tf.datasets import SyntheticProducts
from cmaclip_tf.datasets import SyntheticProductsConfig
from cmaclip_tf.inference.attention_map import MARGIN
from cmaclip_tf.inference.attention_map import TEXT_HEIGHT
from cmaclip_tf.inference.attention_map import attention_map_figures
from cmaclip_tf.inference.attention_map import denormalize_images
from cmaclip_tf.inference.attention_map import heat_colors
from cmaclip_tf.inference.attention_map import most_attended_token
from cmaclip_tf.inference.attention_map import render_attention_map
from cmaclip_tf.inference.attention_map import token_attention_maps
from cmaclip_tf.inference.attention_map import word_token_positions
from cmaclip_tf.preprocessing import ImagePreprocessor
from cmaclip_tf.preprocessing import TextPreprocessor

TASKS = {"color": 14, "pattern": 7, "style": 8}
TITLES = ["Acme Red Striped Tee", "Maple Polka Dot Women's Shorts, XL"]


@pytest.fixture(scope="module")
def tiny():
    """A tiny CMA-CLIP, its preprocessors, and two generated examples."""
    import keras

    from cmaclip_tf.models import create_cma_clip

    keras.utils.set_random_seed(0)
    model, clip, config = create_cma_clip("tiny", TASKS)
    text = TextPreprocessor.from_tokenizer(clip.tokenizer, config["sequence_length"])
    images = ImagePreprocessor.from_image_converter(clip.image_converter)
    products = SyntheticProducts(SyntheticProductsConfig(seed=0))
    pixels = [products.example("test", i).image for i in range(2)]
    tokens = text(tf.constant(TITLES))
    inputs = {
        "images": tf.stack([images.preprocess_pixels(p) for p in pixels]),
        "token_ids": tokens["token_ids"],
        "padding_mask": tokens["padding_mask"],
    }
    return model, clip, config, text, images, pixels, inputs


def test_map_is_the_mean_over_heads_of_token_to_patch_attention(tiny):
    model, _, _, text, _, _, inputs = tiny
    positions = [[2], [2, 3]]
    maps = token_attention_maps(model, inputs, positions)
    # 64x64 images in 16x16 patches: a 4x4 grid after the [CLS] token.
    assert maps.shape == (2, 4, 4)
    scores = np.asarray(model.attention_scores(inputs, -1))
    assert scores.shape == (2, 4, 17 + 32, 17 + 32)
    for row, tokens in enumerate(positions):
        per_token = []
        for position in tokens:
            patches = scores[row, :, 17 + position, 1:17].mean(0)
            per_token.append(patches / patches.sum())
        np.testing.assert_allclose(
            maps[row], np.mean(per_token, 0).reshape(4, 4), rtol=1e-5, atol=1e-7
        )
        assert maps[row].sum() == pytest.approx(1.0, abs=1e-5)
        assert maps[row].min() >= 0
    # The first layer's map is another map.
    first = token_attention_maps(model, inputs, positions, layer_index=0)
    assert not np.allclose(first, maps)


def test_word_token_positions(tiny):
    text = tiny[3]
    title = TITLES[1]
    ids = text(tf.constant([title]))["token_ids"].numpy()[0]
    for word in ("polka dot", "Women's", "shorts", "XL"):
        positions = word_token_positions(text, title, word)
        expected = text.tokenize([word]).to_list()[0]
        assert ids[positions].tolist() == expected, word
    # "Maple" is the first word: right after the start token.
    assert word_token_positions(text, title, "maple")[0] == 1
    # Without a word: every text token.
    count = len(text.tokenize(["Red Tee"]).to_list()[0])
    assert word_token_positions(text, "Red Tee") == list(range(1, count + 1))
    with pytest.raises(ValueError, match="not a word of the text"):
        word_token_positions(text, title, "striped")


class _FixedAttention:
    """A stand-in model whose attention probabilities are given."""

    def __init__(self, scores):
        self.scores = scores

    def attention_scores(self, inputs, layer_index=-1):
        return self.scores


def _scores_with_patch_mass(token_ids, num_patches, mass_per_position):
    """`[1, heads, S, S]` probabilities where text query `i` puts
    `mass_per_position[i]` on the patches (head-averaged) and the rest on
    the image [CLS]; the second head puts all on the patches."""
    num_image = num_patches + 1
    length = num_image + len(token_ids)
    scores = np.zeros((1, 2, length, length), np.float32)
    for position, mass in enumerate(mass_per_position):
        query = num_image + position
        head_0 = 2 * mass - 1  # Mean over the 2 heads is `mass`.
        scores[0, 0, query, 1:num_image] = head_0 / num_patches
        scores[0, 0, query, 0] = 1 - head_0
        scores[0, 1, query, 1:num_image] = 1 / num_patches
    return scores


@pytest.mark.parametrize("chosen", ["Red", "Tee"])
def test_most_attended_token_is_the_word_with_most_patch_attention(tiny, chosen):
    _, _, _, text, _, _, inputs = tiny
    single = {k: v[:1] for k, v in inputs.items()}
    token_ids = np.asarray(single["token_ids"])[0]
    # Every query puts 60% on the patches; the chosen word's tokens 90%.
    mass = np.full(len(token_ids), 0.6)
    chosen_positions = word_token_positions(text, TITLES[0], chosen)
    mass[chosen_positions] = 0.9
    # Padding queries (never a word's) attending most must not matter.
    mass[int(np.asarray(single["padding_mask"])[0].sum()):] = 1.0
    model = _FixedAttention(_scores_with_patch_mass(token_ids, 16, mass))
    word, positions = most_attended_token(model, single, text, TITLES[0])
    assert word == chosen
    assert positions == chosen_positions


def test_heat_colors_run_from_dark_blue_to_red():
    values = np.linspace(0.0, 1.0, 101)
    colors = heat_colors(values).astype(int)
    assert heat_colors(values).dtype == np.uint8
    red, blue = colors[:, 0], colors[:, 2]
    # Low values are blue (no red), high values red (no blue).
    assert blue[0] > 0 and red[0] == 0 and colors[0, 1] == 0
    assert red[-1] > 0 and blue[-1] == 0 and colors[-1, 1] == 0
    # The hue moves one way: red never falls before its peak, blue never
    # rises after its peak, and the red peak comes after the blue one.
    assert np.all(np.diff(red[: red.argmax() + 1]) >= 0)
    assert np.all(np.diff(blue[blue.argmax():]) <= 0)
    assert red.argmax() > blue.argmax()
    # Out-of-range values clip to the ends; the map is continuous: a 1% step
    # moves no channel by more than a tenth of its range.
    np.testing.assert_array_equal(heat_colors([-1.0, 2.0]), heat_colors([0.0, 1.0]))
    assert np.abs(np.diff(colors, axis=0)).max() <= 0.1 * 255


def test_rendered_png_has_its_size_and_a_heat_map_that_is_not_constant(tiny):
    model, _, _, text, images, pixels, inputs = tiny
    positions = word_token_positions(text, TITLES[0], "red")
    attention = token_attention_maps(model, inputs, [positions, [1]])[0]
    assert attention.std() > 0
    figure = render_attention_map(pixels[0], attention, TITLES[0], "red",
                                  caption="layer 2/2", size=96)
    buffer = io.BytesIO()
    figure.save(buffer, format="PNG")
    png = Image.open(io.BytesIO(buffer.getvalue()))
    assert png.format == "PNG"
    assert png.size == (2 * 96 + 3 * MARGIN, 96 + 2 * MARGIN + TEXT_HEIGHT)
    panels = np.asarray(png.convert("RGB"), np.float32)
    left = panels[MARGIN : MARGIN + 96, MARGIN : MARGIN + 96]
    right = panels[MARGIN : MARGIN + 96, 2 * MARGIN + 96 : 2 * MARGIN + 192]
    # The overlay differs from the image, and by different amounts across
    # patches: the heat map is not constant.
    difference = np.abs(right - left).mean(-1)
    per_patch = difference.reshape(4, 24, 4, 24).mean((1, 3))
    assert per_patch.std() > 1.0
    # The text line has red (the marked word) and black ink.
    text_area = panels[96 + 2 * MARGIN :]
    assert ((text_area[..., 0] > 150) & (text_area[..., 1] < 60)).any()
    assert (text_area.sum(-1) < 100).any()


def test_figures_for_tensorboard(tiny):
    model, _, _, text, images, pixels, inputs = tiny
    figures = attention_map_figures(model, inputs, TITLES, text, images.mean,
                                    images.std, words=[None, "shorts"], size=64)
    assert figures.shape == (2, 64 + 2 * MARGIN + TEXT_HEIGHT, 2 * 64 + 3 * MARGIN, 3)
    assert figures.dtype == np.float32
    assert 0.0 <= figures.min() and figures.max() <= 1.0
    # The images shown are the model's input, denormalized.
    shown = denormalize_images(inputs["images"], images.mean, images.std)
    assert np.abs(shown.astype(int) - np.asarray(pixels).astype(int)).max() <= 1


def test_visualize_cli_and_tensorboard_hook(tiny, tmp_path):
    from cmaclip_tf.datasets import load_dataset
    from cmaclip_tf.inference.inference_bundle import save_inference_bundle
    from trainers.training.input_data import RunData
    from trainers.training.run_logger import RunLogger
    from trainers.visualize import main

    model, clip, config, _, _, pixels, _ = tiny
    save_inference_bundle(str(tmp_path / "inference"), model, clip.tokenizer,
                          clip.image_converter,
                          {t: [f"{t}{i}" for i in range(n)] for t, n in TASKS.items()},
                          config["sequence_length"])
    Image.fromarray(pixels[0]).save(tmp_path / "product.png")
    output = tmp_path / "map.png"
    assert main(["--workdir", str(tmp_path), "--image", str(tmp_path / "product.png"),
                 "--text", TITLES[0], "--token", "Striped", "--output", str(output)]) == 0
    png = Image.open(output)
    assert png.format == "PNG" and png.size == (2 * 224 + 3 * MARGIN,
                                               224 + 2 * MARGIN + TEXT_HEIGHT)

    data = RunData(load_dataset("synthetic", num_examples=20))
    data.prepare(clip, config)
    logger = RunLogger(str(tmp_path / "run"))
    logger.attention_maps("warmup", 7, model, data, num_examples=2)
    events = list((tmp_path / "run" / "tensorboard" / "warmup" / "validation").glob("events*"))
    assert events
    images = [
        value
        for event in tf.compat.v1.train.summary_iterator(str(events[0]))
        for value in event.summary.value
    ]
    assert [v.tag for v in images] == ["attention_maps"]
