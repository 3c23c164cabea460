"""The run's classes on the console: each task's classes with their training
counts, classes seen too rarely in training to learn (a typo such as `gren`
makes one), and classes of validation or test that training never saw."""

# Classes shown per task; the rest are counted.
MAX_CLASSES_SHOWN = 12
# A class seen this often or less in training is flagged as rare.
RARE_CLASS_COUNT = 2


def class_summary(dataset):
    """Console lines on the classes of `dataset` (a `MultiTaskDataset`).

    Example lines:

        color: red 50, blue 49, green 49, gren 1
        color: rare in training (<= 2 rows; a typo?): gren 1
        validation: classes training never saw (rows left out): color teal 1
    """
    lines = []
    counts = dataset.class_counts("train")
    for task, vocabulary in dataset.tasks.items():
        if counts is None:
            named = list(vocabulary.names)
            lines.append(f"{task}: {_capped(named)}")
            continue
        by_count = sorted(zip(vocabulary.names, counts[task]),
                          key=lambda pair: (-pair[1], pair[0]))
        lines.append(f"{task}: " + _capped([f"{n} {c}" for n, c in by_count]))
        rare = [f"{n} {c}" for n, c in reversed(by_count) if c <= RARE_CLASS_COUNT]
        if rare:
            lines.append(f"{task}: rare in training (<= {RARE_CLASS_COUNT} rows; "
                         f"a typo?): {_capped(rare)}")
    for split in ("validation", "test"):
        unseen = dataset.unknown_labels(split)
        if unseen:
            named = [f"{task} {name} {n}" for (task, name), n in sorted(
                unseen.items(), key=lambda item: (item[0][0], -item[1]))]
            lines.append(f"{split}: classes training never saw (rows left "
                         f"out): {_capped(named)}")
    return lines


def _capped(items):
    shown = ", ".join(items[:MAX_CLASSES_SHOWN])
    more = len(items) - MAX_CLASSES_SHOWN
    return shown + (f", and {more} more" if more > 0 else "")
