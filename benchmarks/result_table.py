"""Prints benchmark rows as an aligned text table (floats to 2 or 4 places)."""


def print_table(rows, columns, width=14, decimals=2):
    """One header line, then one line per row dict, `|`-separated."""
    print(" | ".join(f"{column:>{width}}" for column in columns))
    for row in rows:
        print(" | ".join(
            f"{row[c]:>{width}.{decimals}f}" if isinstance(row[c], float)
            else f"{row[c]!s:>{width}}"
            for c in columns
        ))
