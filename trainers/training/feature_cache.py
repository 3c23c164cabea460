"""`FeatureCache`: the frozen front of the model, computed once, on disk.

In warm-up (CLIP frozen) and tuning (CLIP and fusion frozen) the frozen part
of the model gives the same outputs every epoch. `--cache-features` runs it
once over the training split and writes its outputs, with the labels, as
fixed-size rows in shard files under the stage's folder:

    WORKDIR/<stage>/feature_cache/[worker_N/]
        meta.json                      (written last: the cache is complete)
        <key>-<shard>.bin              (raw rows, C order)

Memory stays flat however large the split: rows are written as batches come
and read back with `os.pread` in any order (an epoch's permutation), so
nothing is held in host memory but the batches in flight, and the page cache
(not the process) holds what the disk does not. A cache whose fingerprint
(stage, frozen weights, examples, preprocessing, dtype policy:
`RunData.cache_fingerprint`) matches is reused, e.g. after a restart.
"""

import hashlib
import json
import os
import shutil

import numpy as np
import tensorflow as tf

META_FILE = "meta.json"
LABEL_PREFIX = "labels/"
SHARD_BYTES = 256 * 2**20


class FeatureCache:
    """Rows of features and labels on disk, read in any order.

    Build one with `FeatureCache.build`; read it with `batches(order, ...)`.

    Args:
        directory: the cache folder (holds `meta.json`).
    """

    def __init__(self, directory):
        self.directory = directory
        with open(os.path.join(directory, META_FILE)) as f:
            self.meta = json.load(f)
        self.keys = self.meta["keys"]
        self.rows_per_shard = int(self.meta["rows_per_shard"])
        self._files = {}

    def __len__(self):
        return int(self.meta["count"])

    @property
    def fingerprint(self):
        return self.meta["fingerprint"]

    @classmethod
    def load(cls, directory, fingerprint):
        """The complete cache in `directory` with this fingerprint, or None."""
        if not os.path.isfile(os.path.join(directory, META_FILE)):
            return None
        cache = cls(directory)
        return cache if cache.fingerprint == fingerprint else None

    @classmethod
    def build(cls, directory, batches, compute, fingerprint):
        """Writes `compute(features)` and the labels of `batches`; returns it.

        Reuses a complete cache with the same fingerprint instead.

        Args:
            directory: the cache folder (replaced if stale or incomplete).
            batches: `(features, labels)` batches in the order of the
                records (index `i` of the cache is the split's record `i`).
            compute: features -> dict of tensors (the frozen front).
            fingerprint: str; what the cached values depend on.
        """
        cached = cls.load(directory, fingerprint)
        if cached is not None:
            return cached
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
        writer = _ShardWriter(directory)
        for features, labels in batches:
            rows = {k: _storable(v) for k, v in compute(features).items()}
            rows.update(
                {LABEL_PREFIX + k: v.numpy() for k, v in labels.items()}
            )
            writer.append(rows)
        meta = writer.close(fingerprint)
        tmp = os.path.join(directory, META_FILE + ".tmp")
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=2)
        os.replace(tmp, os.path.join(directory, META_FILE))
        return cls(directory)

    def read_rows(self, positions):
        """`{key: array [len(positions), ...]}` of rows `positions`."""
        positions = np.asarray(positions, np.int64)
        result = {}
        for key, spec in self.keys.items():
            dtype = np.dtype(spec["dtype"])
            shape = tuple(spec["shape"])
            row_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            out = np.empty((len(positions),) + shape, dtype)
            view = out.reshape(len(positions), -1).view(np.uint8)
            for i, position in enumerate(positions):
                shard, row = divmod(int(position), self.rows_per_shard)
                data = os.pread(
                    self._file(key, shard), row_bytes, row * row_bytes
                )
                view[i] = np.frombuffer(data, np.uint8)
            result[key] = out
        return result

    def batches(self, order, batch_size, drop_remainder=True):
        """`(features, labels)` batches of the rows in `order`."""
        keys = list(self.keys)
        dtypes = [tf.as_dtype(self.keys[k]["dtype"]) for k in keys]

        def read(positions):
            rows = self.read_rows(positions)
            return [rows[k] for k in keys]

        def to_batch(positions):
            values = tf.numpy_function(read, [positions], dtypes)
            features, labels = {}, {}
            for key, value in zip(keys, values):
                value.set_shape([None] + self.keys[key]["shape"])
                if key.startswith(LABEL_PREFIX):
                    labels[key[len(LABEL_PREFIX) :]] = value
                else:
                    features[key] = value
            return features, labels

        dataset = tf.data.Dataset.from_tensor_slices(
            tf.constant(np.asarray(order, np.int64), tf.int64)
        )
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
        return dataset.map(to_batch, num_parallel_calls=tf.data.AUTOTUNE)

    def delete(self):
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def close(self):
        for descriptor in self._files.values():
            os.close(descriptor)
        self._files = {}

    def _file(self, key, shard):
        if (key, shard) not in self._files:
            self._files[(key, shard)] = os.open(
                _shard_path(self.directory, key, shard), os.O_RDONLY
            )
        return self._files[(key, shard)]


def weights_fingerprint(variables, *extra):
    """A hash of variables' values (and `extra` strings): what a cache fits."""
    digest = hashlib.blake2b(digest_size=16)
    for value in extra:
        digest.update(str(value).encode())
    for variable in variables:
        digest.update(variable.path.encode() if hasattr(variable, "path") else b"")
        digest.update(np.ascontiguousarray(np.asarray(variable)).tobytes())
    return digest.hexdigest()


def _storable(tensor):
    """As numpy; float16/bfloat16 widened to float32 (exact both ways)."""
    if tensor.dtype in (tf.float16, tf.bfloat16):
        tensor = tf.cast(tensor, tf.float32)
    return tensor.numpy()


def _shard_path(directory, key, shard):
    return os.path.join(directory, f"{key.replace('/', '.')}-{shard:05d}.bin")


class _ShardWriter:
    """Appends rows per key into shards of equal row counts."""

    def __init__(self, directory):
        self.directory = directory
        self.count = 0
        self.keys = None
        self.rows_per_shard = None
        self._files = {}

    def append(self, rows):
        if self.keys is None:
            self.keys = {
                k: {"shape": list(v.shape[1:]), "dtype": v.dtype.name}
                for k, v in rows.items()
            }
            widest = max(
                v[:1].nbytes for v in rows.values()
            )  # Bytes of one row of the widest key.
            self.rows_per_shard = max(1, SHARD_BYTES // max(widest, 1))
        size = len(next(iter(rows.values())))
        start = 0
        while start < size:
            shard, row = divmod(self.count, self.rows_per_shard)
            take = min(size - start, self.rows_per_shard - row)
            for key, values in rows.items():
                self._file(key, shard).write(
                    np.ascontiguousarray(values[start : start + take]).tobytes()
                )
            start += take
            self.count += take

    def close(self, fingerprint):
        for f in self._files.values():
            f.close()
        return {
            "fingerprint": fingerprint,
            "count": self.count,
            "keys": self.keys or {},
            "rows_per_shard": self.rows_per_shard or 1,
        }

    def _file(self, key, shard):
        if (key, shard) not in self._files:
            for (old_key, old_shard), f in list(self._files.items()):
                if old_key == key and old_shard < shard:
                    f.close()
                    del self._files[(old_key, old_shard)]
            self._files[(key, shard)] = open(
                _shard_path(self.directory, key, shard), "wb"
            )
        return self._files[(key, shard)]
