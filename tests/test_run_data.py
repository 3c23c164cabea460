"""The trainer's data on a user's catalogue: exact step counts with bad rows,
epoch order and resume, attention maps from encoded images."""

import pytest
import tensorflow as tf
from fixtures_data import write_catalogue

from cmaclip_tf.datasets import load_dataset
from cmaclip_tf.models import create_cma_clip
from cmaclip_tf.models import get_model_config
from trainers.training.input_data import RunData
from trainers.training.run_logger import RunLogger


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return write_catalogue(str(tmp_path_factory.mktemp("catalogue")))


@pytest.fixture(scope="module")
def data(catalogue, tiny_clip):
    dataset = load_dataset("manifest", manifest=catalogue["train"],
                           val_manifest=catalogue["val"])
    run_data = RunData(dataset, seed=4)
    run_data.prepare(tiny_clip, get_model_config("tiny"))
    return run_data


def ids(batches):
    return [i.decode() for f, _ in batches for i in f["id"].numpy()]


def test_steps_per_epoch_count_good_records(data, catalogue):
    # 37 rows, a missing and a corrupt image: 35 examples. At batch 18 that
    # is one step; counting the 37 rows would promise two, then run dry.
    assert catalogue["train_rows"] == 37
    assert data.num_train_examples == 35
    batches = list(data.train_batches(0, 18))
    assert len(batches) == 35 // 18 == 1
    assert all(len(labels["color"]) == 18 for _, labels in batches)
    assert data.bad_record_counts()["train"] == catalogue["bad_train"]


def test_resume_replays_the_epoch_from_where_it_stopped(data):
    def order(epoch, skip_batches=0):
        raw = data.dataset.epoch_split("train", data.seed, epoch,
                                       skip_batches * 5)
        return [e["id"].decode() for e in raw.as_numpy_iterator()]

    full = order(1)
    assert len(full) == 35 and order(1) == full
    assert order(1, skip_batches=3) == full[15:]
    assert order(2) != full
    # The manifest is sorted by color; the epoch's first batch is not.
    first = data.dataset.epoch_split("train", data.seed, 1).take(7)
    assert len({int(e["labels"]["color"]) for e in first.as_numpy_iterator()}) > 1


@pytest.mark.large  # Renders attention maps of a model.
def test_attention_maps_log_from_encoded_images_with_a_bad_first_record(
    data, tiny_clip, tmp_path
):
    # The validation manifest's first row has a color train never names.
    assert data.bad_record_counts()["validation"] == {"unknown_label": 1}
    model, _, _ = create_cma_clip(
        "tiny", {t: len(v) for t, v in data.tasks.items()}
    )
    features, texts = data.preview("validation", 3)
    assert features["images"].dtype == tf.float32 and len(texts) == 3
    assert texts[0] == "red item 2"  # The first good record.
    logger = RunLogger(str(tmp_path))
    logger.attention_maps("warmup", 1, model, data, num_examples=3)
    path = next((tmp_path / "tensorboard" / "warmup" / "validation").glob("events*"))
    images = [
        value for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
    ]
    assert [v.tag for v in images] == ["attention_maps"]
    # A summary image holds width, height, then one PNG per figure.
    assert len(images[0].tensor.string_val) == 2 + 3


@pytest.mark.large  # Three epochs of batches; the flips themselves: test_label_noise.py.
def test_label_noise_flips_train_labels_the_same_way_every_epoch(catalogue, tiny_clip):
    dataset = load_dataset("manifest", manifest=catalogue["train"],
                           val_manifest=catalogue["val"])
    clean = RunData(dataset, seed=4)
    noisy = RunData(dataset, seed=4, label_noise=0.5)
    for data in (clean, noisy):
        data.prepare(tiny_clip, get_model_config("tiny"))

    def labels(data, epoch):
        raw = data._noisy(data.dataset.epoch_split("train", 4, epoch))
        return {e["id"]: int(e["labels"]["color"]) for e in raw.as_numpy_iterator()}

    truth, first, second = labels(clean, 0), labels(noisy, 0), labels(noisy, 1)
    assert first == second  # Keyed by example, not by epoch or position.
    flipped = sum(first[i] != truth[i] for i in truth)
    assert 0.25 * len(truth) < flipped < 0.75 * len(truth)
    # The batches the trainer reads carry the flipped labels.
    batched = [int(y) for _, b in noisy.train_batches(0, 5) for y in b["color"]]
    order = [e["id"] for e in noisy.dataset.epoch_split("train", 4, 0)
             .as_numpy_iterator()]
    assert batched == [first[i] for i in order[: len(batched)]]
    # Evaluation reads clean labels.
    val = [int(y) for _, labels_ in noisy.eval_batches("validation", 8)
           for y in labels_["color"]]
    assert val == [int(y) for _, labels_ in clean.eval_batches("validation", 8)
                   for y in labels_["color"]]


@pytest.mark.large  # Several models built to compare fingerprints.
def test_the_cache_fingerprint_covers_preprocessing_and_precision(catalogue):
    import dataclasses

    from micro_model import micro_model_config

    from trainers.training.stage_schedule import STAGES
    from trainers.training.stage_trainer import StageTrainer

    dataset = load_dataset("manifest", manifest=catalogue["train"],
                           val_manifest=catalogue["val"])
    data = RunData(dataset, seed=4)

    def fingerprint(config=None, clip_changes=None, dtype=None):
        model, clip, model_config = create_cma_clip(
            micro_model_config(), dataset.tasks.num_classes, dtype=dtype)
        if clip_changes:
            converter = type(clip.image_converter).from_config(
                {**clip.image_converter.get_config(), **clip_changes})
            clip = dataclasses.replace(clip, image_converter=converter)
        data.prepare(clip, {**model_config, **(config or {})})
        trainer = StageTrainer(model, STAGES["warmup"],
                               tf.distribute.get_strategy(), 1e-3, 0.0)
        return data.cache_fingerprint(trainer)

    # The warm-up's frozen CLIP is the preset's: the same weights each time.
    base = fingerprint()
    assert fingerprint() == base
    length = micro_model_config()["sequence_length"]
    for changed in (
        fingerprint({"sequence_length": length - 1}),
        fingerprint(clip_changes={"image_size": (40, 40)}),
        fingerprint(clip_changes={"interpolation": "nearest"}),
        fingerprint(clip_changes={"scale": 0.5}),
        fingerprint(dtype="mixed_bfloat16"),
    ):
        assert changed != base
