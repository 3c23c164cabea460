"""The `synthetic` dataset: generated products as record sources."""

import dataclasses

from cmaclip_tf.datasets.dataset_builder import DatasetBuilder
from cmaclip_tf.datasets.label_vocabulary import LabelVocabularies
from cmaclip_tf.datasets.multitask_dataset import SPLITS
from cmaclip_tf.datasets.multitask_dataset import MultiTaskDataset
from cmaclip_tf.datasets.synthetic.products import DEFAULT_NUM_EXAMPLES
from cmaclip_tf.datasets.synthetic.products import SyntheticProducts
from cmaclip_tf.datasets.synthetic.products import SyntheticProductsConfig
from cmaclip_tf.datasets.synthetic.source import SyntheticSource


class SyntheticDataset(DatasetBuilder):
    """Generated products: `build(image_size=64, synthetic_config=None,
    cache=True)`; sizes from the spec's `num_examples` (2000/300/300)."""

    name = "synthetic"

    def build(self, image_size=64, synthetic_config=None, cache=None, **_):
        config = dataclasses.replace(
            synthetic_config or SyntheticProductsConfig(),
            seed=self.spec.seed, image_size=image_size,
        )
        products = SyntheticProducts(config)
        tasks = list(self.tasks or products.tasks)
        unknown = [t for t in tasks if t not in products.tasks]
        if unknown:
            raise ValueError(
                f"The synthetic dataset has no task {unknown}; it has "
                f"{list(products.tasks)}."
            )
        vocabularies = LabelVocabularies({t: products.tasks[t] for t in tasks})
        self.check_same_vocabularies(vocabularies)
        sizes = self.spec.sizes(DEFAULT_NUM_EXAMPLES)
        cache = True if cache is None else cache
        sources = {
            split: SyntheticSource(products, split, sizes[split], tasks, cache)
            for split in SPLITS
        }
        return MultiTaskDataset(
            self.name, vocabularies, sources, self.counter,
            description="Generated product attributes (color, pattern, style)",
        )
