"""Split a large CSV file into parts of at most N rows, streaming.

Each part repeats the header so it can be read on its own. Memory use does not depend
on the size of the input: one row is held at a time.

    python csv_split.py big.csv --rows 100000 --out parts/
"""

from __future__ import annotations

import argparse
import csv
import os
from typing import TextIO


def split_csv(source: TextIO, out_dir: str, rows_per_part: int, prefix: str = "part") -> list[str]:
    """Write ``prefix-0000.csv``, ``prefix-0001.csv`` ... and return their paths."""
    if rows_per_part <= 0:
        raise ValueError("rows_per_part must be positive")
    os.makedirs(out_dir, exist_ok=True)
    reader = csv.reader(source)
    header = next(reader, None)
    if header is None:
        return []
    paths: list[str] = []
    writer = None
    handle = None
    written = 0
    for row in reader:
        if writer is None or written >= rows_per_part:
            if handle is not None:
                handle.close()
            path = os.path.join(out_dir, f"{prefix}-{len(paths):04d}.csv")
            handle = open(path, "w", newline="", encoding="utf-8")
            writer = csv.writer(handle)
            writer.writerow(header)
            paths.append(path)
            written = 0
        writer.writerow(row)
        written += 1
    if handle is not None:
        handle.close()
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("--rows", type=int, default=100_000, help="rows per part")
    parser.add_argument("--out", default="parts", help="output directory")
    args = parser.parse_args()
    with open(args.input, newline="", encoding="utf-8") as fh:
        parts = split_csv(fh, args.out, args.rows)
    print(f"wrote {len(parts)} part(s) to {args.out}")


if __name__ == "__main__":
    main()
