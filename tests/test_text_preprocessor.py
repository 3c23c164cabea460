"""TextPreprocessor: ids equal to keras-hub's eager CLIPTokenizer (the CLIP
reference BPE) eagerly, in tf.data, in a tf.function and after a SavedModel
round trip."""

import json
import random

import numpy as np
import pytest
import tensorflow as tf

from cmaclip_tf.models import bpe_vocabulary
from cmaclip_tf.preprocessing import TextPreprocessor
from cmaclip_tf.preprocessing import clip_unicode_tables
from cmaclip_tf.preprocessing.clip_text_rules import END_TOKEN
from cmaclip_tf.preprocessing.clip_text_rules import START_TOKEN

SEQUENCE_LENGTH = 32

CASES = {
    "digits and decimals": "Size 10, 3.14 m, 1000 pcs, v2.0-rc1, 2024",
    "combining accent": "Cafe\u0301 cre\u0300me bru\u0302le\u0301e",
    "precomposed accent": "Café crème brûlée",
    "non-breaking and em spaces": "red\u00a0dress\u2003blue\u2009top\u3000hat",
    "upper-case non-ASCII": "ÉTÉ ÇA ÖL ΣΟΦΙΑ ΟΔΟΣ İSTANBUL ẞ STRASSE Ǆ",
    "full-width letters": "ＡＢＣ ｄｒｅｓｓ １２３",
    "emoji": "Party dress 👗🔥✨ 👩🏽‍🍳",
    "CJK": "连衣裙 ワンピース 원피스",
    "apostrophes": "women's it's don't we'll I'm 'tis rock'n'roll ’curly’",
    "longer than the context": " ".join(["striped cotton summer dress"] * 20),
    "empty": "",
    "whitespace only": " \t\n ",
    "special tokens": "a<|endoftext|>b <|startoftext|> <|ENDOFTEXT|>",
    "control characters": "tab\tnew\nline\rnul\x00x",
}


def reference_ids(tokenizer, texts, length=SEQUENCE_LENGTH):
    """keras-hub's eager tokenizer, packed as CLIPPreprocessor packs."""
    rows = []
    for text in texts:
        ids = [int(i) for i in tokenizer.tokenize(text)][: length - 2]
        ids = [tokenizer.start_token_id] + ids + [tokenizer.end_token_id]
        rows.append(ids + [tokenizer.pad_token_id] * (length - len(ids)))
    return np.array(rows, np.int32)


@pytest.fixture(scope="module")
def tokenizer(tiny_clip):
    return tiny_clip.tokenizer


@pytest.fixture(scope="module")
def preprocessor(tokenizer):
    return TextPreprocessor.from_tokenizer(tokenizer, SEQUENCE_LENGTH)


def test_every_case_equals_the_reference_eagerly_in_tf_data_and_tf_function(
    tokenizer, preprocessor
):
    texts = list(CASES.values())
    expected = reference_ids(tokenizer, texts)

    eager = preprocessor(tf.constant(texts))
    np.testing.assert_array_equal(eager["token_ids"].numpy(), expected)

    dataset = (
        tf.data.Dataset.from_tensor_slices(texts)
        .batch(5)
        .map(lambda t: preprocessor(t)["token_ids"])
    )
    np.testing.assert_array_equal(
        np.concatenate(list(dataset.as_numpy_iterator())), expected
    )

    function = tf.function(lambda t: preprocessor(t)["token_ids"])
    np.testing.assert_array_equal(
        function(tf.constant(texts)).numpy(), expected
    )

    # Scalars, one at a time.
    for text, row in zip(texts, expected):
        np.testing.assert_array_equal(
            preprocessor(text)["token_ids"].numpy(), row
        )


def test_packing_start_end_padding_and_mask(tokenizer, preprocessor):
    outputs = preprocessor(
        tf.constant([CASES["empty"], CASES["longer than the context"], "red"])
    )
    ids, mask = outputs["token_ids"].numpy(), outputs["padding_mask"].numpy()
    start, end = tokenizer.start_token_id, tokenizer.end_token_id
    assert ids.dtype == np.int32 and mask.dtype == bool
    # Empty text: start, end, then 30 pads.
    assert (
        ids[0, :2].tolist() == [start, end] and ids[0, 2:].tolist() == [0] * 30
    )
    assert mask[0].tolist() == [True, True] + [False] * 30
    # Truncated: all 32 positions used and the last is still end-of-text.
    assert ids[1, 0] == start and ids[1, -1] == end and mask[1].all()
    # "red" is one token in the tiny vocabulary.
    assert ids[2, :3].tolist() == [start, tokenizer.vocabulary["red</w>"], end]
    assert mask[2].sum() == 3


def test_matches_the_reference_on_random_multilingual_text():
    """A vocabulary with merges over accents, Greek, CJK and emoji bytes."""
    rng = random.Random(0)
    tables = clip_unicode_tables
    pool = [rng.randint(a, b) for a, b in tables.LETTERS[::9]]
    pool += [rng.randint(a, b) for a, b in tables.NUMBERS[::3]]
    pool += [a for a, _ in tables.WHITESPACE] + [
        c for c, _ in tables.LOWERCASE[::11]
    ]
    pool += list(range(0x300, 0x340, 5)) + [
        0x1F457,
        0x200D,
        0xFE0F,
        0x3A3,
        0x130,
        0x2019,
    ]
    words = (
        "red dress 3.14 don't it's <|endoftext|> café ÉTÉ straße ΟΔΟΣ".split()
    )

    def random_text():
        parts = []
        for _ in range(rng.randint(0, 9)):
            if rng.random() < 0.4:
                parts.append(rng.choice(words))
            else:
                parts.append(
                    "".join(
                        chr(rng.choice(pool)) for _ in range(rng.randint(1, 5))
                    )
                )
            parts.append(rng.choice([" ", "", "\u00a0", "\n", "'s "]))
        return "".join(parts)

    texts = [random_text() for _ in range(400)]
    vocabulary, merges = bpe_vocabulary.learn_bpe(texts[:200] + words, 600)
    merges_text = bpe_vocabulary.merges_to_text(merges)
    import keras_hub

    tokenizer = keras_hub.models.CLIPTokenizer(
        vocabulary=vocabulary, merges=merges_text.splitlines()
    )
    preprocessor = TextPreprocessor(vocabulary, merges_text.splitlines(), 40)
    got = preprocessor(tf.constant(texts))["token_ids"].numpy()
    expected = reference_ids(tokenizer, texts, length=40)
    mismatches = [
        t for t, g, e in zip(texts, got, expected) if not (g == e).all()
    ]
    assert not mismatches, mismatches[:3]
    # Unpacked and untruncated too.
    ragged = preprocessor.tokenize(tf.constant(texts[:100]))
    for text, ids in zip(texts[:100], ragged):
        assert ids.numpy().tolist() == [
            int(i) for i in tokenizer.tokenize(text)
        ]


def _long_word_texts(words, rng, cut):
    """Single long words and long words among others, at many lengths and
    just around `cut`, where a single word is cut."""
    letters = "".join(w for w in words if w.isalpha())

    def concatenated(n):
        start = rng.randrange(len(letters))
        return (letters * (n // len(letters) + 2))[start : start + n]

    runs = {
        "ascii": concatenated,
        "random letters": lambda n: "".join(
            rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n)
        ),
        "cjk": lambda n: "".join(
            chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(n // 3)
        ),
        "repeated cjk": lambda n: "连衣裙" * (n // 9),
        "a": lambda n: "a" * n,
        "ab": lambda n: "ab" * (n // 2),
        "dress": lambda n: "dress" * (n // 5),
        "accents": lambda n: "aé" * (n // 3),
        "emoji": lambda n: "👗" * (n // 4),
        "punctuation": lambda n: "!?" * (n // 2),
    }
    texts = []
    lengths = [1, 40, 1000, 4000] + list(range(cut - 4, cut + 8))
    for make in runs.values():
        texts += [make(n) for n in lengths]
        texts.append("red striped " + make(700) + " dress")
        texts.append(make(600) + " " + make(600))
        texts.append(" ".join(make(rng.randint(1, 60)) for _ in range(30)))
    return texts


@pytest.mark.parametrize("sequence_length", [3, 8, 32, 77])
def test_long_words_equal_the_reference_truncated(tokenizer, sequence_length):
    """Cut words (see the class docstring) still give the reference's kept
    ids: ASCII, CJK and repeated runs, at and around the cut."""
    preprocessor = TextPreprocessor.from_tokenizer(tokenizer, sequence_length)
    assert preprocessor.max_token_bytes == 5  # "women</w>", "dress</w>"
    # A single word has budget K, so it is cut after 2 * K * T bytes.
    cut = 2 * (sequence_length - 2) * 5
    rng = random.Random(sequence_length)
    texts = _long_word_texts(list(tokenizer.vocabulary), rng, cut)
    got = preprocessor(tf.constant(texts))["token_ids"].numpy()
    expected = reference_ids(tokenizer, texts, length=sequence_length)
    mismatches = [
        t[:40] for t, g, e in zip(texts, got, expected) if not (g == e).all()
    ]
    assert not mismatches, mismatches[:3]


def test_long_words_equal_the_reference_with_long_tokens():
    """A vocabulary learned from long runs: tokens up to dozens of bytes and
    many merges, so more room for merges to cascade from a cut."""
    rng = random.Random(1)
    corpus = []
    for _ in range(60):
        corpus.append("连衣裙" * rng.randint(1, 12) + "红色" * rng.randint(0, 6))
        corpus.append("ha" * rng.randint(1, 20) + " dress" * rng.randint(1, 6))
        corpus.append("aaaa" * rng.randint(1, 16) + "!" * rng.randint(1, 9))
    vocabulary, merges = bpe_vocabulary.learn_bpe(corpus, 400)
    merges_text = bpe_vocabulary.merges_to_text(merges).splitlines()
    import keras_hub

    tokenizer = keras_hub.models.CLIPTokenizer(
        vocabulary=vocabulary, merges=merges_text
    )
    preprocessor = TextPreprocessor(vocabulary, merges_text, 10)
    assert preprocessor.max_token_bytes >= 24
    texts = [rng.choice(corpus) * rng.randint(1, 60) for _ in range(60)]
    texts += [
        "".join(rng.choice(corpus).replace(" ", "") for _ in range(40))
        for _ in range(60)
    ]
    got = preprocessor(tf.constant(texts))["token_ids"].numpy()
    expected = reference_ids(tokenizer, texts, length=10)
    mismatches = [
        t[:40] for t, g, e in zip(texts, got, expected) if not (g == e).all()
    ]
    assert not mismatches, mismatches[:3]


def test_unordered_merge_table_merges_one_occurrence_at_a_time():
    """Rules ranked before the rules making their parts: a merge can create
    a pair that outranks the other occurrences of the one just merged. Long
    words are cut too."""
    rng = random.Random(2)
    runs = ["red", "dress", "aaaaaaa", "ababab", "连衣裙连衣裙"]
    texts = [
        " ".join(
            rng.choice(runs) * rng.randint(1, 4)
            for _ in range(rng.randint(1, 5))
        )
        for _ in range(150)
    ]
    vocabulary, merges = bpe_vocabulary.learn_bpe(texts, 300)
    rng.shuffle(merges)
    merges_text = bpe_vocabulary.merges_to_text(merges).splitlines()
    import keras_hub

    tokenizer = keras_hub.models.CLIPTokenizer(
        vocabulary=vocabulary, merges=merges_text
    )
    texts += ["".join(rng.choice(runs) for _ in range(200)) for _ in range(20)]
    for sequence_length in (8, 40):
        preprocessor = TextPreprocessor(
            vocabulary, merges_text, sequence_length
        )
        assert not preprocessor._merges_all_occurrences
        got = preprocessor(tf.constant(texts))["token_ids"].numpy()
        np.testing.assert_array_equal(
            got, reference_ids(tokenizer, texts, length=sequence_length)
        )


def test_max_token_bytes_counts_text_bytes_without_end_of_word():
    byte_chars = bpe_vocabulary.bytes_to_unicode()
    e_acute = "".join(byte_chars[b] for b in "é".encode())  # "Ã©"
    base = list(byte_chars.values())
    tokens = base + [c + "</w>" for c in base]
    merges = [
        ("c", "a"),
        ("ca", "f"),
        (e_acute[0], e_acute[1] + "</w>"),
        ("caf", e_acute + "</w>"),
    ]
    tokens += ["ca", "caf", e_acute + "</w>", "caf" + e_acute + "</w>"]
    tokens += [START_TOKEN, END_TOKEN]
    vocabulary = {token: i for i, token in enumerate(tokens)}
    preprocessor = TextPreprocessor(vocabulary, merges, 8)
    # "café" is 5 bytes of text, 9 characters with "</w>", 11 UTF-8 bytes.
    assert preprocessor.max_token_bytes == 5
    assert preprocessor._merges_all_occurrences
    ids = preprocessor.tokenize(tf.constant(["café"])).numpy()[0].tolist()
    assert ids == [vocabulary["caf" + e_acute + "</w>"]]


@pytest.mark.parametrize(
    "rules, equal",
    [
        # A chain of 4 merges from the cut at byte 8 to byte 4: absorbed.
        (["hi", "gh", "fg", "ef", "ab", "cd"], True),
        # 5 reach the kept tokens: "ab c" (reference) and "ab cd" (cut).
        (["hi", "gh", "fg", "ef", "de", "ab", "cd"], False),
        # A chain left of the margin: the cut does not touch it.
        (["de", "cd", "bc", "ab"], True),
    ],
)
def test_a_merge_cascade_across_the_cut_is_the_documented_limit(
    rules, equal
):
    """K = 2 kept tokens and T = 2 cut "abcdefghij" after 8 bytes; the kept
    tokens can differ only when a chain of more than K * T / (T - 1) = 4
    merges, each caused by the one before, leads from the cut into the first
    4 bytes."""
    byte_chars = bpe_vocabulary.bytes_to_unicode()
    base = list(byte_chars.values())
    merges = [tuple(rule) for rule in rules]
    tokens = base + [c + "</w>" for c in base] + rules
    tokens += [START_TOKEN, END_TOKEN]
    vocabulary = {token: i for i, token in enumerate(tokens)}
    merges_text = bpe_vocabulary.merges_to_text(merges).splitlines()
    import keras_hub

    tokenizer = keras_hub.models.CLIPTokenizer(
        vocabulary=vocabulary, merges=merges_text
    )
    preprocessor = TextPreprocessor(vocabulary, merges_text, 4)
    assert preprocessor.max_token_bytes == 2
    got = preprocessor(tf.constant(["abcdefghij"]))["token_ids"].numpy()
    expected = reference_ids(tokenizer, ["abcdefghij"], length=4)
    assert (got == expected).all() == equal
    if not equal:
        assert [tokens[i] for i in got[0, 1:3]] == ["ab", "cd"]
        assert [tokens[i] for i in expected[0, 1:3]] == ["ab", "c"]


def test_from_files_equals_from_tokenizer(tmp_path, tokenizer, preprocessor):
    vocabulary_file = tmp_path / "vocab.json"
    merges_file = tmp_path / "merges.txt"
    vocabulary_file.write_text(
        json.dumps(dict(tokenizer.vocabulary)), encoding="utf-8"
    )
    merges_file.write_text(
        "".join(f"{m}\n" for m in tokenizer.merges), encoding="utf-8"
    )
    from_files = TextPreprocessor.from_files(
        str(vocabulary_file), str(merges_file), SEQUENCE_LENGTH
    )
    texts = tf.constant(list(CASES.values()))
    np.testing.assert_array_equal(
        from_files(texts)["token_ids"].numpy(),
        preprocessor(texts)["token_ids"].numpy(),
    )


def test_invalid_utf8_is_an_invalid_argument_error(preprocessor):
    with pytest.raises(tf.errors.InvalidArgumentError, match="not valid UTF-8"):
        preprocessor(tf.constant([b"fine", b"caf\xe9"]))


def _graph_ops(concrete_function):
    graph_def = concrete_function.graph.as_graph_def()
    ops = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        ops |= {node.op for node in function.node_def}
    return ops


def test_graph_is_servable_and_has_no_growing_cache(preprocessor):
    function = tf.function(lambda t: preprocessor(t)).get_concrete_function(
        tf.TensorSpec([None], tf.string)
    )
    ops = _graph_ops(function)
    assert not {"PyFunc", "EagerPyFunc", "PyFuncStateless"} & ops
    # Static tables only: nothing inserts into a table at run time.
    assert not {o for o in ops if "Insert" in o or "Mutable" in o}
    assert "NormalizeUTF8" in ops  # TensorFlow Text, which TF Serving links.


def test_saved_model_round_trip(tmp_path, tokenizer, preprocessor):
    module = tf.Module()
    module.preprocessor = preprocessor
    module.serve = tf.function(
        lambda t: preprocessor(t),
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
    tf.saved_model.save(module, str(tmp_path / "text"))
    restored = tf.saved_model.load(str(tmp_path / "text"))
    texts = list(CASES.values())
    np.testing.assert_array_equal(
        restored.serve(tf.constant(texts))["token_ids"].numpy(),
        reference_ids(tokenizer, texts),
    )


@pytest.mark.large  # Recomputes the tables over the whole of Unicode.
def test_unicode_tables_match_the_installed_reference():
    assert (
        clip_unicode_tables.compute_reference_tables()
        == clip_unicode_tables.current_tables()
    )
