"""Query results as text: csv, json or an aligned table, written as the rows arrive.

The same value reads the same in every format: timestamps and dates in ISO 8601 (the
warehouse's naive timestamps mean UTC), decimals exact as written (19.99, never
19.989999999999998), JSON columns as their JSON. NULL is an empty csv field, JSON null, and
`NULL` in the table.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from datetime import date, datetime, time
from decimal import Decimal
from typing import TextIO

FORMATS = ("csv", "json", "table")


def as_text(value: object) -> str:
    """One value as text, for csv and the table (NULL handled by the caller)."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, default=as_text)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def as_json(value: object, type_name: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "null"
    if type_name == "JSON":  # DuckDB hands JSON columns over as their JSON text
        return value
    if isinstance(value, bool | int | Decimal | float):
        return as_text(value)  # a JSON number, exactly as DuckDB computed it
    if isinstance(value, dict | list):
        return as_text(value)
    return json.dumps(as_text(value))


def write_csv(columns: list[str], rows: Iterable[tuple], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(["" if v is None else as_text(v) for v in row] for row in rows)


def write_json(columns: list[str], types: list[str], rows: Iterable[tuple], out: TextIO) -> None:
    """One JSON array of objects, one object a line: `json.load` and `grep` both work."""
    keys = [json.dumps(c) for c in columns]
    separator = "[\n"
    for row in rows:
        fields = zip(keys, row, types, strict=True)
        out.write(separator + "{" + ", ".join(f"{k}: {as_json(v, t)}" for k, v, t in fields) + "}")
        separator = ",\n"
    out.write("[]\n" if separator == "[\n" else "\n]\n")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def write_table(columns: list[str], rows: Iterable[tuple], out: TextIO) -> None:
    """Aligned plain text (numbers to the right), then the row count; holds every row."""
    rows = list(rows)
    cells = [["NULL" if v is None else as_text(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    right = [all(_is_number(r[i]) for r in rows if r[i] is not None) for i in range(len(columns))]

    def line(values: list[str]) -> str:
        padded = (
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)
        )
        return "  ".join(padded).rstrip() + "\n"

    out.write(line(columns) + line(["-" * w for w in widths]))
    out.writelines(line(row) for row in cells)
    out.write(f"({len(cells)} row{'' if len(cells) == 1 else 's'})\n")
