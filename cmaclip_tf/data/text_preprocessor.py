"""CLIP's text preprocessing as a TF graph: the same ids eagerly, in tf.data,
in a `tf.function` and in an exported SavedModel.

The reference is keras-hub's eager `CLIPTokenizer` (the Hugging Face
`tokenizers` pipeline that matches CLIP's own BPE): special tokens are cut out
of the raw text, the rest is NFC-normalized, whitespace runs become one space,
every character is lower-cased, CLIP's pattern splits words (one token per
digit), and byte-level BPE merges each word. keras-hub's own graph path skips
or approximates several of these steps, so this module re-implements them with
core TensorFlow and TensorFlow Text ops only (what TF Serving can run). The
BPE tables are static; there is no cache that grows.
"""

import json

import tensorflow as tf
import tensorflow_text as tf_text

from cmaclip_tf.data import clip_unicode_tables

START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"

# Pair keys and merge results pack two ids into one int64.
_ID_BITS = 20
_ID_LIMIT = 1 << _ID_BITS
_NO_MERGE = tf.int64.max


def bytes_to_unicode():
    """GPT-2/CLIP's reversible map from the 256 byte values to characters."""
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


def _character_class(ranges):
    """RE2 class body for inclusive code point ranges."""
    return "".join(
        f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}"
        for a, b in ranges
    )


_LETTER = _character_class(clip_unicode_tables.LETTERS)
_NUMBER = _character_class(clip_unicode_tables.NUMBERS)
WHITESPACE_PATTERN = f"[{_character_class(clip_unicode_tables.WHITESPACE)}]+"
SPECIAL_TOKEN_PATTERN = r"<\|startoftext\|>|<\|endoftext\|>"
# CLIP's pre-tokenization pattern on whitespace-normalized, lower-cased text
# (where a single space is the only whitespace left). The reference's pattern
# also lists the special tokens, but its byte-level step splits such a piece
# again at `<|` and `|>`, so here they are ordinary text.
WORD_PATTERN = (
    r"'s|'t|'re|'ve|'m|'ll|'d"
    + f"|[{_LETTER}]+|[{_NUMBER}]|[^ {_LETTER}{_NUMBER}]+"
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


class TextPreprocessor(tf.Module):
    """Tokenizes and packs text for CLIP's text encoder, graph-compatible.

    Called on a string tensor of shape `[batch]` (or a scalar), returns
    `{"token_ids": int32 [batch, sequence_length], "padding_mask": bool
    [batch, sequence_length]}`: the start token, the text's tokens, the
    end-of-text token, then `pad_token_id`; the mask is true on all but the
    padding. Text longer than the context keeps its first
    `sequence_length - 2` tokens and still ends with the end-of-text token.
    Text that is not valid UTF-8 raises `InvalidArgumentError`.

    Args:
        vocabulary: dict mapping token strings to ids (CLIP's `vocab.json`).
        merges: list of merge rules, `"a b"` strings or `(a, b)` pairs, in
            rank order (CLIP's `merges.txt`).
        sequence_length: int. The packed length (CLIP: 77). At least 2.
        pad_token_id: int. Defaults to 0, as keras-hub's `CLIPPreprocessor`.
        name: optional module name.

    Example:

    ```python
    components = cmaclip_tf.models.load_clip("tiny_clip")
    preprocessor = TextPreprocessor.from_tokenizer(components.tokenizer, 32)
    outputs = preprocessor(tf.constant(["Red striped dress", ""]))
    outputs["token_ids"].shape  # (2, 32)
    ```
    """

    def __init__(
        self, vocabulary, merges, sequence_length, pad_token_id=0, name=None
    ):
        super().__init__(name=name)
        if sequence_length < 2:
            raise ValueError(
                "`sequence_length` must leave room for the start and "
                f"end-of-text tokens (>= 2). Received: {sequence_length}"
            )
        vocabulary = dict(vocabulary)
        for token in (START_TOKEN, END_TOKEN):
            if token not in vocabulary:
                raise ValueError(
                    f"The vocabulary has no {token!r}; is it CLIP's vocab.json?"
                )
        if len(vocabulary) >= _ID_LIMIT:
            raise ValueError(
                f"Vocabularies up to {_ID_LIMIT - 1} tokens are supported; "
                f"this one has {len(vocabulary)}."
            )
        self.sequence_length = int(sequence_length)
        self.pad_token_id = int(pad_token_id)
        self.start_token_id = int(vocabulary[START_TOKEN])
        self.end_token_id = int(vocabulary[END_TOKEN])
        # CLIP's BPE maps a symbol missing from the vocabulary to this id.
        self.unknown_token_id = self.end_token_id
        self.vocabulary_size = len(vocabulary)

        # === Tables ===
        byte_chars = bytes_to_unicode()
        self._inner_byte_ids = tf.constant(
            [
                vocabulary.get(byte_chars[b], self.unknown_token_id)
                for b in range(256)
            ],
            tf.int64,
        )
        self._final_byte_ids = tf.constant(
            [
                vocabulary.get(
                    byte_chars[b] + END_OF_WORD, self.unknown_token_id
                )
                for b in range(256)
            ],
            tf.int64,
        )
        merge_values = {}
        for rank, (a, b) in enumerate(read_merges(merges)):
            if (
                a not in vocabulary
                or b not in vocabulary
                or a + b not in vocabulary
            ):
                raise ValueError(
                    f"Merge rule {a!r} {b!r} uses a token that is not in the "
                    "vocabulary."
                )
            key = vocabulary[a] * _ID_LIMIT + vocabulary[b]
            # As CLIP's BPE: a repeated rule keeps its last rank.
            merge_values[key] = rank * _ID_LIMIT + vocabulary[a + b]
        self.num_merges = len(merge_values)
        keys = list(merge_values) or [-1]
        values = list(merge_values.values()) or [_NO_MERGE]
        self._merge_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(keys, tf.int64), tf.constant(values, tf.int64)
            ),
            default_value=_NO_MERGE,
        )
        lowercase = clip_unicode_tables.LOWERCASE
        self._lowercase_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant([chr(c) for c, _ in lowercase]),
                tf.constant(
                    ["".join(chr(x) for x in low) for _, low in lowercase]
                ),
            ),
            default_value="",
        )
        self._preprocess_batch = tf.function(
            self._preprocess,
            input_signature=[tf.TensorSpec([None], tf.string)],
            autograph=False,
        )

    @classmethod
    def from_files(cls, vocabulary_json, merges_txt, sequence_length, **kwargs):
        """Builds from CLIP's `vocab.json` and `merges.txt` files."""
        with open(vocabulary_json, encoding="utf-8") as f:
            vocabulary = json.load(f)
        with open(merges_txt, encoding="utf-8") as f:
            merges = read_merges(f)
        return cls(vocabulary, merges, sequence_length, **kwargs)

    @classmethod
    def from_tokenizer(cls, tokenizer, sequence_length, **kwargs):
        """Builds from a keras-hub `CLIPTokenizer` (e.g. a loaded preset's)."""
        kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
        return cls(
            dict(tokenizer.vocabulary),
            read_merges(tokenizer.merges),
            sequence_length,
            **kwargs,
        )

    def __call__(self, texts):
        texts = tf.convert_to_tensor(texts, tf.string)
        if texts.shape.rank == 0:
            outputs = self._preprocess_batch(texts[None])
            return {key: value[0] for key, value in outputs.items()}
        if texts.shape.rank != 1:
            raise ValueError(
                f"Expected a string tensor of shape [batch]; got {texts.shape}."
            )
        return self._preprocess_batch(texts)

    def tokenize(self, texts):
        """BPE token ids without start, end or padding, ragged [batch, None]."""
        texts = tf.convert_to_tensor(texts, tf.string)
        ids, rows = self._tokenize(texts, max_tokens=None)
        return tf.RaggedTensor.from_value_rowids(
            ids, rows, nrows=tf.size(texts, out_type=tf.int64)
        )

    # === Steps ===

    def _preprocess(self, texts):
        length = self.sequence_length
        batch = tf.size(texts, out_type=tf.int64)
        ids, rows = self._tokenize(texts, max_tokens=length - 2)
        # Token k of a text goes to column k + 1, after the start token.
        columns = _rank_in_row(rows, batch) + 1
        token_ids = tf.tensor_scatter_nd_update(
            tf.fill(
                tf.stack([batch, length]),
                tf.constant(self.pad_token_id, tf.int64),
            ),
            tf.stack([rows, columns], axis=1),
            ids,
        )
        num_tokens = tf.math.bincount(
            rows, minlength=batch, maxlength=batch, dtype=tf.int64
        )
        positions = tf.range(length, dtype=tf.int64)[None, :]
        start = tf.constant(self.start_token_id, tf.int64)
        end = tf.constant(self.end_token_id, tf.int64)
        token_ids = tf.where(tf.equal(positions, 0), start, token_ids)
        token_ids = tf.where(
            tf.equal(positions, num_tokens[:, None] + 1), end, token_ids
        )
        return {
            "token_ids": tf.cast(token_ids, tf.int32),
            "padding_mask": positions < num_tokens[:, None] + 2,
        }

    def _tokenize(self, texts, max_tokens):
        """Flat token ids and the text row of each, at most `max_tokens` a row."""
        texts = self._assert_utf8(texts)
        num_texts = tf.size(texts, out_type=tf.int64)
        # Special tokens are matched in the raw text, before normalization.
        pieces = texts
        piece_special_ids = tf.fill(tf.shape(texts), tf.constant(-1, tf.int64))
        piece_rows = tf.range(num_texts)
        for token, token_id in (
            (END_TOKEN, self.end_token_id),
            (START_TOKEN, self.start_token_id),
        ):
            pieces, piece_special_ids, parents = _split_on_token(
                pieces, piece_special_ids, token, token_id
            )
            piece_rows = tf.gather(piece_rows, parents)
        normalized = self._normalize(pieces)
        # A special token stays one word: "x" holds its place until BPE.
        normalized = tf.where(piece_special_ids >= 0, "x", normalized)
        # Spaces around every match of CLIP's pattern, then a split at
        # spaces: the matches, in order (`regex_split` stops at a NUL byte).
        piece_words = tf.strings.split(
            tf.strings.regex_replace(normalized, WORD_PATTERN, r" \0 ")
        )
        words = piece_words.flat_values
        word_pieces = piece_words.value_rowids()
        word_rows = tf.gather(piece_rows, word_pieces)
        special_ids = tf.gather(piece_special_ids, word_pieces)
        if max_tokens is not None:
            # Each word gives at least one token: later words are cut anyway.
            keep = _rank_in_row(word_rows, num_texts) < max_tokens
            words = tf.boolean_mask(words, keep)
            word_rows = tf.boolean_mask(word_rows, keep)
            special_ids = tf.boolean_mask(special_ids, keep)
        ids, token_words = self._byte_pair_encode(words, special_ids)
        rows = tf.gather(word_rows, token_words)
        if max_tokens is not None:
            keep = _rank_in_row(rows, num_texts) < max_tokens
            ids = tf.boolean_mask(ids, keep)
            rows = tf.boolean_mask(rows, keep)
        return ids, rows

    def _assert_utf8(self, texts):
        repaired = tf.strings.unicode_transcode(
            texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD
        )
        valid = tf.equal(repaired, texts)
        # The message names the row; the bytes themselves would not print.
        check = tf.debugging.Assert(
            tf.reduce_all(valid),
            ["Text is not valid UTF-8 at batch index", tf.where(~valid)[:1, 0]],
        )
        with tf.control_dependencies([check]):
            return tf.identity(texts)

    def _normalize(self, texts):
        """NFC, whitespace runs to one space, per-character lower case."""
        texts = tf_text.normalize_utf8(texts, "NFC")
        texts = tf.strings.regex_replace(texts, WHITESPACE_PATTERN, " ")
        characters = tf.strings.unicode_split(texts, "UTF-8")
        flat = characters.flat_values
        lowered = self._lowercase_table.lookup(flat)
        flat = tf.where(tf.equal(lowered, ""), flat, lowered)
        return tf.strings.reduce_join(characters.with_flat_values(flat), axis=1)

    def _byte_pair_encode(self, words, special_ids):
        """Byte-level BPE of each word; returns (ids, word index of each id).

        `special_ids` is the id of a word that is a special token, else -1.
        """
        word_bytes = tf.strings.bytes_split(words)
        values = tf.cast(
            tf.reshape(
                tf.io.decode_raw(word_bytes.flat_values, tf.uint8), [-1]
            ),
            tf.int64,
        )
        word_ids = word_bytes.value_rowids()
        positions = tf.range(tf.size(values, out_type=tf.int64))
        is_last = tf.equal(
            positions, tf.gather(word_bytes.row_limits(), word_ids) - 1
        )
        ids = tf.where(
            is_last,
            tf.gather(self._final_byte_ids, values),
            tf.gather(self._inner_byte_ids, values),
        )
        special_ids = tf.gather(special_ids, word_ids)
        ids = tf.where(special_ids >= 0, special_ids, ids)
        num_words = tf.size(words, out_type=tf.int64)

        def merge_once(ids, word_ids, _):
            # Merges, in every word at once, the leftmost occurrence of its
            # best-ranked pair: CLIP's BPE order.
            same_word = tf.equal(word_ids[:-1], word_ids[1:])
            packed = self._merge_table.lookup(ids[:-1] * _ID_LIMIT + ids[1:])
            packed = tf.where(same_word, packed, _NO_MERGE)
            pair_words = word_ids[:-1]
            best = tf.math.unsorted_segment_min(packed, pair_words, num_words)
            active = best < _NO_MERGE
            size = tf.size(packed, out_type=tf.int64)
            candidates = tf.where(
                tf.equal(packed, tf.gather(best, pair_words))
                & (packed < _NO_MERGE),
                tf.range(size),
                size,
            )
            first = tf.math.unsorted_segment_min(
                candidates, pair_words, num_words
            )
            merge_at = tf.boolean_mask(first, active)[:, None]
            merged_ids = tf.boolean_mask(best, active) % _ID_LIMIT
            ids = tf.tensor_scatter_nd_update(ids, merge_at, merged_ids)
            removed = tf.scatter_nd(
                merge_at + 1,
                tf.ones_like(merged_ids, tf.int32),
                tf.shape(ids, out_type=tf.int64),
            )
            keep = tf.equal(removed, 0)
            return (
                tf.boolean_mask(ids, keep),
                tf.boolean_mask(word_ids, keep),
                tf.reduce_any(active),
            )

        ids, word_ids, _ = tf.while_loop(
            lambda ids, word_ids, changed: changed,
            merge_once,
            (ids, word_ids, tf.constant(True)),
            shape_invariants=(
                tf.TensorShape([None]),
                tf.TensorShape([None]),
                tf.TensorShape([]),
            ),
        )
        return ids, word_ids


def _rank_in_row(rows, num_rows):
    """Position of each element within its row (`rows` sorted)."""
    counts = tf.math.bincount(
        rows, minlength=num_rows, maxlength=num_rows, dtype=tf.int64
    )
    starts = tf.cumsum(counts, exclusive=True)
    return tf.range(tf.size(rows, out_type=tf.int64)) - tf.gather(starts, rows)


def _split_on_token(pieces, special_ids, token, token_id):
    """Cuts each non-special piece at every occurrence of `token`.

    Returns the new flat pieces, their special ids (`token_id` for the cut
    out tokens, -1 for text) and the index of the piece each came from.
    """
    segments = tf.strings.split(
        tf.where(special_ids >= 0, "", pieces), sep=token
    )
    parents = segments.value_rowids()
    is_last = tf.equal(
        tf.range(tf.size(parents, out_type=tf.int64)),
        tf.gather(segments.row_limits(), parents) - 1,
    )
    parent_ids = tf.gather(special_ids, parents)
    # Each segment, then the token it was cut at (none after the last).
    texts = tf.reshape(
        tf.stack([segments.flat_values, tf.fill(tf.shape(parents), "")], 1),
        [-1],
    )
    ids = tf.reshape(
        tf.stack(
            [
                parent_ids,
                tf.fill(tf.shape(parents), tf.constant(token_id, tf.int64)),
            ],
            1,
        ),
        [-1],
    )
    keep = tf.reshape(tf.stack([tf.ones_like(is_last), ~is_last], 1), [-1])
    parents = tf.reshape(tf.stack([parents, parents], 1), [-1])
    return (
        tf.boolean_mask(texts, keep),
        tf.boolean_mask(ids, keep),
        tf.boolean_mask(parents, keep),
    )
