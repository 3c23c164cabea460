"""`SplitConfig` (the validation split's size) and `ManualBuilder`, the
base of this project's manual-download TFDS builders."""

import dataclasses
import inspect

import tensorflow_datasets as tfds
from etils import epath

from cmaclip_tf.datasets.split_spec import SplitSpec


@dataclasses.dataclass
class SplitConfig(tfds.core.BuilderConfig):
    """A builder config naming the validation split's size.

    Attributes:
        val_size: examples in the stratified validation split.
        val_fraction: share of train instead (wins over `val_size`).
    """

    val_size: int = 5000
    val_fraction: float = None


def split_configs(default_val_size, source):
    """`default` (`default_val_size` stratified) and `val20` (20%) configs."""
    return [
        SplitConfig(
            name="default",
            val_size=default_val_size,
            description=f"Validation: {default_val_size:,} stratified ({source}).",
        ),
        SplitConfig(
            name="val20",
            val_fraction=0.2,
            description="Validation: 20% stratified (CMA-CLIP paper).",
        ),
    ]


class ManualBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A generator-based builder that reads `manual_dir`, never downloads."""

    def carve_validation(self, strata):
        """Stratified `(train_ids, validation_ids)` by the config's size."""
        spec = SplitSpec(
            seed=0,
            val_size=self.builder_config.val_size,
            val_fraction=self.builder_config.val_fraction,
        )
        train_ids, val_ids, _ = spec.carve_validation(strata)
        return train_ids, val_ids

    # tfds 4.9.10 resolves a packaged builder's source file through the
    # `importlib_resources` backport, which Python >= 3.9 does not install.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return epath.Path(inspect.getfile(cls))
