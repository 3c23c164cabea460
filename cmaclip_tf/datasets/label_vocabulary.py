"""Label vocabularies: class names to ids per task, built from training data.

Built once from the training split, saved with the run as JSON, and reused
for validation, test and export, so class ids never shift between them.
"""

import collections.abc
import json
import os

MISSING_LABEL = -1
VOCABULARIES_FILENAME = "label_vocabularies.json"


class LabelVocabulary:
    """The ordered class names of one task.

    Args:
        names: iterable of distinct, non-empty strings; id `i` is `names[i]`.

    Example:

    ```python
    colors = LabelVocabulary.from_labels(["red", "blue", "", "red"])
    colors.names  # ["blue", "red"]; empty means "no label"
    colors.index("red")  # 1
    ```
    """

    def __init__(self, names):
        self.names = [str(name) for name in names]
        self._ids = {name: i for i, name in enumerate(self.names)}
        if len(self._ids) != len(self.names):
            raise ValueError(f"Class names must be distinct: {self.names}")
        if "" in self._ids:
            raise ValueError("An empty class name means 'no label'; drop it.")

    @classmethod
    def from_labels(cls, labels):
        """Sorted distinct labels, skipping empty ones (missing labels)."""
        return cls(
            sorted({str(label) for label in labels if label not in ("", None)})
        )

    def __len__(self):
        return len(self.names)

    def __contains__(self, name):
        return name in self._ids

    def __eq__(self, other):
        return isinstance(other, LabelVocabulary) and self.names == other.names

    def __repr__(self):
        return f"LabelVocabulary({self.names!r})"

    @property
    def num_classes(self):
        return len(self.names)

    def index(self, name):
        """The id of `name`; raises `KeyError` for an unknown class."""
        return self._ids[name]

    def lookup(self, name):
        """The id of `name`, `MISSING_LABEL` for an empty or `None` label.

        Raises:
            KeyError: for a class name outside the vocabulary.
        """
        if name is None or name == "":
            return MISSING_LABEL
        return self._ids[str(name)]

    def name(self, index):
        return self.names[index]


class LabelVocabularies(collections.abc.Mapping):
    """Task name to `LabelVocabulary`, in task order; saved as one JSON file.

    Example:

    ```python
    tasks = LabelVocabularies({"color": ["blue", "red"], "style": ["a-line"]})
    tasks.save(run_dir)
    LabelVocabularies.load(run_dir) == tasks  # True
    ```
    """

    def __init__(self, tasks):
        self._tasks = {
            str(task): (
                vocabulary
                if isinstance(vocabulary, LabelVocabulary)
                else LabelVocabulary(vocabulary)
            )
            for task, vocabulary in dict(tasks).items()
        }

    def __getitem__(self, task):
        return self._tasks[task]

    def __iter__(self):
        return iter(self._tasks)

    def __len__(self):
        return len(self._tasks)

    def __eq__(self, other):
        return isinstance(other, collections.abc.Mapping) and list(
            self.items()
        ) == list(other.items())

    def __repr__(self):
        return f"LabelVocabularies({self.to_json()!r})"

    @property
    def num_classes(self):
        """Task name to number of classes."""
        return {task: len(vocabulary) for task, vocabulary in self.items()}

    def to_json(self):
        return {"tasks": {task: v.names for task, v in self.items()}}

    @classmethod
    def from_json(cls, data):
        return cls(data["tasks"])

    def save(self, directory):
        """Writes `label_vocabularies.json` into `directory`; returns it."""
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, VOCABULARIES_FILENAME)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, indent=2, ensure_ascii=False)
        return path

    @classmethod
    def load(cls, directory_or_file):
        """Reads what `save` wrote (a directory or the JSON file itself)."""
        path = directory_or_file
        if os.path.isdir(path):
            path = os.path.join(path, VOCABULARIES_FILENAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"No label vocabularies at {path}; a training run saves them "
                f"as {VOCABULARIES_FILENAME} in its output folder."
            )
        with open(path, encoding="utf-8") as f:
            return cls.from_json(json.load(f))
