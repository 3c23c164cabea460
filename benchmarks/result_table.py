"""Prints benchmark results: rows as an aligned text table (floats to 2 or 4
places), and the whole result as JSON, on stdout and optionally to a file."""

import json


def print_table(rows, columns, width=14, decimals=2):
    """One header line, then one line per row dict, `|`-separated."""
    print(" | ".join(f"{column:>{width}}" for column in columns))
    for row in rows:
        print(" | ".join(
            f"{row[c]:>{width}.{decimals}f}" if isinstance(row[c], float)
            else f"{row[c]!s:>{width}}"
            for c in columns
        ))


def print_json(results, json_out=None):
    """Prints `results` as indented JSON; also writes it to `json_out` if given."""
    print(json.dumps(results, indent=2))
    if json_out:
        with open(json_out, "w") as f:
            json.dump(results, f, indent=2)
