"""A trained model at work: `Predictor`, the SavedModel export module, the
inference bundle a run writes, export version picking, and attention maps.

Imports nothing itself: `model_versions` stays free of TensorFlow for
servers that read it alone (as `cmaclip_tf.limits` does).
"""
