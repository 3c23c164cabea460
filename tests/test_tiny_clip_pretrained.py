"""The shipped `tiny_clip_pretrained` preset: loads by name, is the `tiny`
model's CLIP, and retrieves the caption corpus's validation pairs as its
training.json recorded."""

import json
import os

import numpy as np
import pytest

from cmaclip_tf.datasets import load_dataset
from cmaclip_tf.metrics import retrieval_recall
from cmaclip_tf.models import get_model_config
from cmaclip_tf.models import load_clip
from cmaclip_tf.models.clip_components import TRAINING_FILE
from cmaclip_tf.models.clip_loader import resolve_preset
from trainers.training.input_data import RunData

PRESET = "tiny_clip_pretrained"


@pytest.fixture(scope="module")
def pretrained():
    return load_clip(PRESET)


@pytest.fixture(scope="module")
def training():
    with open(os.path.join(resolve_preset(PRESET), TRAINING_FILE)) as f:
        return json.load(f)


def test_is_the_tiny_model_s_clip_and_loads_from_its_folder(pretrained):
    assert get_model_config("tiny")["clip_preset"] == PRESET
    folder = load_clip(resolve_preset(PRESET))
    for a, b in zip(pretrained.backbone.get_weights(),
                    folder.backbone.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_shares_the_random_tiny_clip_s_tokenizer_and_differs_in_weights(
        pretrained, tiny_clip):
    text = "a photo of a striped scarlet a-line dress"
    np.testing.assert_array_equal(np.asarray(pretrained.tokenizer(text)),
                                  np.asarray(tiny_clip.tokenizer(text)))
    assert pretrained.backbone.count_params() == tiny_clip.backbone.count_params()
    differs = [not np.array_equal(a, b) for a, b in zip(
        pretrained.backbone.get_weights(), tiny_clip.backbone.get_weights())]
    assert sum(differs) > len(differs) // 2


def test_records_the_command_that_made_it(training):
    command = training["command"].split()
    assert command[:2] == ["python", "trainers/pretrain.py"]
    for flag in ("--dataset", "--num-examples", "--clip-preset", "--seed",
                 "--epochs", "--batch-size"):
        assert flag in command
    assert command[command.index("--clip-preset") + 1] == "tiny_clip"


@pytest.mark.large  # Embeds the caption corpus's validation split.
def test_retrieval_recall_matches_the_record(pretrained, training):
    flags = training["flags"]
    dataset = load_dataset(flags["dataset"], tasks=(), seed=flags["seed"],
                           num_examples=flags["num_examples"])
    data = RunData(dataset, seed=flags["seed"])
    data.prepare(pretrained, get_model_config(flags["model"]))
    images, texts = [], []
    backbone = pretrained.backbone
    for features, _ in data.eval_batches("validation", 256):
        images.append(backbone.get_vision_embeddings(features["images"]).numpy())
        texts.append(backbone.get_text_embeddings(features["token_ids"]).numpy())
    recall = retrieval_recall(np.concatenate(images), np.concatenate(texts))
    recorded = training["validation"]["best"]
    for key, value in recall.items():
        assert value == pytest.approx(recorded[key], abs=0.005), key
    # And far above the random start it also recorded.
    start = training["validation"]["start"]
    assert recall["image_to_text_recall@5"] > 3 * start["image_to_text_recall@5"]
