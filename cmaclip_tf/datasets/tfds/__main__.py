"""`python -m cmaclip_tf.datasets.tfds NAME --manual_dir DIR --data_dir D`."""

from cmaclip_tf.datasets.tfds.build import main

main()
