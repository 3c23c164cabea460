"""Writing files atomically: a reader sees the old file or the new, never half.

The file is written beside its destination under a temporary name and then
renamed over it (`os.replace`, atomic on POSIX within one filesystem), so a
process killed mid-write (even by SIGKILL) leaves the previous version
readable and no torn JSON for a resuming run, a server or a report to trip on.
"""

import contextlib
import json
import os


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it to `path` on success.

    On an exception the temporary file is removed and `path` is untouched.
    The temporary name keeps `path`'s suffix (some writers, e.g. Keras's
    `save_weights`, insist on it).

    Example:
    ```python
    with atomic_path("runs/demo/warmup/best.weights.h5") as tmp:
        model.save_weights(tmp)
    ```
    """
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.getpid()}.tmp.{name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, value, sort_keys=False):
    """Writes `value` as indented UTF-8 JSON to `path`, atomically.

    Args:
        path: string. The destination file.
        value: a JSON-serializable value.
        sort_keys: bool. Sort object keys (stable diffs of records).
            Defaults to False: keys in insertion order.

    Example:
    ```python
    write_json("runs/demo/metrics.json", {"color": {"accuracy": 0.91}})
    ```
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(value, f, indent=2, ensure_ascii=False, sort_keys=sort_keys)
            f.write("\n")
