"""Atomic writes: the old file or the new, never half, no temporary left."""

import json
import os

import pytest

from cmaclip_tf.runtime.atomic_files import atomic_path
from cmaclip_tf.runtime.atomic_files import write_json


def test_write_json_round_trips_unicode_and_orders_keys_on_request(tmp_path):
    path = str(tmp_path / "record.json")
    write_json(path, {"b": 1, "a": "Straße"})
    text = open(path, encoding="utf-8").read()
    assert json.loads(text) == {"b": 1, "a": "Straße"}
    assert text.index('"b"') < text.index('"a"') and "Straße" in text
    write_json(path, {"b": 1, "a": 2}, sort_keys=True)
    text = open(path, encoding="utf-8").read()
    assert text.index('"a"') < text.index('"b"') and text.endswith("}\n")
    assert os.listdir(tmp_path) == ["record.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = str(tmp_path / "record.json")
    write_json(path, {"epoch": 1})
    with pytest.raises(TypeError):
        # json.dump has written part of the file when it meets the object.
        write_json(path, {"epoch": 2, "bad": object()})
    assert json.load(open(path)) == {"epoch": 1}
    assert os.listdir(tmp_path) == ["record.json"]


def test_atomic_path_keeps_the_suffix_and_replaces_on_success(tmp_path):
    path = str(tmp_path / "best.weights.h5")
    with atomic_path(path) as tmp:
        assert tmp.endswith(".weights.h5") and os.path.dirname(tmp) == str(tmp_path)
        assert not os.path.exists(path)
        open(tmp, "w").write("new")
    assert open(path).read() == "new"
    assert os.listdir(tmp_path) == ["best.weights.h5"]
