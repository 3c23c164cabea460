"""TFDS builder for Fashion-Gen (manual download).

Build it with

    python -m cmaclip_tf.datasets.tfds fashion_gen \\
        --manual_dir DIR --data_dir TFDS_DIR

(or `tfds build --imports cmaclip_tf.datasets.tfds fashion_gen ...` where
apache-beam is installed, which the `tfds` command needs to start)

where DIR holds `fashiongen_256_256_train.h5` and
`fashiongen_256_256_validation.h5`. Splits: `train`, `validation` (a
stratified sample of the train file by sub-category: 5,000 examples in the
`default` config, 20% in `val20`) and `test` (the validation file). Both
label columns are stored (`subcategory`, `category`), with class names from
the train split; the HDF5 files are streamed, never loaded whole. Images
are stored as PNG, so pixels equal the HDF5 file's.
"""

import numpy as np
import tensorflow_datasets as tfds

from cmaclip_tf.datasets import fashion_gen
from cmaclip_tf.datasets.bad_records import BadRecordCounter
from cmaclip_tf.datasets.label_vocabulary import LabelVocabularies
from cmaclip_tf.datasets.label_vocabulary import LabelVocabulary
from cmaclip_tf.datasets.tfds.builder_configs import ManualBuilder
from cmaclip_tf.datasets.tfds.builder_configs import split_configs

TASKS = tuple(fashion_gen.TASK_KEYS)


class FashionGen(ManualBuilder):
    """Fashion-Gen: product images and descriptions; 121 sub-categories."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = split_configs(fashion_gen.DEFAULT_VAL_SIZE, "from train")
    DEFAULT_TASKS = fashion_gen.DEFAULT_TASKS
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    Download the 256x256 HDF5 release of Fashion-Gen from
    {fashion_gen.SOURCE_URL} and put into `manual_dir`:
        {fashion_gen.TRAIN_FILE}
        {fashion_gen.VALIDATION_FILE}
    """

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "text": tfds.features.Text(),
                    # Names come from the train split (_split_generators).
                    **{task: tfds.features.ClassLabel() for task in TASKS},
                    "id": tfds.features.Text(),
                }
            ),
            homepage=fashion_gen.SOURCE_URL,
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        try:
            train_path, test_path = fashion_gen.fashion_gen_files(
                str(dl_manager.manual_dir)
            )
        except FileNotFoundError as error:
            raise FileNotFoundError(
                f"{error}\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            ) from None
        labels = fashion_gen.read_labels(train_path, TASKS)
        train_ids, val_ids = self.carve_validation(labels[TASKS[0]])
        vocabularies = {}
        for task in TASKS:
            vocabulary = LabelVocabulary.from_labels(
                np.asarray(labels[task], object)[train_ids]
            )
            self.info.features[task].names = vocabulary.names
            vocabularies[task] = vocabulary
        tasks = LabelVocabularies(vocabularies)
        test_ids = np.arange(fashion_gen.num_rows(test_path))
        self.info.metadata["bad_records"] = {}
        return {
            "train": self._generate_examples(
                train_path, train_ids, "train", tasks
            ),
            "validation": self._generate_examples(
                train_path, val_ids, "validation", tasks
            ),
            "test": self._generate_examples(test_path, test_ids, "test", tasks),
        }

    def _generate_examples(self, path, indices, split, tasks):
        counter = BadRecordCounter("skip")
        source = fashion_gen.FashionGenSource(
            path, indices, split, tasks, counter
        )
        for example in source.examples():
            key = example["id"].decode("utf-8")
            yield key, {
                "image": example["image"],
                "text": example["text"].decode("utf-8"),
                **{task: int(example["labels"][task]) for task in TASKS},
                "id": key,
            }
        self.info.metadata["bad_records"][split] = counter.records(split)
