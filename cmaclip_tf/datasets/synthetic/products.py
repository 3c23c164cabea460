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

import dataclasses

import numpy as np

from cmaclip_tf.datasets.label_vocabulary import LabelVocabularies
from cmaclip_tf.datasets.manifest_writer import write_manifest
from cmaclip_tf.datasets.synthetic.drawing import ProductDrawer
from cmaclip_tf.datasets.synthetic.source import SyntheticSource
from cmaclip_tf.datasets.synthetic.vocabulary import AUDIENCES
from cmaclip_tf.datasets.synthetic.vocabulary import BRANDS
from cmaclip_tf.datasets.synthetic.vocabulary import COLORS
from cmaclip_tf.datasets.synthetic.vocabulary import COLOR_WORDS
from cmaclip_tf.datasets.synthetic.vocabulary import COMPANION_LINKS
from cmaclip_tf.datasets.synthetic.vocabulary import COMPANION_PRODUCTS
from cmaclip_tf.datasets.synthetic.vocabulary import FILLERS
from cmaclip_tf.datasets.synthetic.vocabulary import GENERIC_NOUNS
from cmaclip_tf.datasets.synthetic.vocabulary import PATTERNS
from cmaclip_tf.datasets.synthetic.vocabulary import PATTERN_WORDS
from cmaclip_tf.datasets.synthetic.vocabulary import SIZES
from cmaclip_tf.datasets.synthetic.vocabulary import STYLES
from cmaclip_tf.datasets.synthetic.vocabulary import STYLE_WORDS
from cmaclip_tf.datasets.synthetic.vocabulary import TASKS
from cmaclip_tf.datasets.synthetic.vocabulary import choice
from cmaclip_tf.datasets.synthetic.vocabulary import class_names

SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}
DEFAULT_NUM_EXAMPLES = {"train": 2000, "validation": 300, "test": 300}
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
        self.drawer = ProductDrawer(self.config.image_size, self.config.max_clutter)

    def example(self, split, index, draw=True):
        """Example `index` of `split`, drawn from its own seeded generator.

        `draw=False` skips the image (drawn last, so nothing else changes).
        """
        key = [self.config.seed, SPLIT_CODES[split], int(index)]
        rng = np.random.default_rng(key)
        noise = _NoiseDraws(np.random.default_rng(key + [_NOISE_STREAM]))
        attributes = {
            "color": choice(rng, sorted(COLORS)),
            "pattern": choice(rng, PATTERNS),
            "style": choice(rng, sorted(STYLES)),
        }
        mentions = {}
        for task in TASKS:
            mentions[task] = None
            if rng.random() < self.config.mention_rate(task):
                value = attributes[task]
                if rng.random() < self.config.wrong_mention_rate:
                    others = [c for c in class_names()[task] if c != value]
                    value = choice(rng, others)
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
        image = self.drawer.draw(rng, shown) if draw else None
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
        return SyntheticSource(self, split, num_examples, tasks, cache=False).dataset()

    def write(self, output_dir, num_examples=None, image_format="png"):
        """Writes images and one CSV manifest per split.

        Layout: `images/<split>/<index>.<ext>` and `<split>.csv` with columns
        `image` (relative path), `text`, `color`, `pattern`, `style` (empty
        where the label is withheld).

        Returns:
            `{split: manifest path}`.
        """
        manifests = {}
        for split, count in dict(num_examples or DEFAULT_NUM_EXAMPLES).items():
            examples = (self.example(split, i) for i in range(count))
            rows = (
                (e.image, [e.title] + [e.labels[t] or "" for t in TASKS])
                for e in examples
            )
            manifests[split] = write_manifest(
                output_dir, split, rows, ["text", *TASKS], image_format
            )
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
            words.append(choice(rng, BRANDS))
        if rng.random() < 0.6:
            words.append(choice(rng, AUDIENCES))
        words += [choice(rng, FILLERS) for _ in range(rng.integers(0, 4))]
        color = pattern = None
        if mentions["color"] is not None:
            color = choice(rng, COLOR_WORDS[mentions["color"]])
        if mentions["pattern"] is not None:
            pattern = choice(rng, PATTERN_WORDS[mentions["pattern"]])
        if mentions["style"] is not None:
            noun = choice(rng, STYLE_WORDS[mentions["style"]])
        else:
            noun = choice(rng, GENERIC_NOUNS)
        color_after = color is not None and rng.random() < 0.35
        pattern_first = pattern is not None and rng.random() < 0.7
        if misleading["color"] is not None:
            color = None
        if misleading["pattern"] is not None:
            pattern = None
        if misleading["style"] is not None:
            noun = choice(noise_rng, GENERIC_NOUNS)
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
            suffix = choice(rng, [f", {color}", f" in {color}", f" - {color}"])
            title += suffix if color is not None else ""
        if any(value is not None for value in misleading.values()):
            title += _companion_phrase(noise_rng, misleading)
        if rng.random() < 0.3:
            title += f", {choice(rng, SIZES)}"
        if rng.random() < 0.1:
            title += f" {int(rng.integers(1, 4))}-pack"
        case = rng.random()
        if case < 0.6:
            title = " ".join(w[:1].upper() + w[1:] for w in title.split(" "))
        elif case < 0.7:
            title = title.upper()
        return title

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
    words = [choice(rng, COMPANION_LINKS)]
    if misleading["color"] is not None:
        words.append(choice(rng, COLOR_WORDS[misleading["color"]]))
    if misleading["pattern"] is not None:
        words.append(choice(rng, PATTERN_WORDS[misleading["pattern"]]))
    if misleading["style"] is not None:
        words.append(choice(rng, STYLE_WORDS[misleading["style"]]))
    else:
        words.append(choice(rng, COMPANION_PRODUCTS))
    return choice(rng, [", ", " - ", " "]) + " ".join(words)
