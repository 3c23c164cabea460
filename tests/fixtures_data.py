"""Format-faithful dataset fixtures for the data tests, written to tmp folders.

- `write_food101`: the UPMC Food-101 layout (`images/{train,test}/<class>/`,
  `texts/{train,test}_titles.csv` without header: filename, text, class),
  with a corrupt image, a missing image, a malformed row and an unknown
  class in test.
- `write_fashion_gen`: the two HDF5 files with Fashion-Gen's keys, dtypes and
  shapes (`input_image` uint8 (N, 256, 256, 3), byte strings (N, 1)), with
  Latin-1 descriptions (as the publishers' files have) and an unknown
  sub-category in validation.
- `write_manifest`: a CSV manifest with missing labels and bad rows.
- `write_shape_captions`: someone else's image-caption pairs (colored shapes
  drawn with PIL, captions naming them) and a labelled manifest of the same
  kind of images, for pretraining then zero-shot classification.
"""

import csv
import io
import json
import os

import numpy as np
from PIL import Image
from PIL import ImageDraw

FOOD_CLASSES = ("apple_pie", "pizza", "sushi")
FOOD_COLORS = {
    "apple_pie": (200, 150, 60),
    "pizza": (220, 40, 30),
    "sushi": (240, 240, 240),
}


def encoded_image(
    color=(200, 30, 40), size=(40, 30), image_format="JPEG", mode="RGB"
):
    """A small image with a dark square, encoded."""
    pixels = np.empty((size[1], size[0], 3), np.uint8)
    pixels[:] = color
    pixels[: size[1] // 3, : size[0] // 3] = 20
    image = Image.fromarray(pixels)
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return buffer.getvalue()


def write_food101(root, train_per_class=6, test_per_class=2):
    """Writes a small UPMC Food-101 folder.

    Returns:
        dict of what a reader must find: `train_rows`, `test_rows` (rows in
        the titles files), `bad` (`{split: {reason: n}}` for the raw-file
        reader), the `bad_test_location` of the unknown class.
    """
    rows = {"train": [], "test": []}
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for label in FOOD_CLASSES:
            folder = os.path.join(root, "images", split, label)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                name = f"{label}_{i}.jpg"
                with open(os.path.join(folder, name), "wb") as f:
                    f.write(
                        encoded_image(FOOD_COLORS[label], size=(48 + i, 36))
                    )
                rows[split].append(
                    [name, f"Best {label.replace('_', ' ')} recipe, {i}", label]
                )
    # Train: a truncated JPEG and a row whose image does not exist.
    corrupt = os.path.join(root, "images", "train", "pizza", "pizza_0.jpg")
    with open(corrupt, "rb") as f:
        data = f.read()
    with open(corrupt, "wb") as f:
        f.write(data[: len(data) // 3])
    rows["train"].append(["ghost.jpg", "Ghost pizza, no image", "pizza"])
    # Test: a class never seen in train, and a row with a missing field.
    os.makedirs(os.path.join(root, "images", "test", "ramen"), exist_ok=True)
    with open(
        os.path.join(root, "images", "test", "ramen", "ramen_0.jpg"), "wb"
    ) as f:
        f.write(encoded_image())
    rows["test"].append(
        ["ramen_0.jpg", 'Ramen, "quoted", with commas', "ramen"]
    )
    os.makedirs(os.path.join(root, "texts"), exist_ok=True)
    for split in ("train", "test"):
        with open(
            os.path.join(root, "texts", f"{split}_titles.csv"), "w", newline=""
        ) as f:
            writer = csv.writer(f)
            writer.writerows(rows[split])
            if split == "test":
                f.write("only_two_fields.jpg,sushi\n")
    return {
        "train_rows": len(rows["train"]),
        "test_rows": len(rows["test"]) + 1,
        "bad": {
            "train": {"corrupt_image": 1, "missing_image": 1},
            "test": {"unknown_label": 1, "malformed_row": 1},
        },
    }


SUBCATEGORIES = ("JEANS", "SHORT DRESSES", "T-SHIRTS", "LEATHER JACKETS")
CATEGORIES = {
    "JEANS": "JEANS",
    "SHORT DRESSES": "DRESSES",
    "T-SHIRTS": "TOPS",
    "LEATHER JACKETS": "JACKETS & COATS",
}


def write_fashion_gen(root, train_per_class=8, validation_per_class=2):
    """Writes `fashiongen_256_256_{train,validation}.h5` into `root`.

    Returns:
        dict: `rows` per file, `subcategories` per file (row order),
        `latin1_rows` per file, `unknown_validation_row`.
    """
    import h5py

    os.makedirs(root, exist_ok=True)
    info = {"rows": {}, "subcategories": {}}
    for name, per_class in (
        ("train", train_per_class),
        ("validation", validation_per_class),
    ):
        labels = [s for s in SUBCATEGORIES for _ in range(per_class)]
        if name == "validation":
            labels.append("SNEAKERS")  # Not among train's sub-categories.
        n = len(labels)
        rng = np.random.default_rng(len(name))
        path = os.path.join(root, f"fashiongen_256_256_{name}.h5")
        with h5py.File(path, "w") as f:
            images = f.create_dataset(
                "input_image",
                (n, 256, 256, 3),
                np.uint8,
                chunks=(1, 256, 256, 3),
            )
            for i in range(n):
                images[i] = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
            descriptions = [
                f"Item {i}: {label.lower()} in cotton. Logo at chest.".encode()
                for i, label in enumerate(labels)
            ]
            # As the publishers wrote them: some descriptions are Latin-1.
            if name == "train":
                descriptions[3] = b"Caf\xe9 latte-colored jeans"
                descriptions[11] = b"Robe d\xe9collet\xe9e, 100% laine"
                info["latin1_rows"] = {"train": [3, 11]}
            else:
                descriptions[1] = b"Jean d\xe9lav\xe9"
                info["latin1_rows"]["validation"] = [1]
                info["unknown_validation_row"] = n - 1
            f.create_dataset(
                "input_description",
                data=np.array(descriptions, "S200")[:, None],
            )
            f.create_dataset(
                "input_subcategory",
                data=np.array([s.encode() for s in labels], "S40")[:, None],
            )
            f.create_dataset(
                "input_category",
                data=np.array(
                    [CATEGORIES.get(s, "SNEAKERS").encode() for s in labels],
                    "S40",
                )[:, None],
            )
            f.create_dataset(
                "input_productID", data=np.arange(n, dtype=np.int32)[:, None]
            )
            f.create_dataset(
                "input_name",
                data=np.array([f"name {i}".encode() for i in range(n)], "S40")[
                    :, None
                ],
            )
            f.create_dataset(
                "input_pose",
                data=np.array([b"id_gridfs_1"] * n, "S40")[:, None],
            )
            f.create_dataset(
                "index", data=np.arange(n, dtype=np.int64)[:, None]
            )
        info["rows"][name] = n
        info["subcategories"][name] = labels
    return info


def write_manifest(root, jsonl=False):
    """A manifest (color and pattern tasks) with missing labels and bad rows.

    Returns:
        dict: `path`, `rows` (data rows), `good` (usable rows), `bad`
        (`{reason: n}`), `labels` (`{task: list of label strings}` of the
        good rows, "" where missing), `texts` of the good rows.
    """
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    palette = {
        "red": (210, 30, 30),
        "blue": (30, 60, 210),
        "green": (30, 160, 60),
    }
    good = []
    for i, (color, pattern) in enumerate(
        [
            ("red", "plain"),
            ("blue", "striped"),
            ("green", ""),
            ("", "striped"),
            ("red", "striped"),
            ("blue", ""),
            ("green", "plain"),
            ("red", "plain"),
        ]
    ):
        name = f"images/{i}.png" if i % 2 else f"images/{i}.jpg"
        fmt = "PNG" if i % 2 else "JPEG"
        with open(os.path.join(root, name), "wb") as f:
            f.write(encoded_image(palette[color or "red"], image_format=fmt))
        good.append(
            {
                "image": name,
                "text": f"Product {i} ÉTÉ {color}",
                "color": color,
                "pattern": pattern,
            }
        )
    with open(os.path.join(root, "images", "broken.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    bad = [
        {
            "image": "images/broken.jpg",
            "text": "broken",
            "color": "red",
            "pattern": "plain",
        },
        {
            "image": "images/nowhere.png",
            "text": "missing",
            "color": "blue",
            "pattern": "plain",
        },
        {
            "image": "images/0.jpg",
            "text": "bad text \udcff",
            "color": "red",
            "pattern": "plain",
        },
    ]
    rows = good[:3] + bad[:1] + good[3:6] + bad[1:] + good[6:]
    if jsonl:
        path = os.path.join(root, "train.jsonl")
        with open(path, "wb") as f:
            for row in rows:
                row = {k: (None if v == "" else v) for k, v in row.items()}
                text = json.dumps(row, ensure_ascii=False)
                f.write(text.encode("utf-8", errors="surrogateescape") + b"\n")
            f.write(b"{not json\n")
    else:
        path = os.path.join(root, "train.csv")
        with open(
            path, "w", newline="", encoding="utf-8", errors="surrogateescape"
        ) as f:
            writer = csv.writer(f)
            writer.writerow(["image", "text", "color", "pattern"])
            for row in rows:
                writer.writerow(
                    [row["image"], row["text"], row["color"], row["pattern"]]
                )
            f.write("images/1.png,too,many,fields,here\n")
    return {
        "path": path,
        "rows": len(rows) + 1,
        "good": len(good),
        "bad": {
            "corrupt_image": 1,
            "missing_image": 1,
            "undecodable_text": 1,
            "malformed_row": 1,
        },
        "labels": {t: [r[t] for r in good] for t in ("color", "pattern")},
        "texts": [r["text"] for r in good],
    }


CATALOGUE_COLORS = {
    "red": (210, 30, 30),
    "blue": (30, 60, 210),
    "green": (30, 160, 60),
}
CATALOGUE_SHAPES = ("round", "square")


def write_catalogue(root, jsonl=False, per_class=12):
    """A catalogue export as users bring one: sorted by category, with bad rows.

    Images are JPEGs of the color with a dark square, in `images/`; columns
    `image`, `text`, `color`, `shape`, rows sorted by color. Planted in the
    train manifest: a row whose image is missing and one whose JPEG is cut
    short (and, in JSON Lines, a line that is not JSON); the validation
    manifest has a color the train manifest never names.

    Returns:
        dict: `train`, `val` (manifest paths), `train_rows`, `bad_train`
        (`{reason: n}`), `bad_val`.
    """
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    rows = []
    for color, rgb in CATALOGUE_COLORS.items():
        for i in range(per_class):
            name = f"images/{color}_{i}.jpg"
            shape = CATALOGUE_SHAPES[i % 2]
            with open(os.path.join(root, name), "wb") as f:
                f.write(encoded_image(rgb, size=(48 + i, 40)))
            title = f"Classic {shape} item {i}" + (f" in {color}" if i % 3 else "")
            rows.append({"image": name, "text": title, "color": color,
                         "shape": shape})
    truncated = os.path.join(root, "images", "red_1.jpg")
    with open(truncated, "rb") as f:
        data = f.read()
    with open(truncated, "wb") as f:
        f.write(data[: len(data) // 3])
    rows.insert(5, {"image": "images/gone.jpg", "text": "Missing photo",
                    "color": "red", "shape": "round"})
    bad_train = {"missing_image": 1, "corrupt_image": 1}
    val_rows = [
        {"image": f"images/{c}_{i}.jpg", "text": f"{c} item {i}", "color": c,
         "shape": CATALOGUE_SHAPES[i % 2]}
        for c in CATALOGUE_COLORS for i in (2, 3)
    ]
    val_rows.insert(0, {"image": "images/blue_4.jpg", "text": "Teal item",
                        "color": "teal", "shape": "round"})
    suffix = "jsonl" if jsonl else "csv"
    paths = {}
    for split, split_rows in (("train", rows), ("val", val_rows)):
        path = os.path.join(root, f"{split}.{suffix}")
        if jsonl:
            with open(path, "w", encoding="utf-8") as f:
                for i, row in enumerate(split_rows):
                    f.write(json.dumps(row) + "\n")
                    if split == "train" and i == 8:
                        f.write('{"image": "images/red_3.jpg", "text": \n')
        else:
            with open(path, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, ["image", "text", "color", "shape"])
                writer.writeheader()
                writer.writerows(split_rows)
        paths[split] = path
    if jsonl:
        bad_train = dict(bad_train, malformed_row=1)
    return {
        "train": paths["train"],
        "val": paths["val"],
        "train_rows": len(rows) + (1 if jsonl else 0),
        "bad_train": bad_train,
        "bad_val": {"unknown_label": 1},
    }


SHAPE_COLORS = {
    "red": (215, 35, 35),
    "green": (35, 165, 55),
    "blue": (40, 70, 215),
    "yellow": (235, 210, 40),
}
SHAPES = ("circle", "square", "triangle")
SHAPE_CAPTIONS = ("a photo of a {color} {shape}", "a {color} {shape}",
                  "a {shape} in {color}", "{shape}, {color}",
                  "a photo of a {color}", "a photo of a {shape}")


def shape_image(rng, color, shape, size=64):
    """A shape of `color` at a random place and size on a light background."""
    background = tuple(int(v) for v in rng.integers(190, 250, 3))
    image = Image.new("RGB", (size, size), background)
    radius = size * rng.uniform(0.2, 0.35)
    cx, cy = size / 2 + rng.uniform(-0.12, 0.12, 2) * size
    box = [cx - radius, cy - radius, cx + radius, cy + radius]
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse(box, fill=SHAPE_COLORS[color])
    elif shape == "square":
        draw.rectangle(box, fill=SHAPE_COLORS[color])
    else:
        draw.polygon([(cx, cy - radius), (cx - radius, cy + radius),
                      (cx + radius, cy + radius)], fill=SHAPE_COLORS[color])
    return image


def write_shape_captions(root, num_pairs=400, num_labelled=60, seed=0):
    """Writes `pairs.csv` (image, text) and `labelled.csv` (image, text, color,
    shape) of colored shapes, each image a PNG in `images/`.

    Captions name the color, the shape or both, in varied templates; the
    labelled rows (other images) carry a neutral text, so only the image
    can tell their classes.

    Returns:
        `{"pairs": path, "labelled": path}`.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    colors = sorted(SHAPE_COLORS)
    paths = {}
    for name, count in (("pairs", num_pairs), ("labelled", num_labelled)):
        rows = []
        for i in range(count):
            color, shape = colors[i % len(colors)], SHAPES[i % len(SHAPES)]
            if name == "pairs":  # Any mix; labelled rows cover each pair.
                color, shape = rng.choice(colors), rng.choice(SHAPES)
            image = f"images/{name}_{i}.png"
            shape_image(rng, color, shape).save(os.path.join(root, image))
            template = SHAPE_CAPTIONS[rng.integers(len(SHAPE_CAPTIONS))]
            text = (template.format(color=color, shape=shape)
                    if name == "pairs" else "an item")
            rows.append({"image": image, "text": text, "color": color,
                         "shape": shape})
        columns = ["image", "text"] + (["color", "shape"] if name == "labelled"
                                       else [])
        paths[name] = os.path.join(root, f"{name}.csv")
        with open(paths[name], "w", newline="") as f:
            writer = csv.DictWriter(f, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    return paths
