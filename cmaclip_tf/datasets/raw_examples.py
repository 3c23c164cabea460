"""The raw example format every dataset yields, and its tf.data wrapper.

A raw example is a dict:

- `"image"`: the encoded image (string scalar: JPEG, PNG, GIF, BMP, WebP),
  or, for datasets stored as pixels (Fashion-Gen, the generated products),
  uint8 `[height, width, 3]`;
- `"text"`: the title or description (string scalar, valid UTF-8);
- `"labels"`: `{task: int32 scalar}`, the class id in the task's training
  vocabulary, or -1 where the example has no label for that task;
- `"id"`: where it came from (`"path/train.csv:12"`, `"synthetic/train/7"`).

`make_batches` turns a split of these into model batches.
"""

import concurrent.futures
import itertools

import numpy as np
import tensorflow as tf

ENCODED_IMAGE_SPEC = tf.TensorSpec([], tf.string)
PIXELS_IMAGE_SPEC = tf.TensorSpec([None, None, 3], tf.uint8)


def raw_example_spec(task_names, image_spec=ENCODED_IMAGE_SPEC):
    """The `tf.data` element spec of raw examples with these tasks."""
    return {
        "image": image_spec,
        "text": tf.TensorSpec([], tf.string),
        "labels": {task: tf.TensorSpec([], tf.int32) for task in task_names},
        "id": tf.TensorSpec([], tf.string),
    }


def raw_split_from_generator(
    generator_fn, task_names, image_spec=ENCODED_IMAGE_SPEC
):
    """A raw split streamed from `generator_fn()`, called once per pass."""
    return tf.data.Dataset.from_generator(
        generator_fn, output_signature=raw_example_spec(task_names, image_spec)
    )


def examples_to_columns(examples, tasks, empty_image=None):
    """Raw examples (numpy) as columns: one array per field, a row each.

    Args:
        examples: list of raw examples.
        tasks: the task names of `"labels"`.
        empty_image: the `"image"` column when `examples` is empty (default:
            no encoded images); pixel images are stacked into one array.
    """
    images = [e["image"] for e in examples]
    if images and isinstance(images[0], np.ndarray):
        image_column = np.stack(images)
    elif images or empty_image is None:
        image_column = np.array(images, object)
    else:
        image_column = empty_image
    return {
        "image": image_column,
        "text": np.array([e["text"] for e in examples], object),
        "labels": {
            task: np.array([e["labels"][task] for e in examples], np.int32)
            for task in tasks
        },
        "id": np.array([e["id"] for e in examples], object),
    }


def indexed_dataset(columns, order=None):
    """Raw examples gathered from in-memory columns, in `order`.

    Args:
        columns: nested dict of tensors (or arrays) with one row per record.
        order: int64 positions of the rows to read, e.g. an epoch's
            permutation; `None` reads every row in order.
    """
    columns = tf.nest.map_structure(_as_tensor, columns)
    if order is None:
        positions = tf.data.Dataset.range(int(tf.nest.flatten(columns)[0].shape[0]))
    else:
        positions = tf.data.Dataset.from_tensor_slices(
            tf.constant(order, tf.int64)
        )
    return positions.map(
        lambda i: tf.nest.map_structure(lambda c: tf.gather(c, i), columns)
    )


def _as_tensor(values):
    if isinstance(values, np.ndarray) and values.dtype == object:
        return tf.constant(list(values), tf.string)  # Byte strings.
    return tf.convert_to_tensor(values)


def ordered_parallel_map(fn, items, num_workers=4, window=64):
    """`map(fn, items)` on a thread pool, results in input order.

    Keeps at most `window` items in flight, so memory stays bounded on large
    splits. TensorFlow ops and file reads release the GIL, so image checks
    run in parallel.
    """
    items = iter(items)
    if num_workers <= 1:
        yield from map(fn, items)
        return
    with concurrent.futures.ThreadPoolExecutor(num_workers) as pool:
        pending = [
            pool.submit(fn, item) for item in itertools.islice(items, window)
        ]
        position = 0
        while position < len(pending):
            result = pending[position].result()
            pending[position] = None
            position += 1
            for item in itertools.islice(items, 1):
                pending.append(pool.submit(fn, item))
            yield result
