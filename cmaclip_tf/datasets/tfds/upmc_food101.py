"""TFDS builder for UPMC Food-101 (manual download).

Build it with

    python -m cmaclip_tf.datasets.tfds upmc_food101 \\
        --manual_dir DIR --data_dir TFDS_DIR

(or `tfds build --imports cmaclip_tf.datasets.tfds upmc_food101 ...` where
apache-beam is installed, which the `tfds` command needs to start)

where DIR holds the distributed `images/` and `texts/` folders. Splits:
`train`, `validation` (a stratified sample of the distributed train split:
5,000 examples in the `default` config, 20% in `val20`) and `test`. Bad
records (corrupt or missing images, text that is not UTF-8, unknown classes)
are skipped and listed in the dataset's metadata, so readers can report them.
"""

import tensorflow_datasets as tfds

from cmaclip_tf.datasets import food101
from cmaclip_tf.datasets.bad_records import BadRecordCounter
from cmaclip_tf.datasets.file_records import FileRecordSource
from cmaclip_tf.datasets.label_vocabulary import LabelVocabularies
from cmaclip_tf.datasets.tfds.builder_configs import ManualBuilder
from cmaclip_tf.datasets.tfds.builder_configs import split_configs


def food101_class_names():
    """The 101 class names, sorted as the raw-file reader's vocabulary."""
    path = tfds.core.tfds_path("image_classification/food-101_classes.txt")
    return sorted(path.read_text().split())


class UpmcFood101(ManualBuilder):
    """UPMC Food-101: recipe web pages' images and titles, 101 classes."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = split_configs(food101.DEFAULT_VAL_SIZE, "MMBT")
    DEFAULT_TASKS = (food101.TASK,)
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    Download UPMC Food-101 from {food101.SOURCE_URL} and unpack it into
    `manual_dir` so that it holds:
        images/train/<class>/<file>.jpg
        images/test/<class>/<file>.jpg
        texts/train_titles.csv
        texts/test_titles.csv
    """

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(),
                    "text": tfds.features.Text(),
                    food101.TASK: tfds.features.ClassLabel(
                        names=food101_class_names()
                    ),
                    "id": tfds.features.Text(),
                }
            ),
            homepage=food101.SOURCE_URL,
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        data_dir = str(dl_manager.manual_dir)
        try:
            food101.check_layout(data_dir)
        except FileNotFoundError as error:
            raise FileNotFoundError(
                f"{error}\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            ) from None
        train = food101.read_food101_split(data_dir, "train")
        test = food101.read_food101_split(data_dir, "test")
        train_ids, val_ids = self.carve_validation(
            [r.labels.get(food101.TASK, "") for r in train]
        )
        self.info.metadata["bad_records"] = {}
        return {
            "train": self._generate_examples(
                [train[i] for i in train_ids], "train"
            ),
            "validation": self._generate_examples(
                [train[i] for i in val_ids], "validation"
            ),
            "test": self._generate_examples(test, "test"),
        }

    def _generate_examples(self, records, split):
        tasks = LabelVocabularies({food101.TASK: food101_class_names()})
        counter = BadRecordCounter("skip")
        for example in FileRecordSource(records, split, tasks, counter).examples():
            key = example["id"].decode("utf-8")
            yield key, {
                "image": example["image"],
                "text": example["text"].decode("utf-8"),
                food101.TASK: int(example["labels"][food101.TASK]),
                "id": key,
            }
        self.info.metadata["bad_records"][split] = counter.records(split)
