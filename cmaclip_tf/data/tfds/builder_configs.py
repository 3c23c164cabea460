"""`SplitConfig` (the validation split's size) and `ManualBuilder`, the
base of this project's manual-download TFDS builders."""

import dataclasses
import inspect

import tensorflow_datasets as tfds
from etils import epath


@dataclasses.dataclass
class SplitConfig(tfds.core.BuilderConfig):
    """A builder config naming the validation split's size.

    Attributes:
        val_size: examples in the stratified validation split.
        val_fraction: share of train instead (wins over `val_size`).
    """

    val_size: int = 5000
    val_fraction: float = None


class ManualBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A generator-based builder that reads `manual_dir`, never downloads."""

    # tfds 4.9.10 resolves a packaged builder's source file through the
    # `importlib_resources` backport, which Python >= 3.9 does not install.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return epath.Path(inspect.getfile(cls))
