"""Stage one landing file's lines, numbered as the contract counts them, for a format's SQL.

DuckDB's CSV reader with no delimiter, quote or escape reads each line whole (and gunzips
`.gz`) at native speed; a CTAS keeps file order, so a row's offset in the table is its line. A file that is
not valid UTF-8 falls back to a Python decode so that its bad lines still get a line number
and a reason instead of failing the partition.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import duckdb

NOT_UTF8 = "not valid UTF-8 text: re-export the file as UTF-8"


def _read_lines_natively(conn: duckdb.DuckDBPyConnection, path: Path) -> None:
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _all_lines AS SELECT line FROM read_csv(?, columns = {'line': 'VARCHAR'}, header = false, delim = '\\0', "
        "quote = '', escape = '', auto_detect = false, strict_mode = false)",
        [str(path)],
    )


def _read_lines_in_python(conn: duckdb.DuckDBPyConnection, path: Path) -> list[int]:
    """Decode line by line (only for files DuckDB rejects); returns the undecodable lines."""
    import pyarrow as pa

    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    lines, undecodable = [], []
    for number, raw in enumerate(data.removesuffix(b"\n").split(b"\n"), start=1):
        try:
            lines.append(raw.removesuffix(b"\r").decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(raw.removesuffix(b"\r").decode("utf-8", errors="replace"))
            undecodable.append(number)
    _lines = pa.table({"line": pa.array(lines, pa.string())})  # scanned by DuckDB by name
    conn.execute("CREATE OR REPLACE TEMP TABLE _all_lines AS SELECT line FROM _lines")
    return undecodable


def stage_file_lines(
    conn: duckdb.DuckDBPyConnection, path: Path, header_lines: int, decode_in_python: bool
) -> list[int]:
    """Create temp views `_file_header(line)` and `_records` = `_file_lines(line_number, line)`.

    The records are the non-blank lines after the header. Returns the numbers of the lines that
    were not valid UTF-8 (their text holds replacement characters). DuckDB's reader
    raises `duckdb.InvalidInputException` on a file it cannot read (not UTF-8, a line over its
    size limit); the caller then retries with `decode_in_python`.
    """
    undecodable: list[int] = []
    if decode_in_python:
        undecodable = _read_lines_in_python(conn, path)
    else:
        _read_lines_natively(conn, path)
    # Rows created inside a transaction get rowids from a high base until COMMIT: count from it.
    first = conn.execute("SELECT coalesce(min(rowid), 0) FROM _all_lines").fetchone()[0]
    conn.execute(
        "CREATE OR REPLACE TEMP VIEW _file_header AS "
        f"SELECT line FROM _all_lines WHERE rowid < {first + header_lines}"
    )
    conn.execute(
        "CREATE OR REPLACE TEMP VIEW _records AS "
        f"SELECT rowid - {first} + 1 AS line_number, line FROM _all_lines "
        f"WHERE rowid >= {first + header_lines} AND regexp_matches(line, '\\S')"
    )
    conn.execute("CREATE OR REPLACE TEMP VIEW _file_lines AS SELECT * FROM _records")
    return undecodable


def narrow_to_lines_not_in(conn: duckdb.DuckDBPyConnection, loaded_table: str) -> None:
    """Point `_file_lines` at the records whose line number is not in `loaded_table`."""
    conn.execute(
        "CREATE OR REPLACE TEMP VIEW _file_lines AS SELECT * FROM _records "
        f"WHERE line_number NOT IN (SELECT line_number FROM {loaded_table})"
    )
