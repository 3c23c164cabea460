"""Which manifest columns are tasks when the user names none (`--tasks`).

A column is a task to classify unless it cannot be one: its values are
nearly all distinct (an id such as `sku`: fewer than two training rows per
class on average), no training row has a value, or the validation manifest
has no value for it (nothing to select a checkpoint on). Columns left out
are named with the reason, so the user can name them with `--tasks`.
"""

# A column whose distinct values exceed this share of its labelled rows is
# an id, not a task: fewer than two examples per class on average.
ID_DISTINCT_SHARE = 0.5


def left_out_columns(columns, train, validation=None, val_path=None):
    """The columns that are not tasks, with why.

    Args:
        columns: candidate task columns, in manifest order.
        train: the training manifest's `FileRecord`s.
        validation: the validation manifest's `FileRecord`s, or `None`
            when validation is carved out of train.
        val_path: the validation manifest (for the reason).

    Returns:
        `{column: reason}` in column order, e.g.
        `{"sku": "an id? 189 distinct values in 210 rows"}`.
    """
    parsed = [r for r in train if r.problem is None]
    left_out = {}
    for column in columns:
        values = [r.labels.get(column, "") for r in parsed]
        values = [v for v in values if v not in ("", None)]
        distinct = len(set(values))
        if not values:
            left_out[column] = "no label in the training manifest"
        elif len(values) > 1 and distinct > ID_DISTINCT_SHARE * len(values):
            left_out[column] = (f"an id? {distinct} distinct values in "
                                f"{len(values)} rows")
        elif validation is not None and not any(
            r.labels.get(column) not in ("", None)
            for r in validation if r.problem is None
        ):
            left_out[column] = f"no label in the validation manifest {val_path}"
    return left_out


def left_out_note(tasks, left_out):
    """One console line naming the columns left out and how to keep them."""
    reasons = "; ".join(f"{c} ({why})" for c, why in left_out.items())
    return (f"Columns not trained as tasks: {reasons}. To train them anyway, "
            f"name the tasks: --tasks {','.join([*tasks, *left_out])}.")
