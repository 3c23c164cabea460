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


def row_key(row):
    """A result row's key in a benchmark's JSON: `model/stage/cache=0/jit=0`,
    then `/bfloat16`, `/steps_per_execution=N` and `/keras_fit` where a row
    differs from float32, one step per execution and the project's loop."""
    key = (f"{row['model']}/{row['stage']}/cache={int(row['cache_features'])}"
           f"/jit={int(row['jit_compile'])}")
    if row.get("dtype", "float32") != "float32":
        key += f"/{row['dtype']}"
    if row.get("steps_per_execution", 1) != 1:
        key += f"/steps_per_execution={row['steps_per_execution']}"
    if row.get("loop", "stage_trainer") != "stage_trainer":
        key += f"/{row['loop']}"
    return key
