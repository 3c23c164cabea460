"""Unicode tables of CLIP's reference tokenizer, for the graph tokenizer.

CLIP's reference text normalization (keras-hub's eager `CLIPTokenizer`, i.e.
the Hugging Face `tokenizers` pipeline) decides three things with its own
Unicode data: what `\\s` is (whitespace runs become one space), what
`\\p{L}` and `\\p{N}` are (the pre-tokenizer's word and digit classes), and
what each character lower-cases to (per character, no final-sigma rule).
RE2 (`tf.strings.regex_*`) knows an older Unicode and an ASCII-only `\\s`,
and ICU's `tf.strings.lower` lower-cases in context, so the graph tokenizer
uses these explicit tables instead.

The tables are a generated asset, `assets/clip_unicode_tables.json`, made
from the reference by `compute_reference_tables()`:

    python -m cmaclip_tf.preprocessing.clip_unicode_tables --write

(the tests check the asset still matches the installed `tokenizers`).
"""

import argparse
import json
import os

ASSET = os.path.join(os.path.dirname(__file__), "assets", "clip_unicode_tables.json")


def load_tables(path=ASSET):
    """The asset in `compute_reference_tables()`'s format."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return {
        "whitespace": tuple(tuple(r) for r in data["whitespace"]),
        "letters": tuple(tuple(r) for r in data["letters"]),
        "numbers": tuple(tuple(r) for r in data["numbers"]),
        "lowercase": tuple((c, low) for c, low in data["lowercase"]),
    }


_TABLES = load_tables()
# Inclusive code point ranges.
WHITESPACE = _TABLES["whitespace"]
LETTERS = _TABLES["letters"]
NUMBERS = _TABLES["numbers"]
# `(code point, lowered string)` of every character lower-casing changes.
LOWERCASE = _TABLES["lowercase"]


def current_tables():
    """The asset's tables, as `compute_reference_tables()` returns them."""
    return dict(_TABLES)


# UTF-16 surrogates are not characters: UTF-8 text cannot hold them.
_SURROGATES = range(0xD800, 0xE000)


def _all_code_points():
    return [c for c in range(1, 0x110000) if c not in _SURROGATES]


def _to_ranges(code_points):
    ranges = []
    for c in code_points:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return tuple((a, b) for a, b in ranges)


def compute_reference_tables():
    """Computes the tables from the installed `tokenizers` (the reference).

    Returns:
        dict with `whitespace`, `letters`, `numbers` (tuples of inclusive
        code point ranges) and `lowercase` (tuple of `(code_point, lowered)`
        for every character that lower-casing changes).
    """
    from tokenizers import Regex
    from tokenizers import normalizers
    from tokenizers import pre_tokenizers

    code_points = _all_code_points()
    text = "".join(chr(c) for c in code_points)

    def matching(pattern):
        # "removed" drops the matches; the offsets left are the non-matches.
        split = pre_tokenizers.Split(Regex(pattern), behavior="removed")
        kept = set()
        for _, (start, end) in split.pre_tokenize_str(text):
            kept.update(range(start, end))
        return [c for i, c in enumerate(code_points) if i not in kept]

    # U+0000 is the separator, and lower-cases to itself.
    lowered = normalizers.Lowercase().normalize_str("\0".join(text)).split("\0")
    lowercase = tuple(
        (c, low) for c, low in zip(code_points, lowered) if low != chr(c)
    )
    return {
        "whitespace": _to_ranges(matching(r"\s")),
        "letters": _to_ranges(matching(r"\p{L}")),
        "numbers": _to_ranges(matching(r"\p{N}")),
        "lowercase": lowercase,
    }


def write_tables(tables, path=ASSET):
    """Writes the tables as the JSON asset (ranges as `[first, last]`)."""
    data = {
        "whitespace": [list(r) for r in tables["whitespace"]],
        "letters": [list(r) for r in tables["letters"]],
        "numbers": [list(r) for r in tables["numbers"]],
        "lowercase": [[c, low] for c, low in tables["lowercase"]],
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true",
                        help=f"Regenerate {ASSET} from the installed tokenizers.")
    args = parser.parse_args(argv)
    tables = compute_reference_tables()
    if args.write:
        write_tables(tables)
        print(f"Wrote {ASSET}")
    else:
        print("matches the asset" if tables == _TABLES else "differs from the asset")
    return 0


if __name__ == "__main__":
    main()
