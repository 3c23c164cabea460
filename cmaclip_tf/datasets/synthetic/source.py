"""A generated split as a record source: `SyntheticSource`."""

import numpy as np

from cmaclip_tf.datasets.raw_examples import PIXELS_IMAGE_SPEC
from cmaclip_tf.datasets.raw_examples import examples_to_columns
from cmaclip_tf.datasets.raw_examples import indexed_dataset
from cmaclip_tf.datasets.raw_examples import raw_split_from_generator


class SyntheticSource:
    """Examples `0..num_examples-1` of a generated split, in any order.

    Example `i` depends only on `(seed, split, i)`, so any order is a
    permutation of the same examples. With `cache`, every example is drawn
    once (about 1 ms each) and kept as arrays; without, each read draws it.

    Args:
        products: `SyntheticProducts`.
        split: `"train"`, `"validation"` or `"test"`.
        num_examples: int.
        tasks: task names to label.
        cache: keep the drawn examples in memory.
    """

    def __init__(self, products, split, num_examples, tasks, cache=True):
        self.products = products
        self.split = split
        self.num_examples = int(num_examples)
        self.tasks = tuple(tasks)
        self.cache = cache
        self._columns = None

    def __len__(self):
        return self.num_examples

    def raw_example(self, index):
        """Example `index` in the raw format (numpy)."""
        example = self.products.example(self.split, index)
        return {
            "image": example.image,
            "text": example.title.encode("utf-8"),
            "labels": {
                task: np.int32(
                    self.products.tasks[task].lookup(example.labels[task])
                )
                for task in self.tasks
            },
            "id": f"synthetic/{self.split}/{index}".encode(),
        }

    def dataset(self, order=None):
        """The examples as raw examples, in `order` (default: 0, 1, ...)."""
        if self.cache:
            return indexed_dataset(self.columns(), order)
        positions = range(self.num_examples) if order is None else order
        return raw_split_from_generator(
            lambda: (self.raw_example(int(i)) for i in positions),
            self.tasks,
            PIXELS_IMAGE_SPEC,
        )

    def labels(self):
        """`{task: int array}` of every example, or `None` without the cache."""
        return self.columns()["labels"] if self.cache else None

    def columns(self):
        """Every example drawn once, as arrays (the cache)."""
        if self._columns is None:
            examples = [self.raw_example(i) for i in range(self.num_examples)]
            size = self.products.config.image_size
            self._columns = examples_to_columns(
                examples, self.tasks, np.zeros([0, size, size, 3], np.uint8)
            )
        return self._columns
