"""Writes generated examples to disk as images plus a CSV manifest.

The layout `load_dataset("manifest", ...)` and `trainers/pretrain.py` read:
`images/<split>/<index>.<ext>` and `<split>.csv` whose first column, `image`,
holds the path relative to the manifest.
"""

import csv
import os

from PIL import Image

IMAGE_EXTENSIONS = {"png": "png", "jpeg": "jpg"}


def write_manifest(output_dir, split, rows, columns, image_format="png"):
    """Writes one split's images and its manifest.

    Args:
        output_dir: str, the folder of the manifest (created if missing).
        split: str, names the manifest (`<split>.csv`) and the image folder.
        rows: iterable of `(image, values)`: uint8 `[height, width, 3]`
            pixels and one value per entry of `columns`.
        columns: the manifest's columns after `image`, e.g. `["text"]`.
        image_format: `"png"` (lossless, the default) or `"jpeg"`.

    Returns:
        The manifest's path.

    Example:

    ```python
    rows = ((example.image, [example.caption]) for example in examples)
    write_manifest("corpus/", "train", rows, ["text"])  # "corpus/train.csv"
    ```
    """
    if image_format not in IMAGE_EXTENSIONS:
        raise ValueError(
            f"Unknown image format {image_format!r}; expected one of "
            f"{sorted(IMAGE_EXTENSIONS)}."
        )
    extension = IMAGE_EXTENSIONS[image_format]
    os.makedirs(os.path.join(output_dir, "images", split), exist_ok=True)
    manifest = os.path.join(output_dir, f"{split}.csv")
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", *columns])
        for index, (image, values) in enumerate(rows):
            relative = f"images/{split}/{index:06d}.{extension}"
            Image.fromarray(image).save(
                os.path.join(output_dir, relative),
                format=image_format.upper(),
                **({"quality": 95} if image_format == "jpeg" else {}),
            )
            writer.writerow([relative, *values])
    return manifest
