"""TextPreprocessor: ids equal to keras-hub's eager CLIPTokenizer (the CLIP
reference BPE) eagerly, in tf.data, in a tf.function and after a SavedModel
round trip."""

import json
import random

import numpy as np
import pytest
import tensorflow as tf

from cmaclip_tf.data import TextPreprocessor
from cmaclip_tf.data import clip_unicode_tables
from cmaclip_tf.models import bpe_vocabulary

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


def test_unicode_tables_match_the_installed_reference():
    assert (
        clip_unicode_tables.compute_reference_tables()
        == clip_unicode_tables.current_tables()
    )
