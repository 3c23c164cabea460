"""`SplitSpec`: how every dataset's splits are sized and cut, in one place."""

import dataclasses
import math

from cmaclip_tf.datasets.multitask_dataset import SPLITS
from cmaclip_tf.datasets.stratified_split import default_validation_count
from cmaclip_tf.datasets.stratified_split import stratified_split
from cmaclip_tf.datasets.stratified_split import validation_count


@dataclasses.dataclass(frozen=True)
class SplitSpec:
    """The split flags every dataset shares.

    Attributes:
        seed: seeds generated data and the validation split.
        num_examples: int or `{split: int}`. For generated data, how many to
            make; for files, a cap on each split (its first N), for smoke
            runs. An int `n` means `n` for train and `ceil(0.15 n)` for
            validation and test.
        val_size: validation examples carved out of train, where a dataset
            has no validation split of its own.
        val_fraction: share of train for validation instead (the paper's
            0.2); wins over `val_size`.
    """

    seed: int = 0
    num_examples: object = None
    val_size: int = None
    val_fraction: float = None

    def sizes(self, defaults=None):
        """`{split: size or None}`: `num_examples` over `defaults`."""
        sizes = dict(defaults) if defaults else {s: None for s in SPLITS}
        if self.num_examples is None:
            return sizes
        if isinstance(self.num_examples, int):
            small = int(math.ceil(0.15 * self.num_examples))
            return {"train": self.num_examples, "validation": small, "test": small}
        unknown = set(self.num_examples) - set(SPLITS)
        if unknown:
            raise ValueError(f"num_examples has unknown splits {sorted(unknown)}.")
        sizes.update(self.num_examples)
        return sizes

    def carve_validation(self, strata, default_size=None, default_fraction=None):
        """Stratified `(train_ids, validation_ids, notes)` of train's rows.

        Args:
            strata: one label (any hashable) per training row; validation
                keeps each stratum's share.
            default_size: the validation size when neither `val_size` nor
                `val_fraction` is set (Food-101, Fashion-Gen: 5,000), made
                smaller for a small split, with a note saying so.
            default_fraction: or a default share instead (manifests).
        """
        num_rows = len(strata)
        notes = []
        if self.val_size is None and self.val_fraction is None:
            if default_fraction is not None:
                count = validation_count(num_rows, None, default_fraction)
            else:
                count, note = default_validation_count(num_rows, default_size)
                notes = [note] if note else []
        else:
            count = validation_count(num_rows, self.val_size, self.val_fraction)
        train_ids, validation_ids = stratified_split(strata, count, self.seed)
        return train_ids, validation_ids, notes
