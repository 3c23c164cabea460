"""Drawing the generated products: a style's silhouette filled with a color
and a pattern, on a varied background with clutter."""

import math

import numpy as np
from PIL import Image
from PIL import ImageChops
from PIL import ImageDraw

from cmaclip_tf.datasets.synthetic.vocabulary import COLORS
from cmaclip_tf.datasets.synthetic.vocabulary import STYLES
from cmaclip_tf.datasets.synthetic.vocabulary import choice

_RENDER_SCALE = 2  # Drawn at twice the size, then box-filtered: anti-aliasing.
# Darkening toward the bottom (> 0) or the top (< 0), at most 14%.
_SHADES = (-0.14, -0.1, -0.06, 0.0, 0.06, 0.1, 0.14)


class ProductDrawer:
    """Draws products of one size; keeps the sampling grid and shadings.

    Args:
        image_size: int, images are square.
        max_clutter: most clutter shapes per image.

    Example:

    ```python
    drawer = ProductDrawer(64, max_clutter=3)
    rng = np.random.default_rng(0)
    pixels = drawer.draw(rng, {"color": "red", "pattern": "striped",
                               "style": "a-line dress"})
    ```
    """

    def __init__(self, image_size, max_clutter=3):
        self.image_size = image_size
        self.max_clutter = max_clutter
        size = image_size * _RENDER_SCALE
        self._grid = np.mgrid[0:size, 0:size].astype(np.float32)
        self._shades = {}


    def draw(self, rng, attributes):
        """uint8 `[image_size, image_size, 3]`: the garment `attributes` say."""
        size = self.image_size * _RENDER_SCALE
        canvas = _background(rng, size, self._grid)
        draw = ImageDraw.Draw(canvas)
        num_clutter = int(rng.integers(0, self.max_clutter + 1))
        front = num_clutter > 0 and rng.random() < 0.3
        for _ in range(num_clutter - int(front)):
            _clutter(rng, draw, size)

        silhouette = Image.new("L", (size, size), 0)
        ImageDraw.Draw(silhouette).polygon(
            _silhouette(rng, attributes["style"], size), fill=255
        )
        fill = np.clip(
            np.asarray(COLORS[attributes["color"]], np.float32)
            + rng.uniform(-12, 12, 3),
            0,
            255,
        )
        ink_mask, ink = _pattern(
            rng, attributes["pattern"], fill, silhouette, self._grid
        )
        garment = Image.new("RGB", (size, size), rgb(fill))
        if ink_mask is not None:
            garment.paste(rgb(ink), mask=ink_mask)
        # Soft light from above or below, so colors are not perfectly flat.
        garment = ImageChops.multiply(
            garment, self._shading(rng.integers(len(_SHADES)))
        )
        canvas.paste(garment, mask=silhouette)
        if front:
            _clutter(rng, ImageDraw.Draw(canvas), size, small=True)
        return np.asarray(canvas.reduce(_RENDER_SCALE), np.uint8)

    def _shading(self, index):
        if index not in self._shades:
            size = self.image_size * _RENDER_SCALE
            strength = _SHADES[index]
            t = self._grid[0] / size
            ramp = 255 * (1 - strength * (t if strength > 0 else t - 1))
            ramp = np.clip(ramp, 0, 255).astype(np.uint8)
            self._shades[index] = Image.fromarray(ramp).convert("RGB")
        return self._shades[index]


def rgb(values):
    """A PIL color from floats (rounded, clipped to 0..255)."""
    return tuple(int(round(float(v))) for v in np.clip(values, 0, 255))


def _silhouette(rng, style, size):
    """The style's polygon, scaled, shifted, stretched, rotated and jittered."""
    points = np.asarray(STYLES[style], np.float32) - 0.5
    points *= rng.uniform(0.78, 0.98) * np.array(
        [rng.uniform(0.9, 1.1), rng.uniform(0.92, 1.05)], np.float32
    )
    angle = math.radians(rng.uniform(-6, 6))
    rotation = np.array(
        [
            [math.cos(angle), -math.sin(angle)],
            [math.sin(angle), math.cos(angle)],
        ],
        np.float32,
    )
    points = points @ rotation.T
    points += 0.5 + rng.uniform(-0.05, 0.05, 2)
    points += rng.uniform(-0.012, 0.012, points.shape)
    return [tuple(p) for p in (points * size).tolist()]


def _random_color(rng):
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def _background(rng, size, grid):
    kind = rng.integers(4)
    base = np.asarray(_random_color(rng), np.float32)
    if rng.random() < 0.7:  # Mostly light, studio-like backgrounds.
        base = base * 0.35 + 255 * 0.65 * rng.uniform(0.7, 1.0)
    if kind == 0:
        return Image.new("RGB", (size, size), rgb(base))
    if kind == 1:  # Gradient.
        other = np.asarray(_random_color(rng), np.float32) * 0.4 + base * 0.6
        t = grid[int(rng.integers(2))][..., None] / size
        pixels = base + (other - base) * t
    elif kind == 2:  # Grain.
        pixels = base + rng.integers(-12, 13, (size, size, 1)).astype(
            np.float32
        )
    else:  # Floor and wall.
        image = Image.new("RGB", (size, size), rgb(base))
        horizon = int(rng.uniform(0.55, 0.85) * size)
        floor = rgb(base * rng.uniform(0.6, 0.9))
        ImageDraw.Draw(image).rectangle([0, horizon, size, size], fill=floor)
        return image
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _clutter(rng, draw, size, small=False):
    scale = size * (
        rng.uniform(0.06, 0.14) if small else rng.uniform(0.08, 0.3)
    )
    x, y = rng.uniform(0, size, 2)
    box = [x - scale / 2, y - scale / 2, x + scale / 2, y + scale / 2]
    color = _random_color(rng)
    kind = rng.integers(3)
    if kind == 0:
        draw.ellipse(box, fill=color)
    elif kind == 1:
        draw.rectangle(box, fill=color)
    else:
        draw.line(box, fill=color, width=max(2, int(scale / 8)))


def _pattern(rng, pattern, fill, silhouette, grid):
    """`(ink mask, ink color)`: where the pattern covers the fill, and in what.

    The mask is an "L" image (or `None` for plain); the ink is the fill
    pushed toward black or white, so the fill stays the dominant color.
    """
    size = silhouette.size[0]
    luminance = fill @ np.array([0.299, 0.587, 0.114], np.float32) / 255
    target = 0.0 if luminance > 0.55 else 255.0
    ink = fill + (target - fill) * rng.uniform(0.6, 0.85)
    yy, xx = grid
    if pattern == "plain":
        return None, ink
    if pattern == "striped":
        period = rng.uniform(8, 13)
        angle = math.radians(choice(rng, [0, 90, 45, -45]))
        u = xx * math.cos(angle) + yy * math.sin(angle) + rng.uniform(0, period)
        return _mask_image((u % period) < period * 0.38), ink
    if pattern == "checked":
        period = rng.uniform(11, 16)
        width = period * 0.24
        ox, oy = rng.uniform(0, period, 2)
        lines = ((xx + ox) % period < width) | ((yy + oy) % period < width)
        return _mask_image(lines), ink
    if pattern == "camo":
        noise = Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8))
        field = noise.resize((size, size), Image.BICUBIC)
        return field.point(lambda v: 255 if v > 150 else 0), ink
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    if pattern == "dotted":
        spacing = rng.uniform(10, 14)
        radius = spacing * rng.uniform(0.2, 0.26)
        ox, oy = rng.uniform(0, spacing, 2)
        for row, y in enumerate(
            np.arange(-spacing + oy, size + spacing, spacing)
        ):
            shift = spacing / 2 if row % 2 else 0
            for x in np.arange(-spacing + ox + shift, size + spacing, spacing):
                draw.ellipse(
                    [x - radius, y - radius, x + radius, y + radius], fill=255
                )
    elif pattern == "floral":
        spacing = rng.uniform(17, 22)
        petal = spacing * 0.13
        for y in np.arange(rng.uniform(0, spacing), size, spacing):
            for x in np.arange(rng.uniform(0, spacing), size, spacing):
                cx, cy = x + rng.uniform(-3, 3), y + rng.uniform(-3, 3)
                start = rng.uniform(0, 2 * math.pi)
                for k in range(5):
                    a = start + k * 2 * math.pi / 5
                    px = cx + 1.8 * petal * math.cos(a)
                    py = cy + 1.8 * petal * math.sin(a)
                    draw.ellipse(
                        [px - petal, py - petal, px + petal, py + petal],
                        fill=255,
                    )
    elif pattern == "graphic":
        # One large motif on the chest: a circle, a triangle or a star.
        left, top, right, bottom = silhouette.getbbox() or (0, 0, size, size)
        cx, cy = (left + right) / 2, top + 0.4 * (bottom - top)
        radius = 0.16 * size
        shape = rng.integers(3)
        if shape == 0:
            draw.ellipse(
                [cx - radius, cy - radius, cx + radius, cy + radius], fill=255
            )
        elif shape == 1:
            draw.polygon(
                [
                    (cx, cy - radius),
                    (cx + radius, cy + radius),
                    (cx - radius, cy + radius),
                ],
                fill=255,
            )
        else:
            points = []
            for k in range(10):
                r = radius if k % 2 == 0 else radius * 0.45
                a = -math.pi / 2 + k * math.pi / 5
                points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
            draw.polygon(points, fill=255)
    return mask, ink


def _mask_image(mask):
    return Image.fromarray(mask.astype(np.uint8) * 255)
