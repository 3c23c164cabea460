"""The `caption_corpus` dataset: the generated image-caption corpus, no labels.

For contrastive pretraining (`trainers/pretrain.py --dataset caption_corpus`):
train and validation are `CaptionCorpus` splits (seed streams the attribute
benchmark never uses), test is empty, and there are no tasks to classify.
"""

import numpy as np

from cmaclip_tf.datasets.dataset_builder import DatasetBuilder
from cmaclip_tf.datasets.label_vocabulary import LabelVocabularies
from cmaclip_tf.datasets.multitask_dataset import MultiTaskDataset
from cmaclip_tf.datasets.raw_examples import examples_to_columns
from cmaclip_tf.datasets.raw_examples import indexed_dataset
from cmaclip_tf.datasets.synthetic.caption_corpus import DEFAULT_NUM_EXAMPLES
from cmaclip_tf.datasets.synthetic.caption_corpus import CaptionCorpus
from cmaclip_tf.datasets.synthetic.caption_corpus import CaptionCorpusConfig


class CaptionCorpusSource:
    """Examples `0..num_examples-1` of a corpus split, drawn once, in any order.

    Args:
        corpus: `CaptionCorpus`.
        split: `"train"` or `"validation"`.
        num_examples: int.
    """

    def __init__(self, corpus, split, num_examples):
        self.corpus = corpus
        self.split = split
        self.num_examples = int(num_examples)
        self._columns = None

    def __len__(self):
        return self.num_examples

    def dataset(self, order=None):
        """The examples as raw examples (labels `{}`), in `order`."""
        return indexed_dataset(self.columns(), order)

    def columns(self):
        """Every example drawn once (about 1 ms each), as arrays."""
        if self._columns is None:
            examples = []
            for index in range(self.num_examples):
                example = self.corpus.example(self.split, index)
                examples.append({
                    "image": example.image,
                    "text": example.caption.encode("utf-8"),
                    "labels": {},
                    "id": f"caption_corpus/{self.split}/{index}".encode(),
                })
            size = self.corpus.config.image_size
            self._columns = examples_to_columns(
                examples, (), np.zeros([0, size, size, 3], np.uint8)
            )
        return self._columns


class CaptionCorpusDataset(DatasetBuilder):
    """Generated image-caption pairs: `build(image_size=64)`.

    Sizes come from the spec's `num_examples` (default 10,000 train and
    1,000 validation; an int `n` gives `n` and `ceil(0.15 n)`); the seed
    is the spec's. It has no labels: ask for no tasks (`tasks=()`).
    """

    name = "caption_corpus"

    def build(self, image_size=64, **_):
        if self.tasks is None or self.tasks:
            raise ValueError(
                "The caption corpus has captions only, no labels to classify; "
                "pretrain CLIP on it with trainers/pretrain.py --dataset "
                "caption_corpus."
            )
        corpus = CaptionCorpus(
            CaptionCorpusConfig(image_size=image_size, seed=self.spec.seed)
        )
        sizes = self.spec.sizes({**DEFAULT_NUM_EXAMPLES, "test": 0})
        sources = {
            split: CaptionCorpusSource(corpus, split, sizes[split])
            for split in DEFAULT_NUM_EXAMPLES
        }
        sources["test"] = CaptionCorpusSource(corpus, "validation", 0)
        return MultiTaskDataset(
            self.name, LabelVocabularies({}), sources, self.counter,
            description="Generated image-caption pairs (no labels)",
        )
