"""Datasets and input pipelines; one preprocessing for training and serving.

- `TextPreprocessor`, `ImagePreprocessor`: CLIP's tokenization and image
  transform as TF graphs (core TF and TensorFlow Text ops only).
- `load_dataset(name, ...)`: `synthetic`, `manifest`, `food101`,
  `fashion_gen`, or a built TFDS dataset (`tfds:upmc_food101`); returns a
  `MultiTaskDataset` with label vocabularies, raw splits and bad-record
  counts.
- `make_batches(raw_split, ...)`: raw split to `(features, labels)` batches.
"""

from cmaclip_tf.data.bad_records import BAD_RECORD_POLICIES
from cmaclip_tf.data.bad_records import BadRecordCounter
from cmaclip_tf.data.bad_records import BadRecordError
from cmaclip_tf.data.dataset_registry import available_datasets
from cmaclip_tf.data.dataset_registry import load_dataset
from cmaclip_tf.data.image_preprocessor import CLIP_MEAN
from cmaclip_tf.data.image_preprocessor import CLIP_STD
from cmaclip_tf.data.image_preprocessor import ImagePreprocessor
from cmaclip_tf.data.image_validator import ImageValidator
from cmaclip_tf.data.input_pipeline import make_batches
from cmaclip_tf.data.input_pipeline import epoch_permutation
from cmaclip_tf.data.label_vocabulary import MISSING_LABEL
from cmaclip_tf.data.label_vocabulary import LabelVocabularies
from cmaclip_tf.data.label_vocabulary import LabelVocabulary
from cmaclip_tf.data.multitask_dataset import SPLITS
from cmaclip_tf.data.multitask_dataset import MultiTaskDataset
from cmaclip_tf.data.synthetic_products import SyntheticProducts
from cmaclip_tf.data.synthetic_products import SyntheticProductsConfig
from cmaclip_tf.data.text_preprocessor import TextPreprocessor
