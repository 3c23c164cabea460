"""The generated product-attribute dataset: mention rates, determinism,
streaming, writing to disk, learnable colors."""

import io
import re

import numpy as np
import pytest
from PIL import Image

from cmaclip_tf.datasets import SyntheticProducts
from cmaclip_tf.datasets import SyntheticProductsConfig
from cmaclip_tf.datasets import load_dataset
from cmaclip_tf.datasets.synthetic.products import COLORS
from cmaclip_tf.datasets.synthetic.products import COLOR_WORDS
from cmaclip_tf.datasets.synthetic.products import PATTERN_WORDS
from cmaclip_tf.datasets.synthetic.products import STYLE_WORDS
from cmaclip_tf.datasets.synthetic.products import TASKS

WORDS = {"color": COLOR_WORDS, "pattern": PATTERN_WORDS, "style": STYLE_WORDS}
NUM_TITLES = 3000
# Three standard deviations of a rate estimated from 3,000 draws is <= 0.027.
TOLERANCE = 0.03


def names_in(title, task):
    """Values of `task` whose words appear in `title` (whole words)."""
    lowered = title.lower()
    return {
        value
        for value, words in WORDS[task].items()
        if any(
            re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", lowered)
            for w in words
        )
    }


def titles(config, count=NUM_TITLES):
    products = SyntheticProducts(config)
    return [products.example("train", i, draw=False) for i in range(count)]


@pytest.mark.parametrize(
    "rates",
    [
        {"color": 0.67, "pattern": 0.25, "style": 0.15, "wrong": 0.1},
        {"color": 0.3, "pattern": 0.5, "style": 0.9, "wrong": 0.3},
    ],
)
def test_mention_rates_and_wrong_share(rates):
    config = SyntheticProductsConfig(
        color_mention_rate=rates["color"],
        pattern_mention_rate=rates["pattern"],
        style_mention_rate=rates["style"],
        wrong_mention_rate=rates["wrong"],
    )
    examples = titles(config)
    for task in TASKS:
        mentioned = [e for e in examples if e.mentions[task] is not None]
        # What the title says agrees with the metadata: the named value is in
        # the title and no other value of the task is.
        for e in examples:
            expected = (
                {e.mentions[task]} if e.mentions[task] is not None else set()
            )
            assert names_in(e.title, task) == expected, (
                task,
                e.title,
                e.mentions,
            )
        assert (
            abs(len(mentioned) / len(examples) - rates[task]) < TOLERANCE
        ), task
        wrong = [e for e in mentioned if e.mentions[task] != e.attributes[task]]
        assert (
            abs(len(wrong) / len(mentioned) - rates["wrong"]) < TOLERANCE + 0.02
        ), task


def test_default_titles_mention_attributes_at_the_papers_rates():
    # Section 4.4: 67%, 25% and 15% of titles hold color, pattern and style
    # tokens. Measured on the titles, with the word lists, not the config.
    examples = titles(SyntheticProductsConfig())
    for task, rate in {"color": 0.67, "pattern": 0.25, "style": 0.15}.items():
        share = np.mean([bool(names_in(e.title, task)) for e in examples])
        assert abs(share - rate) < TOLERANCE, (task, share)
    assert len(COLORS) >= 12 and len(PATTERN_WORDS) >= 6


def test_same_seed_same_data_other_seed_other_data():
    first = SyntheticProducts(SyntheticProductsConfig(seed=7))
    again = SyntheticProducts(SyntheticProductsConfig(seed=7))
    other = SyntheticProducts(SyntheticProductsConfig(seed=8))
    for index in (0, 5, 123):
        a, b = first.example("train", index), again.example("train", index)
        np.testing.assert_array_equal(a.image, b.image)
        assert (a.title, a.labels) == (b.title, b.labels)
    assert [first.example("train", i).title for i in range(20)] != [
        other.example("train", i).title for i in range(20)
    ]
    # Splits differ from each other.
    assert [first.example("train", i).title for i in range(20)] != [
        first.example("test", i).title for i in range(20)
    ]


def test_streamed_split_equals_the_generator_and_covers_every_class():
    dataset = load_dataset(
        "synthetic",
        seed=3,
        num_examples={"train": 400, "validation": 8, "test": 8},
        image_size=32,
    )
    products = SyntheticProducts(SyntheticProductsConfig(seed=3, image_size=32))
    raw = list(dataset.splits["train"].as_numpy_iterator())
    assert len(raw) == 400
    for index in (0, 17, 399):
        example = products.example("train", index)
        np.testing.assert_array_equal(raw[index]["image"], example.image)
        assert raw[index]["image"].shape == (32, 32, 3)
        assert raw[index]["text"].decode() == example.title
        for task in TASKS:
            assert raw[index]["labels"][task] == dataset.tasks[task].index(
                example.labels[task]
            )
    for task in TASKS:
        seen = {int(r["labels"][task]) for r in raw}
        assert seen == set(range(len(dataset.tasks[task]))), task
    assert dataset.bad_records.counts() == {}


def test_missing_label_rate_gives_minus_one_labels():
    dataset = load_dataset(
        "synthetic",
        num_examples={"train": 300, "validation": 1, "test": 1},
        image_size=16,
        synthetic_config=SyntheticProductsConfig(missing_label_rate=0.3),
    )
    labels = [r["labels"] for r in dataset.splits["train"].as_numpy_iterator()]
    for task in TASKS:
        share = np.mean([label[task] == -1 for label in labels])
        assert 0.2 < share < 0.4, (task, share)


def test_written_dataset_reads_back_identically_as_a_manifest(tmp_path):
    products = SyntheticProducts(SyntheticProductsConfig(seed=1, image_size=32))
    sizes = {"train": 30, "validation": 6, "test": 6}
    manifests = products.write(str(tmp_path), sizes)
    header = open(manifests["train"]).readline().strip()
    assert header == "image,text,color,pattern,style"
    assert len(list((tmp_path / "images" / "train").glob("*.png"))) == 30
    dataset = load_dataset(
        "manifest",
        manifest=manifests["train"],
        val_manifest=manifests["validation"],
        test_manifest=manifests["test"],
        label_vocabularies=products.tasks,
    )
    assert dataset.num_examples == sizes
    raw = list(dataset.splits["test"].as_numpy_iterator())
    assert len(raw) == 6
    for index, record in enumerate(raw):
        example = products.example("test", index)
        assert record["text"].decode() == example.title
        pixels = np.asarray(Image.open(io.BytesIO(record["image"])))
        np.testing.assert_array_equal(pixels, example.image)
        for task in TASKS:
            assert record["labels"][task] == products.tasks[task].index(
                example.labels[task]
            )


def test_colors_are_learnable_but_not_trivial_from_pixels():
    """A nearest-centroid classifier on the center's median color."""
    products = SyntheticProducts(SyntheticProductsConfig(seed=0))
    names = sorted(COLORS)

    def features(split, count):
        xs, ys = [], []
        for i in range(count):
            example = products.example(split, i)
            xs.append(np.median(example.image[16:48, 20:44].reshape(-1, 3), 0))
            ys.append(names.index(example.attributes["color"]))
        return np.array(xs, float), np.array(ys)

    x_train, y_train = features("train", 700)
    x_test, y_test = features("test", 200)
    centroids = np.stack(
        [x_train[y_train == k].mean(0) for k in range(len(names))]
    )
    predicted = ((x_test[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    accuracy = (predicted == y_test).mean()
    # Chance is 1/14; clutter, patterns, lighting and thin garments keep a
    # colour-picker baseline well below perfect.
    assert 0.4 < accuracy < 0.95, accuracy
