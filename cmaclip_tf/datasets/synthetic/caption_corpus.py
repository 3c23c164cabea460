"""A generated image-caption corpus for contrastive pretraining of the tiny CLIP.

Most images are garments drawn by the product-attribute benchmark's drawer
(`products.py`: a style's silhouette in a color and a pattern, on
a varied background with clutter); the rest are plain colored shapes. Each
caption describes what the image shows ("a photo of a red striped a-line
dress", "a red skirt with stripes", "striped, red", "a blue star"), naming
some of the attributes with class names or synonyms, in varied order. Unlike
the benchmark's titles, captions never name a wrong value and never carry
its brands, audiences, fillers, sizes or generic nouns, so pretraining on
them learns what the words look like without learning the benchmark's text.

No benchmark image is in the corpus: example `i` of a corpus split is drawn
from the seed stream `(seed, code, i)` with split codes the benchmark never
uses (it uses 0, 1, 2 for train, validation, test).

Deterministic: example `i` of a split depends only on `(seed, split, i)`.
"""

import dataclasses
import math

import numpy as np
from PIL import Image
from PIL import ImageDraw

from cmaclip_tf.datasets.manifest_writer import write_manifest
from cmaclip_tf.datasets.raw_examples import PIXELS_IMAGE_SPEC
from cmaclip_tf.datasets.raw_examples import raw_split_from_generator
from cmaclip_tf.datasets.synthetic.drawing import ProductDrawer
from cmaclip_tf.datasets.synthetic.drawing import rgb
from cmaclip_tf.datasets.synthetic.vocabulary import COLORS
from cmaclip_tf.datasets.synthetic.vocabulary import PATTERNS
from cmaclip_tf.datasets.synthetic.vocabulary import STYLES
from cmaclip_tf.datasets.synthetic.vocabulary import choice

CORPUS_SPLIT_CODES = {"train": 100, "validation": 101}
DEFAULT_NUM_EXAMPLES = {"train": 10000, "validation": 1000}

# Caption words per class: the class name first (what zero-shot prompts
# say), then synonyms. No phrase of one class contains a word of another
# ("navy blue" would teach "blue" for navy).
COLOR_PHRASES = {
    "black": ["black"],
    "white": ["white"],
    "grey": ["grey", "gray"],
    "red": ["red", "scarlet"],
    "maroon": ["maroon", "burgundy"],
    "orange": ["orange"],
    "yellow": ["yellow"],
    "green": ["green"],
    "teal": ["teal", "turquoise"],
    "blue": ["blue", "cobalt"],
    "navy": ["navy"],
    "purple": ["purple", "violet"],
    "pink": ["pink"],
    "brown": ["brown", "chocolate"],
}
# Adjectives ("a striped skirt") and "with" phrases ("a skirt with stripes").
PATTERN_ADJECTIVES = {
    "plain": ["plain", "solid", "unpatterned"],
    "striped": ["striped", "stripy"],
    "dotted": ["dotted", "polka-dot", "spotted"],
    "checked": ["checked", "checkered", "plaid", "gingham"],
    "floral": ["floral", "flowery"],
    "graphic": ["graphic", "printed"],
    "camo": ["camo", "camouflage"],
}
PATTERN_WITH_PHRASES = {
    "plain": ["with no pattern"],
    "striped": ["with stripes"],
    "dotted": ["with dots", "with polka dots"],
    "checked": ["with checks", "with a check pattern"],
    "floral": ["with flowers", "with a flower pattern"],
    "graphic": ["with a graphic", "with a printed motif"],
    "camo": ["with a camouflage pattern"],
}
STYLE_NOUNS = {
    "tee": ["tee", "t-shirt", "short-sleeved top"],
    "sweater": ["sweater", "jumper", "long-sleeved top"],
    "vest": ["vest", "tank top", "sleeveless top"],
    "a-line": ["a-line dress", "a-line", "flared dress"],
    "sheath": ["sheath dress", "fitted dress", "pencil dress"],
    "skirt": ["skirt"],
    "trousers": ["trousers", "pants", "slacks"],
    "shorts": ["shorts"],
}
PLURAL_NOUNS = {"trousers", "pants", "slacks", "shorts"}
# A garment whose style the caption leaves out.
UNNAMED_STYLE_NOUN = "garment"
SHAPE_NOUNS = {
    "circle": ["circle", "disk"],
    "square": ["square"],
    "triangle": ["triangle"],
    "star": ["star"],
    "diamond": ["diamond", "rhombus"],
}
PREFIXES = [
    "",
    "",
    "a photo of ",
    "a photo of ",
    "a picture of ",
    "an image of ",
    "a drawing of ",
    "a close-up of ",
]
# How often a garment caption names each attribute; at least one is named.
MENTION_RATES = {"color": 0.85, "pattern": 0.6, "style": 0.7}
SYNONYM_RATE = 0.3  # Share of mentions that use a synonym, not the class name.


@dataclasses.dataclass(frozen=True)
class CaptionCorpusConfig:
    """How the corpus looks.

    Attributes:
        image_size: int, images are square (default 64, the tiny model's).
        shape_rate: share of examples that are a colored shape, not a
            garment (0.2).
        max_clutter: most clutter shapes per garment image (3).
        seed: int; example `i` of a split depends on `(seed, split, i)`.
    """

    image_size: int = 64
    shape_rate: float = 0.2
    max_clutter: int = 3
    seed: int = 0


@dataclasses.dataclass
class CaptionedImage:
    """One generated example.

    Attributes:
        image: uint8 `[image_size, image_size, 3]`, or `None` if not drawn.
        caption: str.
        attributes: what is drawn: `{"color", "pattern", "style"}` for a
            garment, `{"color", "shape"}` for a shape.
        mentions: `{attribute: value}` for the attributes the caption names
            (always the drawn value).
    """

    image: np.ndarray
    caption: str
    attributes: dict
    mentions: dict


class CaptionCorpus:
    """Generates the image-caption corpus.

    Args:
        config: `CaptionCorpusConfig`.

    Example:

    ```python
    corpus = CaptionCorpus(CaptionCorpusConfig(seed=0))
    corpus.example("train", 0).caption  # "a photo of a red striped skirt"
    raw_train = corpus.raw_split("train", 10000)  # tf.data, labels {}
    corpus.write("corpus/")  # {"train": "corpus/train.csv", ...}
    ```
    """

    def __init__(self, config=None):
        self.config = config or CaptionCorpusConfig()
        self._drawer = ProductDrawer(self.config.image_size, self.config.max_clutter)

    def example(self, split, index, draw=True):
        """Example `index` of `split`, drawn from its own seeded generator.

        `draw=False` skips the image (drawn last, so nothing else changes).
        """
        if split not in CORPUS_SPLIT_CODES:
            raise ValueError(
                f"Unknown caption corpus split {split!r}; expected one of "
                f"{sorted(CORPUS_SPLIT_CODES)}."
            )
        rng = np.random.default_rng(
            [self.config.seed, CORPUS_SPLIT_CODES[split], int(index)]
        )
        if rng.random() < self.config.shape_rate:
            attributes = {
                "color": choice(rng, sorted(COLORS)),
                "shape": choice(rng, sorted(SHAPE_NOUNS)),
            }
            caption, mentions = _shape_caption(rng, attributes)
            image = self._draw_shape(rng, attributes) if draw else None
        else:
            attributes = {
                "color": choice(rng, sorted(COLORS)),
                "pattern": choice(rng, PATTERNS),
                "style": choice(rng, sorted(STYLES)),
            }
            caption, mentions = _garment_caption(rng, attributes)
            # The benchmark's drawer, fed this corpus's own generator.
            image = self._drawer.draw(rng, attributes) if draw else None
        return CaptionedImage(image, caption, attributes, mentions)

    def raw_split(self, split, num_examples):
        """`num_examples` of `split` as a `tf.data.Dataset` of raw examples.

        Images are uint8 pixels; `labels` is empty (captions only).
        """

        def generate():
            for index in range(num_examples):
                example = self.example(split, index)
                yield {
                    "image": example.image,
                    "text": example.caption.encode("utf-8"),
                    "labels": {},
                    "id": f"caption_corpus/{split}/{index}".encode(),
                }

        return raw_split_from_generator(generate, (), PIXELS_IMAGE_SPEC)

    def write(self, output_dir, num_examples=None, image_format="png"):
        """Writes images and one CSV manifest per split.

        Layout: `images/<split>/<index>.<ext>` and `<split>.csv` with the
        columns `image` (relative path) and `text`.

        Returns:
            `{split: manifest path}`.
        """
        manifests = {}
        for split, count in dict(num_examples or DEFAULT_NUM_EXAMPLES).items():
            examples = (self.example(split, index) for index in range(count))
            manifests[split] = write_manifest(
                output_dir,
                split,
                ((example.image, [example.caption]) for example in examples),
                ["text"],
                image_format,
            )
        return manifests

    def _draw_shape(self, rng, attributes):
        size = self.config.image_size * 2  # Drawn at 2x, then box-filtered.
        fill = np.clip(
            np.asarray(COLORS[attributes["color"]], np.float32)
            + rng.uniform(-12, 12, 3),
            0,
            255,
        )
        # A background that contrasts with the shape: dark behind light fills.
        luminance = fill @ np.array([0.299, 0.587, 0.114], np.float32) / 255
        level = rng.uniform(20, 70) if luminance > 0.6 else rng.uniform(185, 250)
        background = np.clip(level + rng.uniform(-15, 15, 3), 0, 255)
        canvas = Image.new("RGB", (size, size), rgb(background))
        radius = size * rng.uniform(0.25, 0.4)
        center = size / 2 + rng.uniform(-0.08, 0.08, 2) * size
        points = _shape_polygon(
            attributes["shape"], center, radius, rng.uniform(-0.3, 0.3)
        )
        ImageDraw.Draw(canvas).polygon(points, fill=rgb(fill))
        return np.asarray(canvas.reduce(2), np.uint8)


def _phrase(rng, phrases):
    """The class name, or sometimes one of its synonyms."""
    if len(phrases) > 1 and rng.random() < SYNONYM_RATE:
        return choice(rng, phrases[1:])
    return phrases[0]


def _noun_phrase(rng, modifiers, noun):
    """`"a red striped skirt"`, `"red shorts"`, `"a pair of red shorts"`."""
    words = " ".join([*modifiers, noun])
    if noun.split(" ")[-1] in PLURAL_NOUNS:
        return words if rng.random() < 0.5 else f"a pair of {words}"
    return ("an " if words[0] in "aeiou" else "a ") + words


def _garment_caption(rng, attributes):
    named = {
        attribute: rng.random() < rate for attribute, rate in MENTION_RATES.items()
    }
    if not any(named.values()):
        named["color"] = True
    mentions = {a: attributes[a] for a, is_named in named.items() if is_named}
    color = pattern = None
    if "color" in mentions:
        color = _phrase(rng, COLOR_PHRASES[mentions["color"]])
    if "style" in mentions:
        noun = _phrase(rng, STYLE_NOUNS[mentions["style"]])
    else:
        noun = UNNAMED_STYLE_NOUN
    form = rng.random()
    if "pattern" in mentions and form < 0.25:  # "a red skirt with stripes"
        with_pattern = choice(rng, PATTERN_WITH_PHRASES[mentions["pattern"]])
        body = f"{_noun_phrase(rng, [color] if color else [], noun)} {with_pattern}"
    else:
        if "pattern" in mentions:
            pattern = _phrase(rng, PATTERN_ADJECTIVES[mentions["pattern"]])
        if form < 0.45 and color and pattern:  # "a striped skirt in red"
            body = f"{_noun_phrase(rng, [pattern], noun)} in {color}"
        elif form < 0.6:  # Keywords: "striped, red", "skirt, red".
            words = [w for w in (color, pattern) if w]
            if "style" in mentions:
                words.append(noun)
            return ", ".join(rng.permutation(words).tolist()), mentions
        else:  # "a red striped skirt", "a striped red skirt".
            modifiers = [w for w in (color, pattern) if w]
            if rng.random() < 0.3:
                modifiers.reverse()
            body = _noun_phrase(rng, modifiers, noun)
    return choice(rng, PREFIXES) + body, mentions


def _shape_caption(rng, attributes):
    mentions = dict(attributes)
    color = _phrase(rng, COLOR_PHRASES[attributes["color"]])
    noun = _phrase(rng, SHAPE_NOUNS[attributes["shape"]])
    form = rng.random()
    if form < 0.15:
        del mentions["color"]
        return choice(rng, PREFIXES) + _noun_phrase(rng, [], noun), mentions
    if form < 0.3:
        return f"{noun}, {color}", mentions
    if form < 0.45:
        return f"{_noun_phrase(rng, [], noun)} in {color}", mentions
    return choice(rng, PREFIXES) + _noun_phrase(rng, [color], noun), mentions


def _shape_polygon(shape, center, radius, angle):
    """The shape as polygon points around `center`, rotated by `angle`."""
    # (corners, radius of each corner in turn, start angle, width / height).
    corners, radii, start, aspect = {
        "circle": (48, [1.0], 0.0, 1.0),
        "square": (4, [1.0], math.pi / 4, 1.0),
        "diamond": (4, [1.0], 0.0, 0.6),  # A rhombus standing on a corner.
        "triangle": (3, [1.0], -math.pi / 2, 1.0),
        "star": (10, [1.0, 0.45], -math.pi / 2, 1.0),
    }[shape]
    points = []
    for k in range(corners):
        a = start + 2 * math.pi * k / corners
        x = radius * radii[k % len(radii)] * math.cos(a) * aspect
        y = radius * radii[k % len(radii)] * math.sin(a)
        points.append(
            (
                center[0] + x * math.cos(angle) - y * math.sin(angle),
                center[1] + x * math.sin(angle) + y * math.cos(angle),
            )
        )
    return points
