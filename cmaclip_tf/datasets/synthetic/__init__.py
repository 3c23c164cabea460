"""The project's data generator: drawn products with templated titles (the
`synthetic` dataset), the image-caption corpus for pretraining the tiny CLIP,
and test-time title perturbations.

- `vocabulary`: what products can be and the words that name them.
- `drawing`: a style's silhouette in a color and a pattern.
- `products`: `SyntheticProducts`, examples and their noise dials.
- `source`: `SyntheticSource`, a generated split as a record source.
- `caption_corpus`: `CaptionCorpus`, image-caption pairs.
- `title_perturbations`: the paper's Table 5 conditions.
"""
