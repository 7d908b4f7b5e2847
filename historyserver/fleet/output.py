"""An answer printed as a table, CSV or JSON (an array of objects), at most max_rows rows, batch by batch."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import Any, TextIO

import pyarrow as pa


def _cell(v: Any) -> str:
    return "NULL" if v is None else str(v)


def write(
    batches: Iterable[pa.RecordBatch], names: list[str], fmt: str, max_rows: int, out: TextIO
) -> tuple[int, bool]:
    """Print the rows; returns (rows printed, whether the answer was cut at max_rows)."""
    rows: list[dict[str, Any]] = []  # the table format needs every row's width first (max_rows bounds it)
    printed, cut = 0, False
    writer = csv.writer(out) if fmt == "csv" else None
    if writer:
        writer.writerow(names)
    if fmt == "json":
        out.write("[")
    for batch in batches:
        for row in batch.to_pylist():
            if printed == max_rows:
                cut = True
                break
            if fmt == "table":
                rows.append(row)
            elif writer:
                writer.writerow(["" if row[n] is None else row[n] for n in names])
            else:
                out.write(("," if printed else "") + "\n" + json.dumps(row, default=str))
            printed += 1
        if cut:
            break
    if fmt == "json":
        out.write("\n]\n")
    elif fmt == "table":
        _table(rows, names, out)
    return printed, cut


def _table(rows: list[dict[str, Any]], names: list[str], out: TextIO) -> None:
    cells = [[_cell(r[n]) for n in names] for r in rows]
    widths = [max([len(n), *(len(c[i]) for c in cells)]) for i, n in enumerate(names)]
    out.write("  ".join(n.ljust(w) for n, w in zip(names, widths)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for c in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip() + "\n")
