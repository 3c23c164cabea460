"""cmaclip_tf: CMA-CLIP (Cross-Modality Attention CLIP) in Keras 3.

The library: layers, models, data pipelines, export and `Predictor`. It
never imports `trainers` or `serving`.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # Imported on first use: `import cmaclip_tf` stays free of TensorFlow and
    # Keras, so a script can still pick the Keras backend afterwards.
    if name == "Predictor":
        from cmaclip_tf.inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'cmaclip_tf' has no attribute {name!r}")
