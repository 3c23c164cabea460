"""Datasets as raw splits of checked records, one file per dataset.

- `load_dataset(name, ...)`: `synthetic`, `manifest`, `food101`,
  `fashion_gen`, or a built TFDS dataset (`tfds:upmc_food101`); returns a
  `MultiTaskDataset` with label vocabularies, record sources per split and
  bad-record counts.
- `cmaclip_tf.preprocessing.input_pipeline.make_batches` turns a raw split into batches.

The dataset kinds are the modules here (`manifest`, `food101`, `fashion_gen`,
`tfds_source`, `synthetic_dataset`, `caption_corpus_dataset`); the project's
own data generator is the `synthetic/` subpackage.
"""

from cmaclip_tf.datasets.bad_records import BAD_RECORD_POLICIES
from cmaclip_tf.datasets.bad_records import BadRecordCounter
from cmaclip_tf.datasets.bad_records import BadRecordError
from cmaclip_tf.datasets.label_vocabulary import MISSING_LABEL
from cmaclip_tf.datasets.label_vocabulary import LabelVocabularies
from cmaclip_tf.datasets.label_vocabulary import LabelVocabulary
from cmaclip_tf.datasets.multitask_dataset import SPLITS
from cmaclip_tf.datasets.multitask_dataset import MultiTaskDataset
from cmaclip_tf.datasets.registry import available_datasets
from cmaclip_tf.datasets.registry import load_dataset
from cmaclip_tf.datasets.synthetic.products import SyntheticProducts
from cmaclip_tf.datasets.synthetic.products import SyntheticProductsConfig
