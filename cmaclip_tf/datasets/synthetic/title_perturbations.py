"""Test-time perturbations of titles and images: the paper's Table 5 as a measurement.

Four conditions of a raw split (see `PERTURBATIONS`):

- `as_is`: unchanged;
- `no_attribute_words`: every attribute word (any class of any task, and its
  synonyms) removed from the title, with the connector that introduced it
  ("Tee with Polka Dot" -> "Tee", "Dress, Red" -> "Dress");
- `correct_attribute_words`: the same removal, then the correct word of every
  labelled task put in front of the title ("Red Striped T-shirt Acme Casual"),
  so the text names exactly the true values (no wrong mentions are left);
- `noise_image`: the title unchanged, the image replaced by uniform noise.

Removing words makes the text uninformative, so modality attention should move
its weight λ towards the image; noise images should move it towards the text.
"""

import re

import numpy as np
import tensorflow as tf

from cmaclip_tf.datasets.raw_examples import raw_example_spec
from cmaclip_tf.datasets.synthetic import vocabulary

PERTURBATIONS = (
    "as_is",
    "no_attribute_words",
    "correct_attribute_words",
    "noise_image",
)
# Words that only introduce an attribute word ("with stripes", "in red", "- red").
_CONNECTOR = r"(?:\s*,|\s*-|\s+in|\s+with)?"
# Encoded-image datasets get noise images of this size (preprocessing resizes).
NOISE_IMAGE_SIZE = 256


def attribute_words(label_vocabularies, dataset=None):
    """Per task and class, the words a title may name the class with.

    Every class name is a word (also with `_` read as a space, "apple_pie" ->
    "apple pie"); for the generated `synthetic` dataset, so is every synonym its
    title templates use ("gray", "polka dot", "sheath dress"). The first word of
    each class is the one `add_attribute_words` writes.

    Args:
        label_vocabularies: `{task: class names}` (or `LabelVocabularies`).
        dataset: the dataset's name; `"synthetic"` adds the generator's words.

    Returns:
        `{task: {class name: [words]}}`.
    """
    generated = {}
    if dataset == "synthetic":
        generated = {
            "color": vocabulary.COLOR_WORDS,
            "pattern": vocabulary.PATTERN_WORDS,
            "style": vocabulary.STYLE_WORDS,
        }
    words = {}
    for task, names in label_vocabularies.items():
        names = list(getattr(names, "names", names))
        words[task] = {}
        for name in names:
            options = list(generated.get(task, {}).get(name, []))
            for variant in (name, name.replace("_", " ")):
                if variant not in options:
                    options.append(variant)
            words[task][name] = options
    return words


class TitlePerturbation:
    """Removes attribute words from titles, or replaces them with the true ones.

    Args:
        words: `{task: {class name: [words]}}`, as `attribute_words` returns.

    Example:

    ```python
    perturb = TitlePerturbation(attribute_words(
        {"color": ["red", "blue"], "pattern": ["plain", "striped"]}))
    perturb.remove("Acme Red Tee with Stripes")  # "Acme Tee"
    perturb.add("Acme Tee", {"color": "blue", "pattern": "plain"})
    # "blue plain Acme Tee"
    ```
    """

    def __init__(self, words):
        self.words = {
            task: {name: list(options) for name, options in classes.items()}
            for task, classes in words.items()
        }
        phrases = {
            option.lower()
            for classes in self.words.values()
            for options in classes.values()
            for option in options
        }
        # Whole words only: "check" must not match inside "checked", nor
        # "red" inside "off-red".
        self._pattern = re.compile(
            rf"{_CONNECTOR}\s*{_whole_words(phrases)}", re.IGNORECASE
        )
        self._task_patterns = {
            task: re.compile(
                _whole_words(o.lower() for v in classes.values() for o in v),
                re.IGNORECASE,
            )
            for task, classes in self.words.items()
        }

    def names_task(self, title, task):
        """Whether `title` names any class of `task` (right or wrong)."""
        return self._task_patterns[task].search(title) is not None

    def remove(self, title):
        """The title without any attribute word."""
        title = self._pattern.sub(" ", title)
        title = re.sub(r"\s+", " ", title)
        # Commas left with a space before them, doubled, or first
        # ("Red, Size M" -> ", Size M").
        title = re.sub(r"\s+,", ",", title)
        title = re.sub(r",(\s*,)+", ",", title)
        return title.strip(" ,-")

    def add(self, title, values):
        """The title with the first word of each `{task: class name}` in front.

        In front, not at the end, so that the packed text never truncates them.
        Tasks with a `None` value (no label) add nothing.
        """
        added = [
            self.words[task][value][0]
            for task, value in values.items()
            if value is not None
        ]
        return " ".join(added + ([title] if title else []))

    def correct(self, title, values):
        """Attribute words removed, then the correct ones added."""
        return self.add(self.remove(title), values)


def _whole_words(phrases):
    """A regex matching any of `phrases` as whole words, longest first."""
    phrases = sorted({p for p in phrases if p.strip()}, key=lambda p: (-len(p), p))
    alternatives = "|".join(re.escape(p) for p in phrases)
    return rf"(?<![\w-])(?:{alternatives})(?![\w-])"


def noise_image(shape, seed):
    """Uniform uint8 noise of `shape`, the same for the same `seed`."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def perturb_split(raw_split, condition, label_vocabularies, words, seed=0):
    """A raw split under one of `PERTURBATIONS`.

    Args:
        raw_split: `tf.data.Dataset` of raw examples (see `raw_examples`).
        condition: one of `PERTURBATIONS`.
        label_vocabularies: `{task: class names}` in id order, to name the
            correct class of each example.
        words: `{task: {class name: [words]}}` from `attribute_words`.
        seed: seeds the noise images (example `i` gets `(seed, i)`).

    Returns:
        `tf.data.Dataset` of raw examples with the same element spec.
    """
    if condition not in PERTURBATIONS:
        raise ValueError(
            f"Unknown condition {condition!r}; expected one of {PERTURBATIONS}."
        )
    if condition == "as_is":
        return raw_split
    tasks = list(raw_split.element_spec["labels"])
    image_spec = raw_split.element_spec["image"]
    names = {
        task: list(getattr(v, "names", v)) for task, v in label_vocabularies.items()
    }
    perturbation = TitlePerturbation(words)

    def generate():
        for index, example in enumerate(raw_split.as_numpy_iterator()):
            example = dict(example)
            if condition == "noise_image":
                example["image"] = _noise_like(example["image"], image_spec, (seed, index))
            else:
                title = example["text"].decode("utf-8")
                if condition == "no_attribute_words":
                    title = perturbation.remove(title)
                else:
                    values = {
                        task: (
                            names[task][int(example["labels"][task])]
                            if int(example["labels"][task]) >= 0
                            else None
                        )
                        for task in tasks
                    }
                    title = perturbation.correct(title, values)
                example["text"] = title.encode("utf-8")
            yield example

    return tf.data.Dataset.from_generator(
        generate, output_signature=raw_example_spec(tasks, image_spec)
    )


def _noise_like(image, image_spec, seed):
    if image_spec.dtype == tf.uint8:
        return noise_image(np.shape(image), seed)
    pixels = noise_image((NOISE_IMAGE_SIZE, NOISE_IMAGE_SIZE, 3), seed)
    return tf.io.encode_png(pixels).numpy()
