"""Row-wise tensor operations on flat values with row ids, for the graph
tokenizer: a ragged batch's pieces as one flat tensor and the row (text,
word, segment) each belongs to."""

import tensorflow as tf


def every_other_in_runs(flags):
    """`flags` at even offsets within each run of trues: the non-overlapping
    occurrences, left to right, of a pair like `(a, a)`."""
    positions = tf.range(tf.size(flags, out_type=tf.int64))
    unflagged = ~flags
    # Position of the last false at or before each position (-1: none).
    last_false = tf.gather(
        tf.concat([[-1], tf.where(unflagged)[:, 0]], 0),
        tf.cumsum(tf.cast(unflagged, tf.int64)),
    )
    return flags & tf.equal((positions - last_false - 1) % 2, 0)


def first_in_segment(flags, segments, num_segments):
    """The first true of each segment."""
    positions = tf.range(tf.size(flags, out_type=tf.int64))
    size = tf.size(flags, out_type=tf.int64)
    first = tf.math.unsorted_segment_min(
        tf.where(flags, positions, size), segments, num_segments
    )
    return flags & tf.equal(positions, tf.gather(first, segments))


def rank_in_row(rows, num_rows):
    """Position of each element within its row (`rows` sorted)."""
    return cumsum_in_row(tf.ones_like(rows), rows, num_rows)


def cumsum_in_row(values, rows, num_rows):
    """Sum of the earlier values in each element's row (`rows` sorted)."""
    counts = tf.math.bincount(
        rows, minlength=num_rows, maxlength=num_rows, dtype=tf.int64
    )
    starts = tf.cumsum(counts, exclusive=True)
    totals = tf.cumsum(values, exclusive=True)
    return totals - tf.gather(totals, tf.gather(starts, rows))


def split_on_token(pieces, special_ids, token, token_id):
    """Cuts each non-special piece at every occurrence of `token`.

    Returns the new flat pieces, their special ids (`token_id` for the cut
    out tokens, -1 for text) and the index of the piece each came from.
    """
    segments = tf.strings.split(
        tf.where(special_ids >= 0, "", pieces), sep=token
    )
    parents = segments.value_rowids()
    is_last = tf.equal(
        tf.range(tf.size(parents, out_type=tf.int64)),
        tf.gather(segments.row_limits(), parents) - 1,
    )
    parent_ids = tf.gather(special_ids, parents)
    # Each segment, then the token it was cut at (none after the last).
    texts = tf.reshape(
        tf.stack([segments.flat_values, tf.fill(tf.shape(parents), "")], 1),
        [-1],
    )
    ids = tf.reshape(
        tf.stack(
            [
                parent_ids,
                tf.fill(tf.shape(parents), tf.constant(token_id, tf.int64)),
            ],
            1,
        ),
        [-1],
    )
    keep = tf.reshape(tf.stack([tf.ones_like(is_last), ~is_last], 1), [-1])
    parents = tf.reshape(tf.stack([parents, parents], 1), [-1])
    return (
        tf.boolean_mask(texts, keep),
        tf.boolean_mask(ids, keep),
        tf.boolean_mask(parents, keep),
    )
