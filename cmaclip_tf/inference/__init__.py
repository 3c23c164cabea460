"""A trained model at work: `Predictor`, the SavedModel export module, the
inference bundle a run writes, the serving limits and image header checks,
export version picking, and attention maps.

Imports nothing itself: `image_headers`, `serving_limits` and
`model_versions` stay free of TensorFlow for servers that read them alone.
"""
