"""Builds keras-hub's `CLIPTokenizer` from a Hugging Face checkpoint's files.

keras-hub pools text at `argmax(token_ids)`, so `<|endoftext|>` must have
the highest id in the vocabulary (true of every released CLIP); checked.
"""

import json
import os

import keras_hub

VOCABULARY_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
TOKENIZER_FILE = "tokenizer.json"
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"


def convert_tokenizer(checkpoint_dir):
    """Builds a keras-hub `CLIPTokenizer` from a checkpoint's tokenizer files.

    Reads `vocab.json` + `merges.txt` when both are present, else
    `tokenizer.json` (merges stored as `"a b"` strings or as `["a", "b"]`
    pairs, the newer format).

    Raises:
        FileNotFoundError: none of the tokenizer files are there.
        ValueError: the tokenizer is not CLIP's byte-level BPE, or
            `<|endoftext|>` does not have the highest id.
    """
    vocabulary_path = os.path.join(checkpoint_dir, VOCABULARY_FILE)
    merges_path = os.path.join(checkpoint_dir, MERGES_FILE)
    tokenizer_path = os.path.join(checkpoint_dir, TOKENIZER_FILE)
    if os.path.isfile(vocabulary_path) and os.path.isfile(merges_path):
        source = vocabulary_path
        with open(vocabulary_path, encoding="utf-8") as f:
            vocabulary = json.load(f)
        with open(merges_path, encoding="utf-8") as f:
            merges = [
                line.rstrip("\r\n")
                for line in f
                if line.strip() and not line.startswith("#version")
            ]
    elif os.path.isfile(tokenizer_path):
        source = tokenizer_path
        vocabulary, merges = _read_tokenizer_json(tokenizer_path)
    else:
        raise FileNotFoundError(
            f"No tokenizer in {checkpoint_dir}: expected {VOCABULARY_FILE} "
            f"and {MERGES_FILE}, or {TOKENIZER_FILE}. Save them with "
            "CLIPTokenizer.from_pretrained(...).save_pretrained(DIR)."
        )
    for token in (START_TOKEN, END_TOKEN):
        if token not in vocabulary:
            raise ValueError(
                f"{source} has no {token}; not a CLIP tokenizer vocabulary."
            )
    if vocabulary[END_TOKEN] != max(vocabulary.values()):
        raise ValueError(
            f"In {source}, {END_TOKEN} has id {vocabulary[END_TOKEN]} but the "
            f"highest id is {max(vocabulary.values())}. keras-hub's CLIP pools "
            "text at argmax(token_ids), so the end token must have the "
            "highest id."
        )
    return keras_hub.models.CLIPTokenizer(vocabulary=vocabulary, merges=merges)


def _read_tokenizer_json(path):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    model = data.get("model") or {}
    if model.get("type") != "BPE" or model.get("end_of_word_suffix") != "</w>":
        raise ValueError(
            f"{path} is not CLIP's byte-level BPE tokenizer (model type "
            f"{model.get('type')!r}, end_of_word_suffix "
            f"{model.get('end_of_word_suffix')!r}; expected 'BPE' and '</w>')."
        )
    vocabulary = dict(model["vocab"])
    for token in data.get("added_tokens", []):
        vocabulary.setdefault(token["content"], token["id"])
    merges = []
    for merge in model.get("merges", []):
        # Older files store "a b"; newer ones ["a", "b"] (tokens may then
        # hold spaces, which CLIP's byte-level tokens never do).
        pair = merge.split(" ") if isinstance(merge, str) else list(merge)
        if len(pair) != 2 or any(" " in token for token in pair):
            raise ValueError(f"{path}: cannot use the merge rule {merge!r}.")
        merges.append(" ".join(pair))
    return vocabulary, merges
