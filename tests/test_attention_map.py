"""Attention maps of text tokens over image patches (the paper's Figure 2):
the map against a hand computation, token positions, the rendered PNG, the
visualize CLI and the TensorBoard hook."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cmaclip_tf.attention_map import MARGIN
from cmaclip_tf.attention_map import TEXT_HEIGHT
from cmaclip_tf.attention_map import attention_map_figures
from cmaclip_tf.attention_map import denormalize_images
from cmaclip_tf.attention_map import heat_colors
from cmaclip_tf.attention_map import most_attended_token
from cmaclip_tf.attention_map import render_attention_map
from cmaclip_tf.attention_map import token_attention_maps
from cmaclip_tf.attention_map import word_token_positions
from cmaclip_tf.datasets import SyntheticProducts
from cmaclip_tf.datasets import SyntheticProductsConfig
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


def test_most_attended_token_is_a_word_of_the_title(tiny):
    model, _, _, text, _, _, inputs = tiny
    single = {k: v[:1] for k, v in inputs.items()}
    word, positions = most_attended_token(model, single, text, TITLES[0])
    assert word in TITLES[0].split()
    assert positions == word_token_positions(text, TITLES[0], word)


def test_heat_colors_run_from_blue_to_red():
    colors = heat_colors([0.0, 0.5, 1.0])
    assert colors[0].tolist() == [0, 0, 128]
    assert colors[-1].tolist() == [160, 0, 0]
    assert colors.dtype == np.uint8


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
    from cmaclip_tf.inference_bundle import save_inference_bundle
    from trainers.input_data import RunData
    from trainers.run_logger import RunLogger
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
