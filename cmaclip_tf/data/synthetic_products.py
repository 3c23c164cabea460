"""Generated product-attribute data: the embedded default dataset.

The project's stand-in for the paper's retail dataset (MRWPA): each example
is a drawn garment whose silhouette is its `style`, filled with a `color` and
a `pattern`, on a varied background with clutter, and a product title built
from templates with brand and filler words. Each attribute's word appears in
the title only at a configurable rate (defaults 67% color, 25% pattern, 15%
style, the rates the paper reports), and a configurable share of those
mentions names a wrong value. So the text helps for some examples and is
noise for others, which is what modality-wise attention is for.

Noise dials, per task and 0 by default (see `SyntheticProductsConfig`):

- misleading title: instead of its own value, the title names a wrong one
  the way retail titles do, as a compatible product's attribute ("Sheath
  Dress, matches red shoes" on a blue dress);
- irrelevant image: the image shows another product's value of the
  attribute (another colour, pattern or silhouette), never the true one;
- label noise: the label is flipped to another class (in the train split
  only, by default); `attributes` keeps the truth.

The dials draw from a second random stream of their own, so a dial at 0
leaves the data byte for byte as without it, and an example flagged at one
rate is flagged at every higher rate: a sweep changes only flagged examples.

Deterministic: example `i` of a split depends only on `(seed, split, i)`, so
any size can be generated, streamed, or written to disk as images plus a
manifest that `load_dataset("manifest", ...)` reads back identically.
"""

import csv
import dataclasses
import math
import os

import numpy as np
from PIL import Image
from PIL import ImageChops
from PIL import ImageDraw

from cmaclip_tf.data.label_vocabulary import LabelVocabularies
from cmaclip_tf.data.raw_examples import PIXELS_IMAGE_SPEC
from cmaclip_tf.data.raw_examples import raw_split_from_generator

TASKS = ("color", "pattern", "style")

# Well separated fills, with near pairs (navy/black, maroon/brown/red) that
# keep the task from being trivial.
COLORS = {
    "black": (28, 28, 30),
    "white": (236, 236, 232),
    "grey": (128, 128, 128),
    "red": (205, 32, 38),
    "maroon": (118, 22, 44),
    "orange": (242, 132, 22),
    "yellow": (242, 212, 44),
    "green": (42, 152, 64),
    "teal": (22, 132, 138),
    "blue": (44, 92, 212),
    "navy": (26, 36, 98),
    "purple": (124, 52, 164),
    "pink": (242, 134, 184),
    "brown": (116, 72, 36),
}
PATTERNS = (
    "plain",
    "striped",
    "dotted",
    "checked",
    "floral",
    "graphic",
    "camo",
)
# Silhouettes in a unit square (x right, y down), drawn as polygons.
STYLES = {
    "tee": [
        (0.38, 0.15),
        (0.45, 0.2),
        (0.55, 0.2),
        (0.62, 0.15),
        (0.86, 0.3),
        (0.78, 0.46),
        (0.68, 0.41),
        (0.68, 0.9),
        (0.32, 0.9),
        (0.32, 0.41),
        (0.22, 0.46),
        (0.14, 0.3),
    ],
    "sweater": [
        (0.38, 0.14),
        (0.45, 0.19),
        (0.55, 0.19),
        (0.62, 0.14),
        (0.8, 0.24),
        (0.93, 0.8),
        (0.82, 0.83),
        (0.7, 0.42),
        (0.7, 0.88),
        (0.3, 0.88),
        (0.3, 0.42),
        (0.18, 0.83),
        (0.07, 0.8),
        (0.2, 0.24),
    ],
    "vest": [
        (0.35, 0.1),
        (0.42, 0.1),
        (0.45, 0.3),
        (0.55, 0.3),
        (0.58, 0.1),
        (0.65, 0.1),
        (0.67, 0.36),
        (0.69, 0.9),
        (0.31, 0.9),
        (0.33, 0.36),
    ],
    "a-line": [
        (0.4, 0.07),
        (0.46, 0.12),
        (0.54, 0.12),
        (0.6, 0.07),
        (0.64, 0.3),
        (0.59, 0.42),
        (0.84, 0.94),
        (0.16, 0.94),
        (0.41, 0.42),
        (0.36, 0.3),
    ],
    "sheath": [
        (0.4, 0.06),
        (0.46, 0.11),
        (0.54, 0.11),
        (0.6, 0.06),
        (0.63, 0.3),
        (0.6, 0.46),
        (0.62, 0.95),
        (0.38, 0.95),
        (0.4, 0.46),
        (0.37, 0.3),
    ],
    "skirt": [(0.35, 0.28), (0.65, 0.28), (0.82, 0.86), (0.18, 0.86)],
    "trousers": [
        (0.3, 0.08),
        (0.7, 0.08),
        (0.75, 0.93),
        (0.56, 0.93),
        (0.5, 0.36),
        (0.44, 0.93),
        (0.25, 0.93),
    ],
    "shorts": [
        (0.26, 0.28),
        (0.74, 0.28),
        (0.8, 0.72),
        (0.54, 0.74),
        (0.5, 0.5),
        (0.46, 0.74),
        (0.2, 0.72),
    ],
}

# Title words. No filler contains an attribute word, so an unmentioned
# attribute leaves no trace in the text.
COLOR_WORDS = {name: [name] for name in COLORS}
COLOR_WORDS["grey"] = ["grey", "gray"]
PATTERN_WORDS = {
    "plain": ["plain", "solid"],
    "striped": ["striped", "stripe", "stripes"],
    "dotted": ["dotted", "polka dot", "dots"],
    "checked": ["checked", "check", "checkered", "plaid"],
    "floral": ["floral", "flower print"],
    "graphic": ["graphic", "graphic print"],
    "camo": ["camo", "camouflage"],
}
STYLE_WORDS = {
    "tee": ["t-shirt", "tee"],
    "sweater": ["sweater", "cardigan"],
    "vest": ["vest", "sleeveless top"],
    "a-line": ["a-line dress", "a-line"],
    "sheath": ["sheath dress", "bodycon dress"],
    "skirt": ["skirt"],
    "trousers": ["trousers", "pants"],
    "shorts": ["shorts"],
}
BRANDS = [
    "Acme",
    "Nordwind",
    "Lumen",
    "Orchid",
    "Maple",
    "Cedar",
    "Aurora",
    "Vela",
    "Kestrel",
    "Halcyon",
    "Juniper",
    "Sable",
    "Tundra",
    "Willow",
]
AUDIENCES = ["Women's", "Womens", "Men's", "Mens", "Girls", "Boys", "Kids"]
FILLERS = [
    "casual",
    "summer",
    "winter",
    "spring",
    "classic",
    "new",
    "soft",
    "slim",
    "fit",
    "relaxed",
    "lightweight",
    "premium",
    "vintage",
    "elegant",
    "cute",
    "basic",
    "modern",
    "comfortable",
    "cotton",
    "linen",
    "knit",
    "stretch",
    "office",
    "party",
    "beach",
    "holiday",
    "everyday",
    "fashion",
]
GENERIC_NOUNS = ["item", "product", "clothing", "apparel", "outfit", "piece"]
# Compatible products a misleading title names ("matches red shoes"); none
# contains an attribute word.
COMPANION_PRODUCTS = [
    "shoes",
    "sneakers",
    "boots",
    "sandals",
    "bag",
    "handbag",
    "scarf",
    "belt",
    "hat",
    "jacket",
]
COMPANION_LINKS = [
    "for",
    "matches",
    "goes with",
    "pairs with",
    "to wear with",
    "perfect with",
]
SIZES = [
    "S",
    "M",
    "L",
    "XL",
    "XXL",
    "Size S",
    "Size M",
    "Size L",
    "Size 10",
    "Size 12",
    "UK 16",
]

SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}
DEFAULT_NUM_EXAMPLES = {"train": 2000, "validation": 300, "test": 300}
_RENDER_SCALE = 2  # Drawn at twice the size, then box-filtered: anti-aliasing.
# Darkening toward the bottom (> 0) or the top (< 0), at most 14%.
_SHADES = (-0.14, -0.1, -0.06, 0.0, 0.06, 0.1, 0.14)
# Names the noise dials' own random stream, apart from the example's.
_NOISE_STREAM = 0x4E6F6973
# The per-task rates a noise sweep turns: `<task>_<dial>_rate` fields.
TASK_DIALS = ("mention", "misleading_title", "irrelevant_image")


@dataclasses.dataclass(frozen=True)
class SyntheticProductsConfig:
    """How the generated products look and read.

    Attributes:
        image_size: int, images are square (default 64, the tiny model's).
        color_mention_rate: share of titles naming a color (0.67).
        pattern_mention_rate: share naming a pattern (0.25).
        style_mention_rate: share naming a style (0.15).
        wrong_mention_rate: share of mentions that name a wrong value (0.1).
        color_misleading_title_rate, pattern_misleading_title_rate,
            style_misleading_title_rate: share of titles that name a wrong
            value of the task as a compatible product's ("for red shoes",
            "matches striped skirt") instead of any own mention; the value
            is neither the true one nor the label (0). So a title names the
            task with probability `misleading + (1 - misleading) * mention`.
        color_irrelevant_image_rate, pattern_irrelevant_image_rate,
            style_irrelevant_image_rate: share of images that show another
            product's value of the task (drawn uniformly from the other
            classes) instead of the true one (0). Independent per task; when
            all three are drawn, the whole photo is another product's.
        label_noise_rate: share of labels flipped, per task, to another
            class drawn uniformly (0); withheld labels stay withheld.
        label_noise_splits: splits whose labels are flipped (`("train",)`),
            so that validation and test measure against clean labels.
        missing_label_rate: share of examples without a label, per task (0).
        max_clutter: most clutter shapes per image (3).
        seed: int; example `i` of a split depends on `(seed, split, i)`.

    Example:

    ```python
    config = SyntheticProductsConfig().with_rate("misleading_title", 0.2)
    config.misleading_title_rate("color")  # 0.2, as for pattern and style.
    ```
    """

    image_size: int = 64
    color_mention_rate: float = 0.67
    pattern_mention_rate: float = 0.25
    style_mention_rate: float = 0.15
    wrong_mention_rate: float = 0.1
    color_misleading_title_rate: float = 0.0
    pattern_misleading_title_rate: float = 0.0
    style_misleading_title_rate: float = 0.0
    color_irrelevant_image_rate: float = 0.0
    pattern_irrelevant_image_rate: float = 0.0
    style_irrelevant_image_rate: float = 0.0
    label_noise_rate: float = 0.0
    label_noise_splits: tuple = ("train",)
    missing_label_rate: float = 0.0
    max_clutter: int = 3
    seed: int = 0

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name.endswith("_rate") and not 0 <= value <= 1:
                raise ValueError(
                    f"{field.name} is {value}; a rate is between 0 and 1."
                )
        unknown = set(self.label_noise_splits) - set(SPLIT_CODES)
        if unknown or isinstance(self.label_noise_splits, str):
            raise ValueError(
                f"label_noise_splits {self.label_noise_splits!r} is not a "
                f"tuple of splits of {tuple(SPLIT_CODES)}."
            )

    def rate(self, dial, task):
        """The `<task>_<dial>_rate` field; `dial` is one of `TASK_DIALS`."""
        if dial not in TASK_DIALS or task not in TASKS:
            raise ValueError(
                f"No rate for dial {dial!r} of task {task!r}; dials are "
                f"{TASK_DIALS}, tasks {TASKS}."
            )
        return getattr(self, f"{task}_{dial}_rate")

    def with_rate(self, dial, rate, tasks=TASKS):
        """A copy with `dial` (one of `TASK_DIALS`) at `rate` for `tasks`."""
        for task in tasks:
            self.rate(dial, task)  # Checks the names.
        return dataclasses.replace(
            self, **{f"{task}_{dial}_rate": rate for task in tasks}
        )

    def mention_rate(self, task):
        return self.rate("mention", task)

    def misleading_title_rate(self, task):
        return self.rate("misleading_title", task)

    def irrelevant_image_rate(self, task):
        return self.rate("irrelevant_image", task)


@dataclasses.dataclass
class SyntheticProduct:
    """One generated example.

    Attributes:
        image: uint8 `[image_size, image_size, 3]`.
        title: str.
        attributes: `{task: true value}`.
        labels: `{task: value or None}` (`None` where the label is withheld;
            another value than `attributes` where `label_flipped`).
        mentions: `{task: value named in the title, or None}`.
        misleading: `{task: bool}`, the title names `mentions[task]` as a
            compatible product's, a wrong value.
        irrelevant_image: `{task: bool}`, the image shows `shown[task]`,
            another product's value, not `attributes[task]`.
        label_flipped: `{task: bool}`, label noise replaced the label.
        shown: `{task: value the image shows}`.
    """

    image: np.ndarray
    title: str
    attributes: dict
    labels: dict
    mentions: dict
    misleading: dict = None
    irrelevant_image: dict = None
    label_flipped: dict = None
    shown: dict = None


def class_names():
    """`{task: sorted class names}`, the label vocabularies' order."""
    return {
        "color": sorted(COLORS),
        "pattern": sorted(PATTERNS),
        "style": sorted(STYLES),
    }


class SyntheticProducts:
    """Generates the product-attribute dataset.

    Args:
        config: `SyntheticProductsConfig`.

    Example:

    ```python
    products = SyntheticProducts(SyntheticProductsConfig(seed=0))
    example = products.example("train", 0)
    example.title, example.labels  # "Acme Red Striped Tee", {...}
    raw_train = products.raw_split("train", 2000)  # tf.data of raw examples
    ```
    """

    def __init__(self, config=None):
        self.config = config or SyntheticProductsConfig()
        self.tasks = LabelVocabularies(class_names())
        size = self.config.image_size * _RENDER_SCALE
        self._grid = np.mgrid[0:size, 0:size].astype(np.float32)
        self._shades = {}

    def example(self, split, index, draw=True):
        """Example `index` of `split`, drawn from its own seeded generator.

        `draw=False` skips the image (drawn last, so nothing else changes).
        """
        key = [self.config.seed, SPLIT_CODES[split], int(index)]
        rng = np.random.default_rng(key)
        noise = _NoiseDraws(np.random.default_rng(key + [_NOISE_STREAM]))
        attributes = {
            "color": _choice(rng, sorted(COLORS)),
            "pattern": _choice(rng, PATTERNS),
            "style": _choice(rng, sorted(STYLES)),
        }
        mentions = {}
        for task in TASKS:
            mentions[task] = None
            if rng.random() < self.config.mention_rate(task):
                value = attributes[task]
                if rng.random() < self.config.wrong_mention_rate:
                    others = [c for c in class_names()[task] if c != value]
                    value = _choice(rng, others)
                mentions[task] = value
        labels = {
            task: (
                None if rng.random() < self.config.missing_label_rate else value
            )
            for task, value in attributes.items()
        }
        flipped, misleading, irrelevant, shown = self._noise(
            noise, split, attributes, labels
        )
        title = self._title(rng, mentions, misleading, noise.rng)
        for task, value in misleading.items():
            if value is not None:
                mentions[task] = value
        image = self._draw(rng, shown) if draw else None
        return SyntheticProduct(
            image,
            title,
            attributes,
            labels,
            mentions,
            misleading={t: v is not None for t, v in misleading.items()},
            irrelevant_image=irrelevant,
            label_flipped=flipped,
            shown=shown,
        )

    def raw_split(self, split, num_examples, tasks=TASKS):
        """`num_examples` of `split` as a `tf.data.Dataset` of raw examples."""
        tasks = tuple(tasks)

        def generate():
            for index in range(num_examples):
                example = self.example(split, index)
                yield {
                    "image": example.image,
                    "text": example.title.encode("utf-8"),
                    "labels": {
                        task: np.int32(
                            self.tasks[task].lookup(example.labels[task])
                        )
                        for task in tasks
                    },
                    "id": f"synthetic/{split}/{index}".encode(),
                }

        return raw_split_from_generator(generate, tasks, PIXELS_IMAGE_SPEC)

    def write(self, output_dir, num_examples=None, image_format="png"):
        """Writes images and one CSV manifest per split.

        Layout: `images/<split>/<index>.<ext>` and `<split>.csv` with columns
        `image` (relative path), `text`, `color`, `pattern`, `style` (empty
        where the label is withheld).

        Returns:
            `{split: manifest path}`.
        """
        num_examples = dict(num_examples or DEFAULT_NUM_EXAMPLES)
        extension = {"png": "png", "jpeg": "jpg"}[image_format]
        manifests = {}
        for split, count in num_examples.items():
            image_dir = os.path.join(output_dir, "images", split)
            os.makedirs(image_dir, exist_ok=True)
            manifest = os.path.join(output_dir, f"{split}.csv")
            with open(manifest, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(["image", "text", *TASKS])
                for index in range(count):
                    example = self.example(split, index)
                    relative = f"images/{split}/{index:06d}.{extension}"
                    Image.fromarray(example.image).save(
                        os.path.join(output_dir, relative),
                        format=image_format.upper(),
                        **({"quality": 95} if image_format == "jpeg" else {}),
                    )
                    writer.writerow(
                        [relative, example.title]
                        + [example.labels[t] or "" for t in TASKS]
                    )
            manifests[split] = manifest
        return manifests

    # === Noise ===

    def _noise(self, noise, split, attributes, labels):
        """Applies the noise dials: flips `labels` in place and returns
        `(flipped, misleading values or None, irrelevant, shown values)`."""
        flip_rate = self.config.label_noise_rate
        if split not in self.config.label_noise_splits:
            flip_rate = 0.0
        flipped, misleading, irrelevant, shown = {}, {}, {}, {}
        for task in TASKS:
            truth = attributes[task]
            flipped[task] = labels[task] is not None and noise.flag(
                task, "label", flip_rate
            )
            if flipped[task]:
                labels[task] = noise.other_value(task, "label", {truth})
            misleading[task] = None
            title_rate = self.config.misleading_title_rate(task)
            if noise.flag(task, "title", title_rate):
                # Neither the truth nor the label, so the text never backs a
                # flipped label: title noise and label noise stay apart.
                misleading[task] = noise.other_value(
                    task, "title", {truth, labels[task]}
                )
            irrelevant[task] = noise.flag(
                task, "image", self.config.irrelevant_image_rate(task)
            )
            shown[task] = (
                noise.other_value(task, "image", {truth})
                if irrelevant[task]
                else truth
            )
        return flipped, misleading, irrelevant, shown

    # === Titles ===

    def _title(self, rng, mentions, misleading, noise_rng):
        """The title; `misleading[task]`, where not `None`, replaces the
        task's own mention with a compatible product's value. `rng` draws
        exactly as without it (misleading words come from `noise_rng`)."""
        words = []
        if rng.random() < 0.8:
            words.append(_choice(rng, BRANDS))
        if rng.random() < 0.6:
            words.append(_choice(rng, AUDIENCES))
        words += [_choice(rng, FILLERS) for _ in range(rng.integers(0, 4))]
        color = pattern = None
        if mentions["color"] is not None:
            color = _choice(rng, COLOR_WORDS[mentions["color"]])
        if mentions["pattern"] is not None:
            pattern = _choice(rng, PATTERN_WORDS[mentions["pattern"]])
        if mentions["style"] is not None:
            noun = _choice(rng, STYLE_WORDS[mentions["style"]])
        else:
            noun = _choice(rng, GENERIC_NOUNS)
        color_after = color is not None and rng.random() < 0.35
        pattern_first = pattern is not None and rng.random() < 0.7
        if misleading["color"] is not None:
            color = None
        if misleading["pattern"] is not None:
            pattern = None
        if misleading["style"] is not None:
            noun = _choice(noise_rng, GENERIC_NOUNS)
        if color is not None and not color_after:
            words.append(color)
        if pattern is not None and pattern_first:
            words += [pattern, noun]
        elif pattern is not None:
            words += [noun, "with", pattern]
        else:
            words.append(noun)
        title = " ".join(words)
        if color_after:
            suffix = _choice(rng, [f", {color}", f" in {color}", f" - {color}"])
            title += suffix if color is not None else ""
        if any(value is not None for value in misleading.values()):
            title += _companion_phrase(noise_rng, misleading)
        if rng.random() < 0.3:
            title += f", {_choice(rng, SIZES)}"
        if rng.random() < 0.1:
            title += f" {int(rng.integers(1, 4))}-pack"
        case = rng.random()
        if case < 0.6:
            title = " ".join(w[:1].upper() + w[1:] for w in title.split(" "))
        elif case < 0.7:
            title = title.upper()
        return title

    # === Drawing ===

    def _draw(self, rng, attributes):
        size = self.config.image_size * _RENDER_SCALE
        canvas = _background(rng, size, self._grid)
        draw = ImageDraw.Draw(canvas)
        num_clutter = int(rng.integers(0, self.config.max_clutter + 1))
        front = num_clutter > 0 and rng.random() < 0.3
        for _ in range(num_clutter - int(front)):
            _clutter(rng, draw, size)

        silhouette = Image.new("L", (size, size), 0)
        ImageDraw.Draw(silhouette).polygon(
            _silhouette(rng, attributes["style"], size), fill=255
        )
        fill = np.clip(
            np.asarray(COLORS[attributes["color"]], np.float32)
            + rng.uniform(-12, 12, 3),
            0,
            255,
        )
        ink_mask, ink = _pattern(
            rng, attributes["pattern"], fill, silhouette, self._grid
        )
        garment = Image.new("RGB", (size, size), _rgb(fill))
        if ink_mask is not None:
            garment.paste(_rgb(ink), mask=ink_mask)
        # Soft light from above or below, so colors are not perfectly flat.
        garment = ImageChops.multiply(
            garment, self._shading(rng.integers(len(_SHADES)))
        )
        canvas.paste(garment, mask=silhouette)
        if front:
            _clutter(rng, ImageDraw.Draw(canvas), size, small=True)
        return np.asarray(canvas.reduce(_RENDER_SCALE), np.uint8)

    def _shading(self, index):
        if index not in self._shades:
            size = self.config.image_size * _RENDER_SCALE
            strength = _SHADES[index]
            t = self._grid[0] / size
            ramp = 255 * (1 - strength * (t if strength > 0 else t - 1))
            ramp = np.clip(ramp, 0, 255).astype(np.uint8)
            self._shades[index] = Image.fromarray(ramp).convert("RGB")
        return self._shades[index]


class _NoiseDraws:
    """The noise dials' draws for one example, from their own stream.

    One fixed block of uniforms (per task: a flag and a value for each of
    title, image and label) is drawn whatever the rates, so a flag at rate
    `r` is `u < r`: flagged at `r`, flagged at every higher rate. Words of
    misleading phrases come from `rng` after the block.
    """

    _KINDS = ("title", "image", "label")

    def __init__(self, rng):
        self.rng = rng
        self._uniforms = rng.random((len(TASKS), len(self._KINDS), 2))

    def _uniform(self, task, kind, which):
        return self._uniforms[TASKS.index(task), self._KINDS.index(kind), which]

    def flag(self, task, kind, rate):
        return bool(self._uniform(task, kind, 0) < rate)

    def other_value(self, task, kind, excluded):
        """A class of `task` outside `excluded`, uniformly."""
        others = [c for c in class_names()[task] if c not in excluded]
        return others[int(self._uniform(task, kind, 1) * len(others))]


def _companion_phrase(rng, misleading):
    """", matches red striped shoes": the misleading values as another
    product's; a misleading style names that product."""
    words = [_choice(rng, COMPANION_LINKS)]
    if misleading["color"] is not None:
        words.append(_choice(rng, COLOR_WORDS[misleading["color"]]))
    if misleading["pattern"] is not None:
        words.append(_choice(rng, PATTERN_WORDS[misleading["pattern"]]))
    if misleading["style"] is not None:
        words.append(_choice(rng, STYLE_WORDS[misleading["style"]]))
    else:
        words.append(_choice(rng, COMPANION_PRODUCTS))
    return _choice(rng, [", ", " - ", " "]) + " ".join(words)


def _rgb(values):
    return tuple(int(round(float(v))) for v in np.clip(values, 0, 255))


def _choice(rng, options):
    return options[int(rng.integers(len(options)))]


def _silhouette(rng, style, size):
    """The style's polygon, scaled, shifted, stretched, rotated and jittered."""
    points = np.asarray(STYLES[style], np.float32) - 0.5
    points *= rng.uniform(0.78, 0.98) * np.array(
        [rng.uniform(0.9, 1.1), rng.uniform(0.92, 1.05)], np.float32
    )
    angle = math.radians(rng.uniform(-6, 6))
    rotation = np.array(
        [
            [math.cos(angle), -math.sin(angle)],
            [math.sin(angle), math.cos(angle)],
        ],
        np.float32,
    )
    points = points @ rotation.T
    points += 0.5 + rng.uniform(-0.05, 0.05, 2)
    points += rng.uniform(-0.012, 0.012, points.shape)
    return [tuple(p) for p in (points * size).tolist()]


def _random_color(rng):
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def _background(rng, size, grid):
    kind = rng.integers(4)
    base = np.asarray(_random_color(rng), np.float32)
    if rng.random() < 0.7:  # Mostly light, studio-like backgrounds.
        base = base * 0.35 + 255 * 0.65 * rng.uniform(0.7, 1.0)
    if kind == 0:
        return Image.new("RGB", (size, size), _rgb(base))
    if kind == 1:  # Gradient.
        other = np.asarray(_random_color(rng), np.float32) * 0.4 + base * 0.6
        t = grid[int(rng.integers(2))][..., None] / size
        pixels = base + (other - base) * t
    elif kind == 2:  # Grain.
        pixels = base + rng.integers(-12, 13, (size, size, 1)).astype(
            np.float32
        )
    else:  # Floor and wall.
        image = Image.new("RGB", (size, size), _rgb(base))
        horizon = int(rng.uniform(0.55, 0.85) * size)
        floor = _rgb(base * rng.uniform(0.6, 0.9))
        ImageDraw.Draw(image).rectangle([0, horizon, size, size], fill=floor)
        return image
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _clutter(rng, draw, size, small=False):
    scale = size * (
        rng.uniform(0.06, 0.14) if small else rng.uniform(0.08, 0.3)
    )
    x, y = rng.uniform(0, size, 2)
    box = [x - scale / 2, y - scale / 2, x + scale / 2, y + scale / 2]
    color = _random_color(rng)
    kind = rng.integers(3)
    if kind == 0:
        draw.ellipse(box, fill=color)
    elif kind == 1:
        draw.rectangle(box, fill=color)
    else:
        draw.line(box, fill=color, width=max(2, int(scale / 8)))


def _pattern(rng, pattern, fill, silhouette, grid):
    """`(ink mask, ink color)`: where the pattern covers the fill, and in what.

    The mask is an "L" image (or `None` for plain); the ink is the fill
    pushed toward black or white, so the fill stays the dominant color.
    """
    size = silhouette.size[0]
    luminance = fill @ np.array([0.299, 0.587, 0.114], np.float32) / 255
    target = 0.0 if luminance > 0.55 else 255.0
    ink = fill + (target - fill) * rng.uniform(0.6, 0.85)
    yy, xx = grid
    if pattern == "plain":
        return None, ink
    if pattern == "striped":
        period = rng.uniform(8, 13)
        angle = math.radians(_choice(rng, [0, 90, 45, -45]))
        u = xx * math.cos(angle) + yy * math.sin(angle) + rng.uniform(0, period)
        return _mask_image((u % period) < period * 0.38), ink
    if pattern == "checked":
        period = rng.uniform(11, 16)
        width = period * 0.24
        ox, oy = rng.uniform(0, period, 2)
        lines = ((xx + ox) % period < width) | ((yy + oy) % period < width)
        return _mask_image(lines), ink
    if pattern == "camo":
        noise = Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8))
        field = noise.resize((size, size), Image.BICUBIC)
        return field.point(lambda v: 255 if v > 150 else 0), ink
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    if pattern == "dotted":
        spacing = rng.uniform(10, 14)
        radius = spacing * rng.uniform(0.2, 0.26)
        ox, oy = rng.uniform(0, spacing, 2)
        for row, y in enumerate(
            np.arange(-spacing + oy, size + spacing, spacing)
        ):
            shift = spacing / 2 if row % 2 else 0
            for x in np.arange(-spacing + ox + shift, size + spacing, spacing):
                draw.ellipse(
                    [x - radius, y - radius, x + radius, y + radius], fill=255
                )
    elif pattern == "floral":
        spacing = rng.uniform(17, 22)
        petal = spacing * 0.13
        for y in np.arange(rng.uniform(0, spacing), size, spacing):
            for x in np.arange(rng.uniform(0, spacing), size, spacing):
                cx, cy = x + rng.uniform(-3, 3), y + rng.uniform(-3, 3)
                start = rng.uniform(0, 2 * math.pi)
                for k in range(5):
                    a = start + k * 2 * math.pi / 5
                    px = cx + 1.8 * petal * math.cos(a)
                    py = cy + 1.8 * petal * math.sin(a)
                    draw.ellipse(
                        [px - petal, py - petal, px + petal, py + petal],
                        fill=255,
                    )
    elif pattern == "graphic":
        # One large motif on the chest: a circle, a triangle or a star.
        left, top, right, bottom = silhouette.getbbox() or (0, 0, size, size)
        cx, cy = (left + right) / 2, top + 0.4 * (bottom - top)
        radius = 0.16 * size
        shape = rng.integers(3)
        if shape == 0:
            draw.ellipse(
                [cx - radius, cy - radius, cx + radius, cy + radius], fill=255
            )
        elif shape == 1:
            draw.polygon(
                [
                    (cx, cy - radius),
                    (cx + radius, cy + radius),
                    (cx - radius, cy + radius),
                ],
                fill=255,
            )
        else:
            points = []
            for k in range(10):
                r = radius if k % 2 == 0 else radius * 0.45
                a = -math.pi / 2 + k * math.pi / 5
                points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
            draw.polygon(points, fill=255)
    return mask, ink


def _mask_image(mask):
    return Image.fromarray(mask.astype(np.uint8) * 255)
