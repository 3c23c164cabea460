"""CLIP's text rules as data: special tokens, the pre-tokenization pattern,
merge files, and how the graph tokenizer packs pair ids."""

from cmaclip_tf.preprocessing import clip_unicode_tables

START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"

# Pair keys and merge results pack two ids into one int64.
ID_BITS = 20
ID_LIMIT = 1 << ID_BITS
NO_MERGE = 2**63 - 1  # The largest int64: no merge rule.


def character_class(ranges):
    """RE2 class body for inclusive code point ranges."""
    return "".join(
        f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}"
        for a, b in ranges
    )


LETTER_CLASS = character_class(clip_unicode_tables.LETTERS)
NUMBER_CLASS = character_class(clip_unicode_tables.NUMBERS)
WHITESPACE_PATTERN = f"[{character_class(clip_unicode_tables.WHITESPACE)}]+"
SPECIAL_TOKEN_PATTERN = r"<\|startoftext\|>|<\|endoftext\|>"
# CLIP's pre-tokenization pattern on whitespace-normalized, lower-cased text
# (where a single space is the only whitespace left). The reference's pattern
# also lists the special tokens, but its byte-level step splits such a piece
# again at `<|` and `|>`, so here they are ordinary text.
WORD_PATTERN = (
    r"'s|'t|'re|'ve|'m|'ll|'d"
    + f"|[{LETTER_CLASS}]+|[{NUMBER_CLASS}]|[^ {LETTER_CLASS}{NUMBER_CLASS}]+"
)


def read_merges(lines):
    """Merge rules `(a, b)` from `merges.txt` lines; skips the version line."""
    merges = []
    for line in lines:
        if isinstance(line, (tuple, list)):
            merges.append(tuple(line))
            continue
        line = line.rstrip("\n")
        if not line or line.lstrip().startswith("#version:"):
            continue
        a, b = line.split(" ")
        merges.append((a, b))
    return merges



def text_bytes(token):
    """Length in text bytes of a BPE token: a character a byte, no `</w>`."""
    if token.endswith(END_OF_WORD):
        token = token[: -len(END_OF_WORD)]
    return len(token)


def ranks_follow_parts(merge_values):
    """Whether every merge rule ranks after the rules that make its parts.

    Then no pair that a merge creates outranks it, so merging every
    occurrence of a word's best pair at once, left to right, is CLIP's BPE.
    """
    made_at = {}
    for value in merge_values.values():
        rank, token = divmod(value, ID_LIMIT)
        made_at[token] = max(made_at.get(token, -1), rank)
    for key, value in merge_values.items():
        a, b = divmod(key, ID_LIMIT)
        rank = value // ID_LIMIT
        if max(made_at.get(a, -1), made_at.get(b, -1)) >= rank:
            return False
    return True
