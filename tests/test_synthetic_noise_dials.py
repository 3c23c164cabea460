"""The generator's noise dials: defaults keep today's data byte for byte;
misleading titles, irrelevant images and label noise at their rates."""

import hashlib

import numpy as np
import pytest
from test_synthetic_products import names_in

from cmaclip_tf.datasets import SyntheticProducts
from cmaclip_tf.datasets import SyntheticProductsConfig
from cmaclip_tf.datasets.synthetic.vocabulary import COLORS
from cmaclip_tf.datasets.synthetic.vocabulary import COMPANION_LINKS
from cmaclip_tf.datasets.synthetic.vocabulary import TASKS
from cmaclip_tf.datasets.synthetic.vocabulary import class_names

# Computed with the generator as it was before the noise dials existed
# (commit 5791ffd): (split, index, title, sha256 of the image, labels).
PINNED = {
    "default": (
        SyntheticProductsConfig(),
        [
            ("train", 0, "Casual Premium Piece - Green, Size 10",
             "60b2682d174e89e234abae7ee3c53d55d83f6513310f9530dc7cf41e756f9018",
             {"color": "teal", "pattern": "floral", "style": "sweater"}),
            ("train", 7, "Girls outfit with plain",
             "ba2cdaafe7bbc43be9177eed1ffb0326f20bcb4f2facf10ca7052c91eee3fcd2",
             {"color": "yellow", "pattern": "plain", "style": "a-line"}),
            ("validation", 3,
             "Halcyon beach party cute pants with camouflage - blue, Size M",
             "bc2b0d12484d6694a87bcb7c93731848e6c5d6c1a66abe0e976e3465788f0610",
             {"color": "blue", "pattern": "camo", "style": "trousers"}),
            ("test", 123, "Tundra Mens Cute Item In Black",
             "fb87a3c7b5102cac8f9261fc8c0bca63b92940c98e3d674bd29d456f37e6576d",
             {"color": "maroon", "pattern": "camo", "style": "tee"}),
        ],
    ),
    "missing_and_wrong": (
        SyntheticProductsConfig(
            seed=3, image_size=32, missing_label_rate=0.3, wrong_mention_rate=0.4
        ),
        [
            ("train", 0, "Orchid Kids Premium Vintage Bodycon Dress",
             "58d3c4c6bcfb3b4e482f8a88ffd75e8bbbf05256aced5380bf03c53c95098d90",
             {"color": "teal", "pattern": None, "style": "sheath"}),
            ("train", 7, "Vela Girls Cotton Soft Summer Product",
             "ccd51c3abdb1a422078184f0bedc59e6f205c5c02f881a6b8b222603f4a460d0",
             {"color": "purple", "pattern": None, "style": None}),
            ("validation", 3, "Tundra Boys Soft Relaxed Product",
             "904ca0a04cd17d64010b9f5e7dbea47e19c3044d540da4e4fbd33d4b6e4f382f",
             {"color": None, "pattern": "checked", "style": "sheath"}),
            ("test", 123, "Lumen piece, XXL",
             "e826b6aef848dfdabf980108e248f541406e6bfaf2e174571fc22530b9beee3a",
             {"color": None, "pattern": "camo", "style": "a-line"}),
        ],
    ),
}
NUM_EXAMPLES = 10_000
# Two points: over four standard deviations of a rate near 0.3 estimated
# from 10,000 draws (sqrt(0.3 * 0.7 / 10,000) = 0.0046).
TOLERANCE = 0.02
RATES = {
    "misleading_title": {"color": 0.1, "pattern": 0.3, "style": 0.2},
    "irrelevant_image": {"color": 0.25, "pattern": 0.05, "style": 0.15},
}
LABEL_NOISE = 0.3
MISSING = 0.1


def noisy_config(**overrides):
    fields = {
        f"{task}_{dial}_rate": rate
        for dial, rates in RATES.items()
        for task, rate in rates.items()
    }
    fields.update(label_noise_rate=LABEL_NOISE, missing_label_rate=MISSING)
    fields.update(overrides)
    return SyntheticProductsConfig(**fields)


@pytest.fixture(scope="module")
def noisy_examples():
    products = SyntheticProducts(noisy_config())
    return [
        products.example("train", i, draw=False) for i in range(NUM_EXAMPLES)
    ]


@pytest.mark.parametrize("name", sorted(PINNED))
def test_defaults_give_the_data_of_before_the_dials(name):
    config, pinned = PINNED[name]
    products = SyntheticProducts(config)
    for split, index, title, image_sha256, labels in pinned:
        example = products.example(split, index)
        assert example.title == title
        assert hashlib.sha256(example.image.tobytes()).hexdigest() == image_sha256
        assert example.labels == labels
        assert example.shown == example.attributes
        for flags in (example.misleading, example.irrelevant_image,
                      example.label_flipped):
            assert flags == {task: False for task in TASKS}


def test_each_rate_is_realised(noisy_examples):
    labelled = {
        task: [e for e in noisy_examples if e.labels[task] is not None]
        for task in TASKS
    }
    for task in TASKS:
        for dial, flags in (("misleading_title", "misleading"),
                            ("irrelevant_image", "irrelevant_image")):
            share = np.mean([getattr(e, flags)[task] for e in noisy_examples])
            assert abs(share - RATES[dial][task]) < TOLERANCE, (task, dial)
        flipped = np.mean([e.label_flipped[task] for e in labelled[task]])
        assert abs(flipped - LABEL_NOISE) < TOLERANCE, task
        # Flipping does not touch withheld labels, so they stay at their rate.
        withheld = 1 - len(labelled[task]) / NUM_EXAMPLES
        assert abs(withheld - MISSING) < TOLERANCE, task
        # A misleading title names the task even where the mention draw did
        # not: m + (1 - m) * mention rate of the titles name it.
        named = np.mean([e.mentions[task] is not None for e in noisy_examples])
        m = RATES["misleading_title"][task]
        expected = m + (1 - m) * SyntheticProductsConfig().mention_rate(task)
        assert abs(named - expected) < TOLERANCE, task


def test_misleading_titles_name_only_a_wrong_value(noisy_examples):
    for e in noisy_examples:
        for task in TASKS:
            # The title names exactly the recorded mention, for every task.
            expected = {e.mentions[task]} - {None}
            assert names_in(e.title, task) == expected, (task, e.title)
            if e.misleading[task]:
                assert e.mentions[task] not in (e.attributes[task], e.labels[task])
        if any(e.misleading.values()):
            lowered = e.title.lower()
            assert any(f"{link} " in lowered for link in COMPANION_LINKS), e.title


def test_flipped_labels_never_equal_the_truth(noisy_examples):
    for e in noisy_examples:
        for task in TASKS:
            if e.labels[task] is not None:
                assert (e.labels[task] != e.attributes[task]) == e.label_flipped[task]
    # Each other class is as likely: 14 colors, each near 1/13 of the flips.
    flips = [e.labels["color"] for e in noisy_examples if e.label_flipped["color"]]
    counts = np.array([flips.count(c) for c in class_names()["color"]])
    assert counts.min() > 0.7 * len(flips) / 13, counts


def test_irrelevant_images_show_another_value(noisy_examples):
    for e in noisy_examples:
        for task in TASKS:
            assert (e.shown[task] != e.attributes[task]) == e.irrelevant_image[task]


def test_label_noise_spares_validation_and_test():
    products = SyntheticProducts(noisy_config())
    for split in ("validation", "test"):
        for index in range(300):
            example = products.example(split, index, draw=False)
            assert not any(example.label_flipped.values())
            assert all(
                example.labels[t] in (None, example.attributes[t]) for t in TASKS
            )
    everywhere = SyntheticProducts(
        noisy_config(label_noise_splits=("train", "validation", "test"))
    )
    flipped = [
        everywhere.example("test", i, draw=False).label_flipped["color"]
        for i in range(300)
    ]
    assert 0.2 < np.mean(flipped) < 0.4


def test_irrelevant_color_images_show_the_other_color():
    """The nearest palette colour of the garment's centre is the shown one."""
    products = SyntheticProducts(
        SyntheticProductsConfig(color_irrelevant_image_rate=1.0)
    )
    names = sorted(COLORS)
    palette = np.array([COLORS[n] for n in names], np.float32)
    agrees = {"shown": 0, "true": 0}
    for index in range(200):
        example = products.example("train", index)
        median = np.median(example.image[16:48, 20:44].reshape(-1, 3), 0)
        nearest = names[int(((palette - median) ** 2).sum(1).argmin())]
        agrees["shown"] += nearest == example.shown["color"]
        agrees["true"] += nearest == example.attributes["color"]
    # Clean images score about 0.55 this way; the true colour is never drawn.
    assert agrees["shown"] > 0.4 * 200 and agrees["true"] < 0.1 * 200, agrees


def test_a_higher_rate_only_adds_noisy_examples():
    """Sweeps compare like with like: the dials have their own random
    stream, so unflagged examples stay as they were, and flags nest."""
    clean = SyntheticProducts(SyntheticProductsConfig())
    low, high = (
        SyntheticProducts(
            SyntheticProductsConfig().with_rate("misleading_title", rate)
        )
        for rate in (0.1, 0.3)
    )
    for index in range(300):
        c, lo, hi = (
            p.example("train", index, draw=False) for p in (clean, low, high)
        )
        for task in TASKS:
            assert hi.misleading[task] or not lo.misleading[task]
        if not any(hi.misleading.values()):
            assert hi.title == c.title
    images = SyntheticProducts(
        SyntheticProductsConfig().with_rate("irrelevant_image", 0.3)
    )
    for index in range(10):
        noisy, plain = images.example("train", index), clean.example("train", index)
        same = np.array_equal(noisy.image, plain.image)
        assert same != any(noisy.irrelevant_image.values()), index


def test_config_checks_and_sets_rates():
    config = SyntheticProductsConfig().with_rate("irrelevant_image", 0.2, ["style"])
    assert [config.irrelevant_image_rate(t) for t in TASKS] == [0.0, 0.0, 0.2]
    with pytest.raises(ValueError, match="between 0 and 1"):
        SyntheticProductsConfig(color_misleading_title_rate=1.5)
    with pytest.raises(ValueError, match="dials are"):
        SyntheticProductsConfig().with_rate("blurry_image", 0.2)
    with pytest.raises(ValueError, match="label_noise_splits"):
        SyntheticProductsConfig(label_noise_splits=("training",))
