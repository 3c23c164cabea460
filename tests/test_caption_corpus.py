"""The generated image-caption corpus: determinism, captions that say what
is drawn, no benchmark vocabulary, no benchmark image, streaming and writing."""

import csv
import os
import re

import numpy as np
import pytest
from PIL import Image

from cmaclip_tf.datasets.synthetic.caption_corpus import COLOR_PHRASES
from cmaclip_tf.datasets.synthetic.caption_corpus import CORPUS_SPLIT_CODES
from cmaclip_tf.datasets.synthetic.caption_corpus import PATTERN_ADJECTIVES
from cmaclip_tf.datasets.synthetic.caption_corpus import PATTERN_WITH_PHRASES
from cmaclip_tf.datasets.synthetic.caption_corpus import SHAPE_NOUNS
from cmaclip_tf.datasets.synthetic.caption_corpus import STYLE_NOUNS
from cmaclip_tf.datasets.synthetic.caption_corpus import CaptionCorpus
from cmaclip_tf.datasets.synthetic.caption_corpus import CaptionCorpusConfig
from cmaclip_tf.datasets.synthetic.products import SPLIT_CODES
from cmaclip_tf.datasets.synthetic.products import SyntheticProducts
from cmaclip_tf.datasets.synthetic.products import SyntheticProductsConfig
from cmaclip_tf.datasets.synthetic.vocabulary import AUDIENCES
from cmaclip_tf.datasets.synthetic.vocabulary import BRANDS
from cmaclip_tf.datasets.synthetic.vocabulary import COLORS
from cmaclip_tf.datasets.synthetic.vocabulary import FILLERS
from cmaclip_tf.datasets.synthetic.vocabulary import GENERIC_NOUNS
from cmaclip_tf.datasets.synthetic.vocabulary import SIZES

NUM_CAPTIONS = 2000
PHRASES = {
    "color": COLOR_PHRASES,
    "pattern": {
        value: PATTERN_ADJECTIVES[value] + PATTERN_WITH_PHRASES[value]
        for value in PATTERN_ADJECTIVES
    },
    "style": STYLE_NOUNS,
    "shape": SHAPE_NOUNS,
}


def named_values(caption, attribute):
    """Values of `attribute` whose phrases appear in `caption` as whole words."""
    # Padded and split on word edges, so "shorts" is not in "short-sleeved".
    words = f" {' '.join(re.findall(r'[a-z][a-z-]*', caption))} "
    return {value for value, phrases in PHRASES[attribute].items()
            if any(f" {p} " in words for p in phrases)}


@pytest.fixture(scope="module")
def captions():
    corpus = CaptionCorpus(CaptionCorpusConfig(seed=0))
    return [corpus.example("train", i, draw=False) for i in range(NUM_CAPTIONS)]


def test_captions_name_exactly_the_drawn_values(captions):
    for example in captions:
        for attribute in example.attributes:
            expected = (
                {example.attributes[attribute]}
                if attribute in example.mentions
                else set()
            )
            assert named_values(example.caption, attribute) == expected, (
                attribute, example.caption, example.attributes,
            )


def test_captions_vary_and_mostly_use_class_names(captions):
    garments = [e for e in captions if "style" in e.attributes]
    shapes = [e for e in captions if "shape" in e.attributes]
    assert 0.15 < len(shapes) / len(captions) < 0.25  # shape_rate 0.2
    # Each attribute is sometimes left out, and colors are mostly named.
    for attribute, low, high in (("color", 0.8, 0.95), ("pattern", 0.5, 0.7),
                                 ("style", 0.6, 0.8)):
        rate = np.mean([attribute in e.mentions for e in garments])
        assert low < rate < high, (attribute, rate)
    # Class names (what zero-shot prompts say) outnumber synonyms.
    color_words = [w for e in captions for w in re.findall(r"[a-z]+", e.caption)
                   if w in {p for ps in COLOR_PHRASES.values() for p in ps}]
    assert np.mean([w in COLORS for w in color_words]) > 0.7
    assert len({e.caption for e in captions}) > 0.5 * len(captions)
    for pattern in ("a red", "with stripes", " in ", ", "):
        assert any(pattern in e.caption for e in captions), pattern


def test_no_benchmark_title_words(captions):
    forbidden = {w.lower() for w in BRANDS + AUDIENCES + FILLERS + GENERIC_NOUNS + SIZES}
    for example in captions:
        words = set(re.findall(r"[a-z0-9'-]+", example.caption.lower()))
        assert not words & forbidden, example.caption


def test_deterministic_by_seed_and_index():
    first = CaptionCorpus(CaptionCorpusConfig(seed=3))
    second = CaptionCorpus(CaptionCorpusConfig(seed=3))
    later = [second.example("validation", i) for i in (5, 2)]
    for example, index in zip(later, (5, 2)):
        again = first.example("validation", index)
        assert again.caption == example.caption
        np.testing.assert_array_equal(again.image, example.image)
    other = CaptionCorpus(CaptionCorpusConfig(seed=4))
    assert [other.example("validation", i).caption for i in range(10)] != [
        first.example("validation", i).caption for i in range(10)
    ]
    with pytest.raises(ValueError, match="train"):
        first.example("test", 0)


def test_no_benchmark_image_in_the_corpus():
    assert not set(CORPUS_SPLIT_CODES.values()) & set(SPLIT_CODES.values())
    benchmark = SyntheticProducts(SyntheticProductsConfig(seed=0))
    test_images = {benchmark.example("test", i).image.tobytes() for i in range(60)}
    corpus = CaptionCorpus(CaptionCorpusConfig(seed=0))
    for split in CORPUS_SPLIT_CODES:
        for i in range(60):
            assert corpus.example(split, i).image.tobytes() not in test_images


def test_shapes_are_drawn_in_their_color():
    corpus = CaptionCorpus(CaptionCorpusConfig(seed=0, shape_rate=1.0))
    for i in range(20):
        example = corpus.example("train", i)
        # The shape covers the center; its fill is the color +-12 per channel.
        center = example.image[30:34, 30:34].reshape(-1, 3).astype(float)
        assert np.abs(center.mean(0) - COLORS[example.attributes["color"]]).max() <= 13


def test_raw_split_streams_pixels_and_captions():
    corpus = CaptionCorpus(CaptionCorpusConfig(seed=1, image_size=32))
    examples = list(corpus.raw_split("train", 3).as_numpy_iterator())
    assert [e["text"].decode() for e in examples] == [
        corpus.example("train", i).caption for i in range(3)
    ]
    assert examples[1]["labels"] == {}
    assert examples[2]["id"] == b"caption_corpus/train/2"
    np.testing.assert_array_equal(examples[0]["image"], corpus.example("train", 0).image)
    assert examples[0]["image"].shape == (32, 32, 3)


def test_write_images_and_image_text_manifests(tmp_path):
    corpus = CaptionCorpus(CaptionCorpusConfig(seed=2, image_size=32))
    manifests = corpus.write(str(tmp_path), {"train": 3, "validation": 2})
    assert sorted(manifests) == ["train", "validation"]
    with open(manifests["validation"], newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", "text"]
    assert len(rows) == 3
    for index, (image, text) in enumerate(rows[1:]):
        example = corpus.example("validation", index)
        assert text == example.caption
        pixels = np.asarray(Image.open(os.path.join(tmp_path, image)))
        np.testing.assert_array_equal(pixels, example.image)  # PNG: lossless.
    with pytest.raises(ValueError, match="jpeg"):
        corpus.write(str(tmp_path), {"train": 1}, image_format="gif")


def test_caption_corpus_dataset_has_pairs_and_no_labels():
    from cmaclip_tf.datasets import load_dataset

    dataset = load_dataset("caption_corpus", tasks=(), seed=3,
                           num_examples={"train": 4, "validation": 2})
    assert dataset.num_examples == {"train": 4, "validation": 2, "test": 0}
    corpus = CaptionCorpus(CaptionCorpusConfig(seed=3))
    examples = list(dataset.epoch_split("train", seed=0, epoch=0)
                    .as_numpy_iterator())
    from cmaclip_tf.preprocessing.input_pipeline import epoch_permutation

    order = epoch_permutation(4, 0, 0)
    for position, example in zip(order, examples):
        expected = corpus.example("train", int(position))
        assert example["text"].decode() == expected.caption
        np.testing.assert_array_equal(example["image"], expected.image)
        assert example["labels"] == {}
    # A labelled run (tasks left to the dataset) gets a clear error.
    with pytest.raises(ValueError, match="trainers/pretrain.py"):
        load_dataset("caption_corpus")
