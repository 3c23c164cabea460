"""`python -m cmaclip_tf.data.tfds NAME --manual_dir DIR --data_dir D`."""

from cmaclip_tf.data.tfds.build import main

main()
