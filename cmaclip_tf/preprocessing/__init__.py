"""The preprocessing training and serving share, as TF graphs.

- `TextPreprocessor`: CLIP's BPE tokenization (core TF and TensorFlow Text
  ops only, static tables), ids equal to the reference tokenizer's.
- `ImagePreprocessor`: decode (JPEG, PNG, GIF, BMP, WebP), CLIP's bicubic
  shortest-side resize and center crop, CLIP's mean and std.
- `ImageValidator`: checks encoded images with that same decoder.
"""

from cmaclip_tf.preprocessing.image_preprocessor import CLIP_MEAN
from cmaclip_tf.preprocessing.image_preprocessor import CLIP_STD
from cmaclip_tf.preprocessing.image_preprocessor import ImagePreprocessor
from cmaclip_tf.preprocessing.image_validator import ImageValidator
from cmaclip_tf.preprocessing.text_preprocessor import TextPreprocessor
