"""Test-time perturbations: attribute words out of titles, the correct ones in,
noise images; and the noise-robustness evaluation of a run."""

import io
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cmaclip_tf.datasets import SyntheticProducts
from cmaclip_tf.datasets import SyntheticProductsConfig
from cmaclip_tf.datasets.raw_examples import ENCODED_IMAGE_SPEC
from cmaclip_tf.datasets.raw_examples import PIXELS_IMAGE_SPEC
from cmaclip_tf.datasets.raw_examples import raw_split_from_generator
from cmaclip_tf.datasets.synthetic.title_perturbations import TitlePerturbation
from cmaclip_tf.datasets.synthetic.title_perturbations import attribute_words
from cmaclip_tf.datasets.synthetic.title_perturbations import noise_image
from cmaclip_tf.datasets.synthetic.title_perturbations import perturb_split
from cmaclip_tf.datasets.synthetic.vocabulary import COLOR_WORDS
from cmaclip_tf.datasets.synthetic.vocabulary import PATTERN_WORDS
from cmaclip_tf.datasets.synthetic.vocabulary import STYLE_WORDS
from cmaclip_tf.datasets.synthetic.vocabulary import class_names

WORDS = {"color": COLOR_WORDS, "pattern": PATTERN_WORDS, "style": STYLE_WORDS}


@pytest.fixture(scope="module")
def synthetic():
    return TitlePerturbation(attribute_words(class_names(), "synthetic"))


def named_values(title, task):
    """Values of `task` whose words appear in `title` as whole words."""
    return {
        value
        for value, words in WORDS[task].items()
        if any(
            re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", title.lower())
            for w in words
        )
    }


@pytest.mark.parametrize(
    "title, expected",
    [
        ("Acme Red Striped Tee", "Acme"),
        ("Maple green outfit with plaid, XL", "Maple outfit, XL"),
        ("Vela Womens Item - Gray", "Vela Womens Item"),
        ("Cedar classic item in navy, Size 12 2-pack", "Cedar classic item, Size 12 2-pack"),
        ("NORDWIND CHECKERED SHORTS IN NAVY", "NORDWIND"),
        ("Acme Polka Dot A-Line Dress, Size M", "Acme, Size M"),
        ("Orchid Sheath Dress With Flower Print", "Orchid"),
        ("Red T-Shirt, L", "L"),
        # Whole words only: no attribute word hides in these.
        ("Redwood Bluebell Checkers Teepee Item", "Redwood Bluebell Checkers Teepee Item"),
        ("Striped", ""),
    ],
)
def test_remove_attribute_words(synthetic, title, expected):
    assert synthetic.remove(title) == expected


def test_correct_words_replace_wrong_mentions(synthetic):
    values = {"color": "red", "pattern": "plain", "style": "sheath"}
    # The title names a wrong color (blue) and style (tee).
    assert synthetic.correct("Acme Blue Tee, M", values) == "red plain sheath dress Acme, M"
    assert synthetic.correct("Maple green outfit with plaid, XL", {
        "color": "green", "pattern": "checked", "style": "sweater",
    }) == "green checked sweater Maple outfit, XL"
    # A task without a label adds nothing.
    assert synthetic.add("Acme", {"color": None, "pattern": "camo"}) == "camo Acme"
    assert synthetic.add("", {"color": "grey"}) == "grey"


def test_names_task(synthetic):
    title = "Acme Polka Dot Item, Gray"
    assert synthetic.names_task(title, "color")
    assert synthetic.names_task(title, "pattern")
    assert not synthetic.names_task(title, "style")
    assert not synthetic.names_task("Redwood Teepee", "color")


def test_class_names_of_any_dataset_are_words():
    words = attribute_words({"label": ["apple_pie", "ramen"]}, "food101")
    assert words == {"label": {"apple_pie": ["apple_pie", "apple pie"],
                               "ramen": ["ramen"]}}
    perturbation = TitlePerturbation(words)
    assert perturbation.remove("Best Apple Pie recipe with ramen") == "Best recipe"
    assert perturbation.add("Best recipe", {"label": "apple_pie"}) == "apple_pie Best recipe"


def test_synthetic_words_include_generator_synonyms():
    words = attribute_words(class_names(), "synthetic")
    assert words["color"]["grey"] == ["grey", "gray"]
    assert words["style"]["sheath"] == ["sheath dress", "bodycon dress", "sheath"]
    assert words["pattern"]["dotted"][:3] == ["dotted", "polka dot", "dots"]


def test_generated_titles_lose_every_mention_and_get_the_true_ones(synthetic):
    products = SyntheticProducts(SyntheticProductsConfig(seed=3))
    mentioned = 0
    for index in range(400):
        example = products.example("test", index, draw=False)
        removed = synthetic.remove(example.title)
        corrected = synthetic.correct(example.title, example.attributes)
        for task in WORDS:
            mentioned += example.mentions[task] is not None
            assert named_values(removed, task) == set(), (example.title, removed)
            assert named_values(corrected, task) == {example.attributes[task]}, (
                example.title, corrected)
    assert mentioned > 300  # The titles did name attributes to remove.


def raw_examples(image_spec):
    pixels = np.full((8, 8, 3), 200, np.uint8)
    png = tf.io.encode_png(pixels).numpy()
    examples = [
        ("Acme Red Striped Tee", {"color": 1, "pattern": 1}),
        ("Maple item with plaid", {"color": 0, "pattern": -1}),
    ]

    def generate():
        for i, (title, labels) in enumerate(examples):
            yield {
                "image": pixels if image_spec == PIXELS_IMAGE_SPEC else png,
                "text": title.encode(),
                "labels": {t: np.int32(v) for t, v in labels.items()},
                "id": f"hand/{i}".encode(),
            }

    return raw_split_from_generator(generate, ["color", "pattern"], image_spec)


NAMES = {"color": ["blue", "red"], "pattern": ["plain", "striped"]}


def test_perturb_split_titles():
    words = attribute_words(NAMES)
    raw = raw_examples(PIXELS_IMAGE_SPEC)
    removed = list(perturb_split(raw, "no_attribute_words", NAMES, words).as_numpy_iterator())
    # "plaid" is no class of these tasks, so it stays.
    assert [e["text"] for e in removed] == [b"Acme Tee", b"Maple item with plaid"]
    correct = list(perturb_split(raw, "correct_attribute_words", NAMES, words).as_numpy_iterator())
    assert [e["text"] for e in correct] == [b"red striped Acme Tee",
                                            b"blue Maple item with plaid"]
    for example in removed + correct:
        assert (example["image"] == 200).all()  # Images untouched.
    assert correct[1]["labels"]["pattern"] == -1


def test_noise_images_are_uniform_and_seeded():
    words = attribute_words(NAMES)
    raw = raw_examples(PIXELS_IMAGE_SPEC)
    first = list(perturb_split(raw, "noise_image", NAMES, words, seed=5).as_numpy_iterator())
    again = list(perturb_split(raw, "noise_image", NAMES, words, seed=5).as_numpy_iterator())
    other = list(perturb_split(raw, "noise_image", NAMES, words, seed=6).as_numpy_iterator())
    assert first[0]["text"] == b"Acme Red Striped Tee"  # Titles untouched.
    assert first[0]["image"].shape == (8, 8, 3) and first[0]["image"].dtype == np.uint8
    np.testing.assert_array_equal(first[0]["image"], again[0]["image"])
    assert not np.array_equal(first[0]["image"], first[1]["image"])
    assert not np.array_equal(first[0]["image"], other[0]["image"])
    big = noise_image((256, 256, 3), 0)
    # Uniform on 0..255: mean 127.5, standard deviation 73.9.
    assert abs(big.mean() - 127.5) < 1.5 and abs(big.std() - 73.9) < 1.5


def test_noise_images_of_encoded_datasets_are_pngs():
    raw = raw_examples(ENCODED_IMAGE_SPEC)
    noisy = perturb_split(raw, "noise_image", NAMES, attribute_words(NAMES))
    noisy = list(noisy.as_numpy_iterator())
    image = np.asarray(Image.open(io.BytesIO(noisy[0]["image"])))
    assert image.shape == (256, 256, 3) and image.std() > 50


def test_unknown_condition_is_refused():
    with pytest.raises(ValueError, match="noise_image"):
        perturb_split(raw_examples(PIXELS_IMAGE_SPEC), "blurred", NAMES, {})


@pytest.mark.large
def test_evaluate_noise_robustness_of_a_saved_model(tmp_path):
    from cmaclip_tf.datasets import LabelVocabularies
    from cmaclip_tf.inference.inference_bundle import save_inference_bundle
    from cmaclip_tf.models import create_cma_clip
    from trainers.suites.noise_robustness import evaluate_noise_robustness
    from trainers.suites.noise_robustness import main

    names = class_names()
    model, clip, config = create_cma_clip("tiny", {t: len(v) for t, v in names.items()})
    rng = np.random.default_rng(0)
    for layer in model.modality_attentions:  # λ = 0.5 until w moves from zero.
        layer.kernel.assign(rng.normal(0, 1, layer.kernel.shape))
    save_inference_bundle(
        str(tmp_path / "inference"), model, clip.tokenizer, clip.image_converter,
        names, config["sequence_length"],
    )
    LabelVocabularies(names).save(str(tmp_path))
    results = evaluate_noise_robustness(
        str(tmp_path), {"name": "synthetic", "seed": 0, "num_examples": 40},
        batch_size=4)
    assert list(results) == ["as_is", "no_attribute_words",
                             "correct_attribute_words", "noise_image"]
    for condition in results.values():
        assert set(condition) == set(names)
        assert all(m["count"] == 6 for m in condition.values())  # ceil(0.15 * 40).
    # λ follows the inputs: a noise image moves it.
    as_is = results["as_is"]["color"]["image_weight_mean"]
    assert results["noise_image"]["color"]["image_weight_mean"] != pytest.approx(as_is)
    # Titles without attribute words name no task; the correct ones name all.
    assert results["no_attribute_words"]["style"]["named_share"] == 0.0
    assert "image_weight_mean_named" not in results["no_attribute_words"]["style"]
    assert results["correct_attribute_words"]["style"]["named_share"] == 1.0
    named = results["as_is"]["color"]
    share = named["named_share"]
    if 0 < share < 1:  # λ's mean is the groups' means weighted by their sizes.
        assert named["image_weight_mean"] == pytest.approx(
            share * named["image_weight_mean_named"]
            + (1 - share) * named["image_weight_mean_unnamed"], rel=1e-5)
    assert main(["--workdir", str(tmp_path), "--num-examples", "40"]) == 0
    assert (tmp_path / "noise_robustness.json").is_file()
