"""cmaclip_tf: CMA-CLIP (Cross-Modality Attention CLIP) in Keras 3.

The library: layers, models, data pipelines and export. It never imports
`trainers` or `serving`.
"""

__version__ = "0.1.0"
