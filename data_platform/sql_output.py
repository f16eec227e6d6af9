"""Query results as text: csv, json or an aligned table, written as the rows arrive.

The same value reads the same in every format: timestamps and dates in ISO 8601 (the
warehouse's naive timestamps mean UTC), decimals exact as written (19.99, never
19.989999999999998), JSON columns as their JSON, nested values (LIST, STRUCT, MAP) as JSON
too (NaN and infinities in them as null, MAP keys as their text). NULL is an empty csv field,
JSON null, and `NULL` in the table.

csv and json are machine formats: strings in them are exact (json escapes what JSON must).
The table is for a terminal: control characters in it are shown escaped (an ESC as `\\x1b`, a
CR as `\\r`), or a producer's text in raw.dead_letter could retitle, clear or overprint it.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime, time
from decimal import Decimal
from typing import TextIO

from data_platform.sql_engines import QueryError, first_line
from data_platform.sql_engines.spool import RowSpool

FORMATS = ("csv", "json", "table")


def _jsonable(value: object) -> object:
    """A nested value as json.dumps can write it as valid JSON: non-finite floats null (JSON
    has no NaN), MAP keys (a DATE, a DECIMAL, ...) as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k if isinstance(k, str) else as_text(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def as_text(value: object) -> str:
    """One value as text, for csv and the table (NULL handled by the caller)."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        # As written: str() writes DECIMAL(18,10) 0.0000001 as 1.000E-7 and its 0 as 0E-10.
        return format(value, "f")
    # DuckDB hands a fixed-size ARRAY (INTEGER[3], array_value(...)) over as a tuple, which
    # str() wrote as Python's "(1, 2)".
    if isinstance(value, dict | list | tuple):
        return json.dumps(_jsonable(value), default=as_text, allow_nan=False)
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
    if isinstance(value, dict | list | tuple):
        return as_text(value)
    return json.dumps(as_text(value))


def _writing(format_name: str, write: Callable[[], None]) -> None:
    """Run `write`; a value it cannot write is one line (a QueryError), not a traceback. Errors
    of the query (its rows) and a closed pipe (the CLI ends quietly) pass through."""
    try:
        write()
    except (QueryError, BrokenPipeError):
        raise
    except Exception as err:
        raise QueryError(f"cannot write the result as {format_name}: {first_line(err)}") from None


def write_csv(columns: list[str], rows: Iterable[tuple], out: TextIO) -> None:
    def write() -> None:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(["" if v is None else as_text(v) for v in row] for row in rows)

    _writing("csv", write)


def write_json(columns: list[str], types: list[str], rows: Iterable[tuple], out: TextIO) -> None:
    """One JSON array of objects, one object a line: `json.load` and `grep` both work.

    Two columns of one name (`SELECT e.*, d.*`) would be one key twice, which most parsers
    read as the last one only: refused before anything is written."""
    twice = [name for name, n in Counter(columns).items() if n > 1]
    if twice:
        raise QueryError(
            f"the result has two columns named {twice[0]!r}, which JSON objects cannot hold: "
            "name them apart (SELECT a.dt AS a_dt, b.dt AS b_dt ...)"
        )

    def write() -> None:
        keys = [json.dumps(c) for c in columns]
        separator = "[\n"
        for row in rows:
            fields = zip(keys, row, types, strict=True)
            out.write(
                separator + "{" + ", ".join(f"{k}: {as_json(v, t)}" for k, v, t in fields) + "}"
            )
            separator = ",\n"
        out.write("[]\n" if separator == "[\n" else "\n]\n")

    _writing("json", write)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


# Shown escaped in the table: C0 and C1 controls and DEL (ESC starts a terminal's commands, CR
# overprints the line), line and paragraph separators, and the bidirectional overrides and
# isolates, which reorder what follows them on screen.
_VISIBLE = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_VISIBLE |= {ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"}
_VISIBLE |= {c: f"\\u{c:04x}" for c in (0x2028, 0x2029, *range(0x202A, 0x202F))}
_VISIBLE |= {c: f"\\u{c:04x}" for c in range(0x2066, 0x206A)}


def visible(text: str) -> str:
    """`text` safe to print on a terminal: its control characters escaped (see `_VISIBLE`)."""
    return text.translate(_VISIBLE)


def _cell(value: object) -> str:
    return "NULL" if value is None else visible(as_text(value))


def write_table(columns: list[str], rows: Iterable[tuple], out: TextIO) -> None:
    """Aligned plain text (numbers to the right), then the row count.

    Two passes, the rows kept between them in a spool (memory, then a temporary file): one
    for the widths and alignment, one to print. Every row's cells in memory at once took
    gigabytes for a year of events."""
    _writing("table", lambda: _write_table(columns, rows, out))


def _write_table(columns: list[str], rows: Iterable[tuple], out: TextIO) -> None:
    header = [visible(c) for c in columns]
    widths = [len(c) for c in header]
    right = [True] * len(columns)
    count = 0

    def measured() -> Iterator[tuple]:
        nonlocal count
        for row in rows:
            for i, v in enumerate(row):
                widths[i] = max(widths[i], len(_cell(v)))
                if v is not None and not _is_number(v):
                    right[i] = False
            count += 1
            yield row

    def line(values: Iterable[str]) -> str:
        padded = (
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)
        )
        return "  ".join(padded).rstrip() + "\n"

    with RowSpool() as spool:
        spool.extend(measured())
        out.write(line(header) + line(["-" * w for w in widths]))
        out.writelines(line(_cell(v) for v in row) for row in spool.rows())
    out.write(f"({count} row{'' if count == 1 else 's'})\n")
