"""Training-only image augmentation with Keras's own layers, reproducible
from the run's seed.

Keras's augmentation layers draw from a stateful `SeedGenerator`, whose
draws inside a parallel `tf.data` map depend on thread timing and restart
from the layer's seed, not from where a resumed run left off. Every Keras
random op takes its seed through `draw_seed`, which asks a `SeedGenerator`
for `next()`; `ExampleSeeds` is one that answers with stateless seeds made
of (run seed, epoch, example position), so the same Keras layers draw the
same transformation for an example whatever thread, batch or restart it
comes in.

Kinds:
- `"crop"`: a random resized crop: `keras.layers.RandomZoom` zooming in by
  up to 40% of the side (36% to 100% of the area), then
  `keras.layers.RandomTranslation` by up to 10% (reflected at the edges).
- `"randaugment"`: `keras.layers.RandAugment` (2 ops, factor 0.5; Keras
  picks its ops per call, here per example).
- `"crop+randaugment"`: both, crop first.

They act on CLIP's square crop in pixel values [0, 255] (float), before
CLIP's normalization (`ImagePreprocessor.crop_pixels`, then
`normalize`); evaluation and export never augment.
"""

import keras
import tensorflow as tf
from keras.src.random.seed_generator import SeedGenerator

AUGMENTATIONS = ("crop", "randaugment", "crop+randaugment")
# Zoom in by up to 40% of the side; shift by up to 10%.
ZOOM_IN = 0.4
TRANSLATION = 0.1


class ExampleSeeds(SeedGenerator):
    """A `SeedGenerator` of stateless seeds: draw `k` gets `[key, base + k]`.

    Holds no variable, so it can live inside a `tf.data` function; each
    Keras random op that draws from it gets a different, reproducible seed.

    Args:
        key: int32 scalar tensor, e.g. the run seed mixed with the epoch.
        base: int32 scalar tensor, e.g. the example's position times the
            number of draws per example.
    """

    def __init__(self, key, base):  # No super(): no state variable.
        self._key = tf.cast(key, tf.int32)
        self._base = tf.cast(base, tf.int32)
        self._draws = 0

    def next(self, ordered=True):
        del ordered
        seed = tf.stack([self._key, self._base + self._draws])
        self._draws += 1
        return seed


class SeededRandAugment(keras.layers.RandAugment):
    """`keras.layers.RandAugment` whose `get_random_transformation` uses the
    `seed` it is given (Keras's draws from the layer's own generator)."""

    def get_random_transformation(self, data, training=True, seed=None):
        if seed is None or not training:
            return super().get_random_transformation(data, training, seed)
        layer_indices = self.backend.random.randint(
            (self.num_ops,), 0, len(self._AUGMENT_LAYERS), seed=seed
        )
        transforms = {
            name: getattr(self, name).get_random_transformation(
                data, training=training, seed=seed
            )
            for name in self._AUGMENT_LAYERS
        }
        return {"transforms": transforms, "layer_idxes": layer_indices}


class ImageAugmentation:
    """A training augmentation of one kind, seeded per example.

    Args:
        kind: one of `AUGMENTATIONS`.
        seed: int. The run's seed.

    Example:
    ```python
    augmentation = ImageAugmentation("crop+randaugment", seed=0)
    augment = augmentation.for_epoch(epoch=3)
    image = augment(pixels, position)  # float [H, W, 3] in [0, 255]
    ```
    """

    # Room for every Keras random draw of one example (RandAugment's eleven
    # layers draw a few each).
    DRAWS_PER_EXAMPLE = 256

    def __init__(self, kind, seed=0):
        if kind not in AUGMENTATIONS:
            raise ValueError(
                f"Unknown augmentation {kind!r}; expected one of {AUGMENTATIONS} "
                "or none."
            )
        self.kind = kind
        self.seed = int(seed)
        self.layers = []
        if "crop" in kind.split("+"):
            self.layers += [
                keras.layers.RandomZoom((-ZOOM_IN, 0.0), fill_mode="reflect"),
                keras.layers.RandomTranslation(TRANSLATION, TRANSLATION,
                                               fill_mode="reflect"),
            ]
        if "randaugment" in kind.split("+"):
            self.layers.append(SeededRandAugment(value_range=(0, 255)))

    def for_epoch(self, epoch):
        """`augment(image, position)` for epoch `epoch`: `image` float
        `[H, W, 3]` in [0, 255], `position` the example's index in the
        epoch's order (int64); returns the augmented image, same range."""
        key = (self.seed * 1_000_003 + int(epoch) * 7_919) % (2**31 - 1)

        def augment(image, position):
            seeds = ExampleSeeds(
                key, tf.cast(position, tf.int32) * self.DRAWS_PER_EXAMPLE
            )
            images = image[None]
            for layer in self.layers:
                transformation = layer.get_random_transformation(
                    images, training=True, seed=seeds
                )
                images = layer.transform_images(images, transformation,
                                                training=True)
            return tf.clip_by_value(tf.cast(images[0], tf.float32), 0.0, 255.0)

        return augment
