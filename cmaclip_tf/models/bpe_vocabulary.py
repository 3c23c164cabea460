"""Learns a small CLIP-format byte-level BPE vocabulary from a word list.

The tiny CLIP preset needs a real BPE tokenizer (same file formats, same
byte fallback, same special tokens as CLIP's `vocab.json` and `merges.txt`)
without downloading one. This builds it the way CLIP's was built: a base of
256 byte symbols and their end-of-word variants, then the most frequent
adjacent pairs merged greedily, then `<|startoftext|>` and `<|endoftext|>` as
the two highest ids (CLIP pools text at the highest id).
"""

import collections
import re

START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"

# CLIP's pre-tokenization pattern (simple_tokenizer.py), ASCII letters only
# for the word list, which is all this needs.
_WORD_PATTERN = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")


def bytes_to_unicode():
    """GPT-2/CLIP's reversible map from the 256 bytes to printable characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def learn_bpe(words, num_merges):
    """Returns `(vocabulary, merges)` in CLIP's format.

    Args:
        words: iterable of strings (sentences or words); lower-cased and split
            with CLIP's pattern.
        num_merges: int. Upper bound on merges; stops early when no pair occurs
            twice.
    """
    byte_encoder = bytes_to_unicode()
    counts = collections.Counter()
    for text in words:
        for word in _WORD_PATTERN.findall(text.lower()):
            symbols = [byte_encoder[b] for b in word.encode("utf-8")]
            symbols[-1] += END_OF_WORD
            counts[tuple(symbols)] += 1

    base = list(byte_encoder.values())
    vocabulary = base + [s + END_OF_WORD for s in base]
    merges = []
    for _ in range(num_merges):
        pairs = collections.Counter()
        for symbols, count in counts.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += count
        if not pairs:
            break
        # Most frequent first; ties broken by the pair itself for determinism.
        (best, frequency) = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if frequency < 2:
            break
        merges.append(best)
        vocabulary.append(best[0] + best[1])
        counts = collections.Counter(
            {_merge(symbols, best): c for symbols, c in counts.items()}
        )
    vocabulary += [START_TOKEN, END_TOKEN]
    return {token: i for i, token in enumerate(vocabulary)}, merges


def _merge(symbols, pair):
    merged, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            merged.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return tuple(merged)


def merges_to_text(merges):
    """The `merges.txt` format: a version line, then one `a b` pair a line."""
    return "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
