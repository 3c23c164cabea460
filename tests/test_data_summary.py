"""The data summary's class lines: counts, the cap, rare and unseen classes."""

from cmaclip_tf.datasets import LabelVocabularies
from trainers.training.data_summary import MAX_CLASSES_SHOWN
from trainers.training.data_summary import class_summary


class CountedDataset:
    """What `class_summary` reads of a `MultiTaskDataset`."""

    def __init__(self, tasks, counts, unseen=None):
        self.tasks = LabelVocabularies(tasks)
        self._counts = counts
        self._unseen = unseen or {}

    def class_counts(self, split):
        return self._counts

    def unknown_labels(self, split):
        return self._unseen.get(split, {})


def test_classes_by_count_with_rare_and_unseen_ones_named():
    dataset = CountedDataset(
        {"color": ["blue", "gren", "green", "red"]},
        {"color": [12, 1, 12, 10]},
        {"test": {("color", "teal"): 2, ("color", "navy"): 3}},
    )
    assert class_summary(dataset) == [
        "color: blue 12, green 12, red 10, gren 1",
        "color: rare in training (<= 2 rows; a typo?): gren 1",
        "test: classes training never saw (rows left out): color navy 3, "
        "color teal 2",
    ]


def test_many_classes_are_capped_and_uncounted_sources_show_names():
    names = [f"sku{i:03d}" for i in range(MAX_CLASSES_SHOWN + 5)]
    counts = list(range(len(names), 0, -1))  # sku000 is the most frequent.
    (line, rare) = class_summary(CountedDataset({"item": names}, {"item": counts}))
    shown = [f"sku{i:03d} {len(names) - i}" for i in range(MAX_CLASSES_SHOWN)]
    assert line == "item: " + ", ".join(shown) + ", and 5 more"
    assert rare == "item: rare in training (<= 2 rows; a typo?): sku016 1, sku015 2"
    uncounted = CountedDataset({"item": names}, None)
    assert class_summary(uncounted) == [
        "item: " + ", ".join(names[:MAX_CLASSES_SHOWN]) + ", and 5 more"]
