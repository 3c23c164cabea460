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

from cmaclip_tf.models.bpe_vocabulary import bytes_to_unicode
from cmaclip_tf.preprocessing import clip_unicode_tables
from cmaclip_tf.preprocessing import row_ops
from cmaclip_tf.preprocessing.clip_text_rules import END_OF_WORD
from cmaclip_tf.preprocessing.clip_text_rules import END_TOKEN
from cmaclip_tf.preprocessing.clip_text_rules import ID_LIMIT
from cmaclip_tf.preprocessing.clip_text_rules import NO_MERGE
from cmaclip_tf.preprocessing.clip_text_rules import START_TOKEN
from cmaclip_tf.preprocessing.clip_text_rules import WHITESPACE_PATTERN
from cmaclip_tf.preprocessing.clip_text_rules import WORD_PATTERN
from cmaclip_tf.preprocessing.clip_text_rules import ranks_follow_parts
from cmaclip_tf.preprocessing.clip_text_rules import read_merges
from cmaclip_tf.preprocessing.clip_text_rules import text_bytes


class TextPreprocessor(tf.Module):
    """Tokenizes and packs text for CLIP's text encoder, graph-compatible.

    Called on a string tensor of shape `[batch]` (or a scalar), returns
    `{"token_ids": int32 [batch, sequence_length], "padding_mask": bool
    [batch, sequence_length]}`: the start token, the text's tokens, the
    end-of-text token, then `pad_token_id`; the mask is true on all but the
    padding. Text longer than the context keeps its first
    `sequence_length - 2` tokens and still ends with the end-of-text token.
    Text that is not valid UTF-8 raises `InvalidArgumentError`.

    BPE time grows with a word's length times the symbols in the batch, and
    a word can be long (CLIP's pattern makes a run of letters, a CJK sentence
    say, one word), so the packed call bounds it. With `K = sequence_length -
    2` kept tokens and `T = max_token_bytes` (no token BPE can emit is longer:
    each is a byte or a merge result), a word of `n` bytes gives at least
    `ceil(n / T)` tokens. So a word whose earlier words in the text already
    give `K` tokens is dropped (exact), and a word with budget `b` (`K` minus
    that lower bound on the tokens before it) is cut to its first
    `(b + K) * T` bytes, extended to the next UTF-8 character start, and
    merged as a prefix (its last byte is no end of word). BPE then sees at
    most `2 * K * T + 3` bytes a word and about `3 * K * T` a text.

    The kept tokens of a cut word lie in its first `b * T` bytes; the other
    `K * T` are a margin for merges that cascade from the cut. For merge
    tables that rank every rule after the rules that build its parts (CLIP's;
    any table BPE training writes), run BPE rank by rank on the whole word
    and on the prefix: their tokens agree left of a frontier that starts at
    the cut and moves left only at a rank whose pair straddles it in one run
    and not in the other, by one token (under `T` bytes). So the kept ids
    differ from the reference only if a chain of more than `K * T / (T - 1)`
    such merges (more than `K`), with strictly increasing ranks, leads from
    the cut into the kept tokens; the tests build one with 5 merges where 4
    is the limit. Long ASCII, CJK and repeated words do not (tested against
    the reference). `tokenize` returns every token and is not bounded.

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
        if len(vocabulary) >= ID_LIMIT:
            raise ValueError(
                f"Vocabularies up to {ID_LIMIT - 1} tokens are supported; "
                f"this one has {len(vocabulary)}."
            )
        self.sequence_length = int(sequence_length)
        self.pad_token_id = int(pad_token_id)
        self.start_token_id = int(vocabulary[START_TOKEN])
        self.end_token_id = int(vocabulary[END_TOKEN])
        # CLIP's BPE maps a symbol missing from the vocabulary to this id.
        self.unknown_token_id = self.end_token_id
        self.vocabulary_size = len(vocabulary)
        merges = read_merges(merges)
        # In bytes of text: each character of a BPE token stands for a byte.
        self.max_token_bytes = max(
            [1] + [text_bytes(a + b) for a, b in merges]
        )

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
        for rank, (a, b) in enumerate(merges):
            if (
                a not in vocabulary
                or b not in vocabulary
                or a + b not in vocabulary
            ):
                raise ValueError(
                    f"Merge rule {a!r} {b!r} uses a token that is not in the "
                    "vocabulary."
                )
            key = vocabulary[a] * ID_LIMIT + vocabulary[b]
            # As CLIP's BPE: a repeated rule keeps its last rank.
            merge_values[key] = rank * ID_LIMIT + vocabulary[a + b]
        self.num_merges = len(merge_values)
        self._merges_all_occurrences = ranks_follow_parts(merge_values)
        keys = list(merge_values) or [-1]
        values = list(merge_values.values()) or [NO_MERGE]
        self._merge_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(keys, tf.int64), tf.constant(values, tf.int64)
            ),
            default_value=NO_MERGE,
        )
        lowercase = clip_unicode_tables.LOWERCASE
        self._lowercase_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant([chr(c) for c, _ in lowercase]),
                tf.constant([low for _, low in lowercase]),
            ),
            default_value="",
        )
        self._preprocess_batch = tf.function(
            self._preprocess,
            input_signature=[tf.TensorSpec([None], tf.string)],
            autograph=False,
        )
        # One graph for `tokenize` too: run op by op, BPE's loop is slow.
        self._tokenize_batch = tf.function(
            lambda texts: self._tokenize(texts, max_tokens=None),
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
        if tf.executing_eagerly():
            ids, rows = self._tokenize_batch(tf.reshape(texts, [-1]))
        else:
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
        columns = row_ops.rank_in_row(rows, batch) + 1
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
            pieces, piece_special_ids, parents = row_ops.split_on_token(
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
        word_bytes = tf.cast(tf.strings.length(words), tf.int64)
        max_bytes = None
        if max_tokens is not None:
            # A word of n bytes gives at least ceil(n / T) tokens, so a word
            # can only add `budget` kept tokens (see the class docstring).
            token_bytes = self.max_token_bytes
            budget = max_tokens - row_ops.cumsum_in_row(
                (word_bytes + token_bytes - 1) // token_bytes,
                word_rows,
                num_texts,
            )
            keep = budget > 0
            words = tf.boolean_mask(words, keep)
            word_rows = tf.boolean_mask(word_rows, keep)
            special_ids = tf.boolean_mask(special_ids, keep)
            word_bytes = tf.boolean_mask(word_bytes, keep)
            budget = tf.boolean_mask(budget, keep)
            max_bytes = (budget + max_tokens) * token_bytes
        ids, token_words = self._byte_pair_encode(
            words, word_bytes, special_ids, max_bytes
        )
        rows = tf.gather(word_rows, token_words)
        if max_tokens is not None:
            keep = row_ops.rank_in_row(rows, num_texts) < max_tokens
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

    def _byte_pair_encode(self, words, word_bytes, special_ids, max_bytes):
        """Byte-level BPE of each word; returns (ids, word index of each id).

        `word_bytes` is each word's length in bytes, `special_ids` the id of a
        word that is a special token, else -1, and `max_bytes` (None: no cut)
        where each word is cut: at the first character start at or after it.
        """
        if max_bytes is None:
            max_bytes = word_bytes
        # The next character starts at most 3 bytes past the cut.
        pieces = tf.strings.bytes_split(
            tf.strings.substr(words, tf.zeros_like(max_bytes), max_bytes + 3)
        )
        values = tf.cast(
            tf.reshape(tf.io.decode_raw(pieces.flat_values, tf.uint8), [-1]),
            tf.int64,
        )
        word_ids = pieces.value_rowids()
        num_words = tf.size(words, out_type=tf.int64)
        offsets = tf.range(tf.size(values, out_type=tf.int64)) - tf.gather(
            pieces.row_starts(), word_ids
        )
        starts_character = (values < 0x80) | (values >= 0xC0)
        ends = tf.math.unsorted_segment_min(
            tf.where(
                starts_character
                & (offsets >= tf.gather(max_bytes, word_ids)),
                offsets,
                tf.int64.max,
            ),
            word_ids,
            num_words,
        )
        ends = tf.minimum(ends, tf.minimum(max_bytes + 3, word_bytes))
        word_ends = tf.gather(ends, word_ids)
        # A cut word is a prefix: its last byte is not an end of word.
        is_last = tf.equal(offsets, word_ends - 1) & tf.gather(
            tf.equal(ends, word_bytes), word_ids
        )
        ids = tf.where(
            is_last,
            tf.gather(self._final_byte_ids, values),
            tf.gather(self._inner_byte_ids, values),
        )
        word_special_ids = tf.gather(special_ids, word_ids)
        ids = tf.where(word_special_ids >= 0, word_special_ids, ids)
        kept = offsets < word_ends
        ids = tf.boolean_mask(ids, kept)
        word_ids = tf.boolean_mask(word_ids, kept)

        def merge_step(ids, word_ids, done_ids, done_words, step):
            # Each word merges its best-ranked pair at its leftmost
            # occurrence (CLIP's BPE order), or at every occurrence, left to
            # right, where the merge table makes that the same.
            same_word = tf.equal(word_ids[:-1], word_ids[1:])
            packed = self._merge_table.lookup(ids[:-1] * ID_LIMIT + ids[1:])
            packed = tf.where(same_word, packed, NO_MERGE)
            pair_words = word_ids[:-1]
            best = tf.math.unsorted_segment_min(packed, pair_words, num_words)
            is_best = tf.equal(packed, tf.gather(best, pair_words)) & (
                packed < NO_MERGE
            )
            if self._merges_all_occurrences:
                merge = row_ops.every_other_in_runs(is_best)
            else:
                merge = row_ops.first_in_segment(is_best, pair_words, num_words)
            ids = tf.where(
                tf.concat([merge, [False]], 0),
                tf.concat([packed % ID_LIMIT, [0]], 0),
                ids,
            )
            # Words without a merge left are final: set them aside so that
            # later steps only touch the words still merging.
            done = tf.equal(tf.gather(best, word_ids), NO_MERGE)
            done_ids = done_ids.write(step, tf.boolean_mask(ids, done))
            done_words = done_words.write(
                step, tf.boolean_mask(word_ids, done)
            )
            keep = ~tf.concat([[False], merge], 0) & ~done
            return (
                tf.boolean_mask(ids, keep),
                tf.boolean_mask(word_ids, keep),
                done_ids,
                done_words,
                step + 1,
            )

        def parts():
            # Starts with an empty part: concat() needs one when no word is.
            return tf.TensorArray(
                tf.int64,
                size=0,
                dynamic_size=True,
                infer_shape=False,
                element_shape=[None],
            ).write(0, tf.zeros([0], tf.int64))

        _, _, done_ids, done_words, _ = tf.while_loop(
            lambda ids, *_: tf.size(ids) > 0,
            merge_step,
            (ids, word_ids, parts(), parts(), tf.constant(1)),
            shape_invariants=(
                tf.TensorShape([None]),
                tf.TensorShape([None]),
                tf.TensorShape(None),
                tf.TensorShape(None),
                tf.TensorShape([]),
            ),
        )
        word_ids = done_words.concat()
        # Words finish in any order; each one's tokens stay together.
        order = tf.argsort(word_ids, stable=True)
        return tf.gather(done_ids.concat(), order), tf.gather(word_ids, order)
