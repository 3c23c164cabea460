"""What the generated products can be, and the words titles name them with."""

TASKS = ("color", "pattern", "style")

# Well separated fills, with near pairs (navy/black, maroon/brown/red) that
# keep the task from being trivial.
COLORS = {
    "black": (28, 28, 30),
    "white": (236, 236, 232),
    "grey": (128, 128, 128),
    "red": (205, 32, 38),
    "maroon": (118, 22, 44),
    "orange": (242, 132, 22),
    "yellow": (242, 212, 44),
    "green": (42, 152, 64),
    "teal": (22, 132, 138),
    "blue": (44, 92, 212),
    "navy": (26, 36, 98),
    "purple": (124, 52, 164),
    "pink": (242, 134, 184),
    "brown": (116, 72, 36),
}
PATTERNS = (
    "plain",
    "striped",
    "dotted",
    "checked",
    "floral",
    "graphic",
    "camo",
)
# Silhouettes in a unit square (x right, y down), drawn as polygons.
STYLES = {
    "tee": [
        (0.38, 0.15),
        (0.45, 0.2),
        (0.55, 0.2),
        (0.62, 0.15),
        (0.86, 0.3),
        (0.78, 0.46),
        (0.68, 0.41),
        (0.68, 0.9),
        (0.32, 0.9),
        (0.32, 0.41),
        (0.22, 0.46),
        (0.14, 0.3),
    ],
    "sweater": [
        (0.38, 0.14),
        (0.45, 0.19),
        (0.55, 0.19),
        (0.62, 0.14),
        (0.8, 0.24),
        (0.93, 0.8),
        (0.82, 0.83),
        (0.7, 0.42),
        (0.7, 0.88),
        (0.3, 0.88),
        (0.3, 0.42),
        (0.18, 0.83),
        (0.07, 0.8),
        (0.2, 0.24),
    ],
    "vest": [
        (0.35, 0.1),
        (0.42, 0.1),
        (0.45, 0.3),
        (0.55, 0.3),
        (0.58, 0.1),
        (0.65, 0.1),
        (0.67, 0.36),
        (0.69, 0.9),
        (0.31, 0.9),
        (0.33, 0.36),
    ],
    "a-line": [
        (0.4, 0.07),
        (0.46, 0.12),
        (0.54, 0.12),
        (0.6, 0.07),
        (0.64, 0.3),
        (0.59, 0.42),
        (0.84, 0.94),
        (0.16, 0.94),
        (0.41, 0.42),
        (0.36, 0.3),
    ],
    "sheath": [
        (0.4, 0.06),
        (0.46, 0.11),
        (0.54, 0.11),
        (0.6, 0.06),
        (0.63, 0.3),
        (0.6, 0.46),
        (0.62, 0.95),
        (0.38, 0.95),
        (0.4, 0.46),
        (0.37, 0.3),
    ],
    "skirt": [(0.35, 0.28), (0.65, 0.28), (0.82, 0.86), (0.18, 0.86)],
    "trousers": [
        (0.3, 0.08),
        (0.7, 0.08),
        (0.75, 0.93),
        (0.56, 0.93),
        (0.5, 0.36),
        (0.44, 0.93),
        (0.25, 0.93),
    ],
    "shorts": [
        (0.26, 0.28),
        (0.74, 0.28),
        (0.8, 0.72),
        (0.54, 0.74),
        (0.5, 0.5),
        (0.46, 0.74),
        (0.2, 0.72),
    ],
}

# Title words. No filler contains an attribute word, so an unmentioned
# attribute leaves no trace in the text.
COLOR_WORDS = {name: [name] for name in COLORS}
COLOR_WORDS["grey"] = ["grey", "gray"]
PATTERN_WORDS = {
    "plain": ["plain", "solid"],
    "striped": ["striped", "stripe", "stripes"],
    "dotted": ["dotted", "polka dot", "dots"],
    "checked": ["checked", "check", "checkered", "plaid"],
    "floral": ["floral", "flower print"],
    "graphic": ["graphic", "graphic print"],
    "camo": ["camo", "camouflage"],
}
STYLE_WORDS = {
    "tee": ["t-shirt", "tee"],
    "sweater": ["sweater", "cardigan"],
    "vest": ["vest", "sleeveless top"],
    "a-line": ["a-line dress", "a-line"],
    "sheath": ["sheath dress", "bodycon dress"],
    "skirt": ["skirt"],
    "trousers": ["trousers", "pants"],
    "shorts": ["shorts"],
}
BRANDS = [
    "Acme",
    "Nordwind",
    "Lumen",
    "Orchid",
    "Maple",
    "Cedar",
    "Aurora",
    "Vela",
    "Kestrel",
    "Halcyon",
    "Juniper",
    "Sable",
    "Tundra",
    "Willow",
]
AUDIENCES = ["Women's", "Womens", "Men's", "Mens", "Girls", "Boys", "Kids"]
FILLERS = [
    "casual",
    "summer",
    "winter",
    "spring",
    "classic",
    "new",
    "soft",
    "slim",
    "fit",
    "relaxed",
    "lightweight",
    "premium",
    "vintage",
    "elegant",
    "cute",
    "basic",
    "modern",
    "comfortable",
    "cotton",
    "linen",
    "knit",
    "stretch",
    "office",
    "party",
    "beach",
    "holiday",
    "everyday",
    "fashion",
]
GENERIC_NOUNS = ["item", "product", "clothing", "apparel", "outfit", "piece"]
# Compatible products a misleading title names ("matches red shoes"); none
# contains an attribute word.
COMPANION_PRODUCTS = [
    "shoes",
    "sneakers",
    "boots",
    "sandals",
    "bag",
    "handbag",
    "scarf",
    "belt",
    "hat",
    "jacket",
]
COMPANION_LINKS = [
    "for",
    "matches",
    "goes with",
    "pairs with",
    "to wear with",
    "perfect with",
]
SIZES = [
    "S",
    "M",
    "L",
    "XL",
    "XXL",
    "Size S",
    "Size M",
    "Size L",
    "Size 10",
    "Size 12",
    "UK 16",
]


def class_names():
    """`{task: sorted class names}`, the label vocabularies' order."""
    return {
        "color": sorted(COLORS),
        "pattern": sorted(PATTERNS),
        "style": sorted(STYLES),
    }


def choice(rng, options):
    """One of `options`, by one integer draw of `rng` (streams depend on it)."""
    return options[int(rng.integers(len(options)))]
