"""Bad records: counted and skipped, or a stop at the first, never lost.

Records read with a documented fallback (Fashion-Gen text that is Latin-1,
not UTF-8) are not bad: they are kept and counted apart, as recovered.

A record is bad when its image is missing, corrupt or over the pixel limit
(`image_too_large`, read from its header before decoding), its text is not valid
UTF-8, a label is outside the training vocabulary, or its row cannot be
parsed. Readers report each one here. With the default policy `"skip"` the
record is left out and counted once per split (a second epoch finds the same
records and does not count them again); with `"error"` the first one raises
`BadRecordError` naming the file and row.
"""

import collections
import threading

from cmaclip_tf.limits.image_headers import IMAGE_TOO_LARGE

BAD_RECORD_POLICIES = ("skip", "error")

MISSING_IMAGE = "missing_image"
CORRUPT_IMAGE = "corrupt_image"
UNDECODABLE_TEXT = "undecodable_text"
UNKNOWN_LABEL = "unknown_label"
MALFORMED_ROW = "malformed_row"
# Recovered, not skipped: text decoded as Latin-1 because it was not UTF-8.
LATIN1_TEXT = "latin1_text"
REASONS = (
    MISSING_IMAGE,
    CORRUPT_IMAGE,
    IMAGE_TOO_LARGE,
    UNDECODABLE_TEXT,
    UNKNOWN_LABEL,
    MALFORMED_ROW,
)


class BadRecordError(ValueError):
    """A bad record under `on_bad_record="error"`; names its file and row."""


class BadRecordCounter:
    """Counts bad records per split and reason; thread-safe.

    Args:
        policy: `"skip"` (default: leave the record out and count it) or
            `"error"` (raise `BadRecordError` at the first).
        max_messages: how many messages to keep per split for the logs.

    Example:

    ```python
    counter = BadRecordCounter()
    counter.report("train", CORRUPT_IMAGE, "train.csv:7", "not a JPEG")
    counter.counts()  # {"train": {"corrupt_image": 1}}
    ```
    """

    def __init__(self, policy="skip", max_messages=20):
        if policy not in BAD_RECORD_POLICIES:
            raise ValueError(
                f"on_bad_record must be one of {BAD_RECORD_POLICIES}; got {policy!r}"
            )
        self.policy = policy
        self.max_messages = max_messages
        self._lock = threading.Lock()
        self._seen = collections.defaultdict(
            dict
        )  # split -> {location: reason}
        self._messages = collections.defaultdict(list)
        self._details = collections.defaultdict(dict)  # split -> {location: detail}
        self._recovered = collections.defaultdict(dict)

    def report(self, split, reason, location, detail=""):
        """Records one bad record, or raises under the `"error"` policy.

        Args:
            split: the split being read (`"train"`, ...).
            reason: one of `REASONS`.
            location: where it is, e.g. `"path/train.csv:12"` (file and row).
            detail: what was wrong, for the message.
        """
        message = f"{location}: {reason.replace('_', ' ')}"
        if detail:
            message += f": {detail}"
        if self.policy == "error":
            raise BadRecordError(
                f"Bad record in the {split} split at {message}. Fix or remove "
                "it, or pass on_bad_record='skip' (--on-bad-record skip) to skip "
                "and count bad records."
            )
        with self._lock:
            if location in self._seen[split]:
                return
            self._seen[split][location] = reason
            self._details[split][location] = detail
            if len(self._messages[split]) < self.max_messages:
                self._messages[split].append(message)

    def recover(self, split, kind, location):
        """Counts a record kept by a fallback (e.g. `LATIN1_TEXT`), once."""
        with self._lock:
            self._recovered[split].setdefault(location, kind)

    def recovered_counts(self):
        """`{split: {kind: count}}` of records kept by a fallback."""
        with self._lock:
            return {
                split: dict(collections.Counter(records.values()))
                for split, records in self._recovered.items()
            }

    def counts(self):
        """`{split: {reason: count}}` for every split read so far."""
        with self._lock:
            result = {}
            for split, records in self._seen.items():
                result[split] = dict(collections.Counter(records.values()))
            return result

    def total(self, split=None):
        """Bad records in `split`, or in all splits."""
        counts = self.counts()
        splits = [split] if split is not None else list(counts)
        return sum(sum(counts.get(s, {}).values()) for s in splits)

    def records(self, split):
        """`[(location, reason)]` of every bad record found in `split`."""
        with self._lock:
            return list(self._seen.get(split, {}).items())

    def first_locations(self, split, limit=3):
        """`{reason: [location]}`: the first `limit` bad records of each
        reason in `split`, in the order they were found (file order)."""
        first = collections.defaultdict(list)
        for location, reason in self.records(split):
            if len(first[reason]) < limit:
                first[reason].append(location)
        return dict(first)

    def write_csv(self, path):
        """Writes every bad record (split, location, reason, detail) to a
        CSV file at `path`; returns how many."""
        import csv

        with self._lock:
            rows = [(split, location, reason, self._details[split][location])
                    for split, records in self._seen.items()
                    for location, reason in records.items()]
        with open(path, "w", newline="", encoding="utf-8",
                  errors="backslashreplace") as f:
            writer = csv.writer(f)
            writer.writerow(["split", "location", "reason", "detail"])
            writer.writerows(rows)
        return len(rows)

    def messages(self, split):
        """The first `max_messages` messages of `split`."""
        with self._lock:
            return list(self._messages.get(split, []))

    def summary(self):
        """One line per split, e.g. `train: 2 bad records skipped (...)`."""
        lines = []
        for split, counts in sorted(self.counts().items()):
            detail = ", ".join(
                f"{reason} {n}" for reason, n in sorted(counts.items())
            )
            lines.append(
                f"{split}: {sum(counts.values())} bad records skipped ({detail})"
            )
        return "\n".join(lines)
