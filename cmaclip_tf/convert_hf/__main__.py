"""`python -m cmaclip_tf.convert_hf --checkpoint DIR --output PRESET_DIR`."""

import sys

from cmaclip_tf.convert_hf.checkpoint import main

sys.exit(main())
