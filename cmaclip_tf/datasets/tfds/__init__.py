"""TFDS builders (manual download): importing this registers them.

`upmc_food101` and `fashion_gen`, each with configs `default` (5,000
validation examples) and `val20` (20%). Build with

    python -m cmaclip_tf.datasets.tfds NAME --manual_dir DIR --data_dir TFDS_DIR

(see `build.py`).
"""

from cmaclip_tf.datasets.tfds.fashion_gen import FashionGen
from cmaclip_tf.datasets.tfds.upmc_food101 import UpmcFood101

BUILDERS = {"upmc_food101": UpmcFood101, "fashion_gen": FashionGen}
