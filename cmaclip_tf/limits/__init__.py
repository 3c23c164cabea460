"""Limits on what one input may hold, readable without loading TensorFlow.

- `serving_limits`: the one definition of every limit (`ServingLimits`, a
  request's sizes; `MAX_IMAGE_PIXELS`, the one pixel limit of every path
  that decodes an image).
- `image_headers`: an image's format and size from its header bytes, so the
  pixel limit is checked before anything is decoded.

Training input, the predictor, the export and the servers all read them.
"""
