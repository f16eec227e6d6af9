"""Stage one day's landing files, lines numbered as the contract counts them, for a format's SQL.

DuckDB's CSV reader with no delimiter, quote or escape reads each line whole (and gunzips
`.gz`) at native speed. A day's files go into one table, so that a format's SQL parses them in
one statement over enough row groups to keep every core busy (file by file, a 166k-line file
was two unequal row groups for two cores: a million events in six files took 2.27 s, now
1.67 s). The cost is memory: a day's lines at once (peak 688 MB for a million events, against
512 MB file by file). An INSERT
keeps file order, so a row's offset from its file's first row is its line. A file that is not
valid UTF-8 falls back to a Python decode so that its bad lines still get a line number and a
reason instead of failing the partition. A file that cannot be read at all (gone, denied,
gzip cut short or corrupt) is reported as `UNREADABLE`, for the caller to dead-letter whole.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import duckdb

NOT_UTF8 = "not valid UTF-8 text: re-export the file as UTF-8"

# What reading a file raises when it cannot be read at all: gone or denied (OSError, which
# gzip.BadGzipFile is too), a gzip stream cut short (EOFError), corrupt deflate data (zlib.error).
UNREADABLE = (OSError, EOFError, zlib.error)


def unreadable_reason(error: BaseException) -> str:
    """Why a file could not be read, for its dead letter: what happened and what to do."""
    if isinstance(error, EOFError | zlib.error):
        return (
            f"truncated or corrupt gzip stream ({error}; a partial upload?): "
            "re-upload the complete file"
        )
    if isinstance(error, gzip.BadGzipFile):
        return (
            f"not a valid gzip file ({error}): re-upload it gzip-compressed, "
            "or without .gz in its name if it is plain text"
        )
    if isinstance(error, FileNotFoundError):
        return (
            "the file disappeared between listing and reading (deleted or moved): land it "
            "again, or re-run the day if it was removed on purpose"
        )
    if isinstance(error, PermissionError):
        return (
            "permission denied reading the file: give the platform read access, then re-run the day"
        )
    return f"the file could not be read ({error}): fix or replace it, then re-run the day"


def start_day_lines(conn: duckdb.DuckDBPyConnection) -> None:
    """An empty `_lines(file_index, line)`: every line of the day's files, in file order."""
    conn.execute("CREATE OR REPLACE TEMP TABLE _lines (file_index INTEGER, line VARCHAR)")


def append_file_lines(
    conn: duckdb.DuckDBPyConnection, file_index: int, path: Path, decode_in_python: bool
) -> list[int]:
    """Append a file's lines to `_lines`; returns the numbers of its lines not valid UTF-8.

    DuckDB's reader raises `duckdb.InvalidInputException` on a file it cannot read (not UTF-8,
    a line over its size limit) and `duckdb.IOException` on one it cannot open or gunzip; the
    caller then retries with `decode_in_python`. That path raises one of `UNREADABLE` before
    running any SQL when the file cannot be read at all, so the transaction stays usable.
    """
    if decode_in_python:
        return _append_in_python(conn, file_index, path)
    conn.execute(
        "INSERT INTO _lines SELECT ?, line FROM read_csv(?, columns = {'line': 'VARCHAR'}, "
        "header = false, delim = '\\0', quote = '', escape = '', auto_detect = false, "
        "strict_mode = false)",
        [file_index, str(path)],
    )
    return []


def _append_in_python(conn: duckdb.DuckDBPyConnection, file_index: int, path: Path) -> list[int]:
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
    _decoded = pa.table({"line": pa.array(lines, pa.string())})  # scanned by DuckDB by name
    conn.execute("INSERT INTO _lines SELECT ?, line FROM _decoded", [file_index])
    return undecodable


def number_day_lines(conn: duckdb.DuckDBPyConnection, header_lines: int) -> None:
    """Create temp views `_file_header(file_index, line)` and
    `_records` = `_file_lines(file_index, line_number, line)`: the non-blank lines after each
    file's header, numbered from 1 at the file's first line."""
    # Rows created inside a transaction get rowids from a high base until COMMIT: count from
    # each file's first rowid.
    firsts = dict(conn.execute("SELECT file_index, min(rowid) FROM _lines GROUP BY ALL").fetchall())
    first = "[" + ", ".join(str(firsts.get(i, 0)) for i in range(max(firsts, default=-1) + 1)) + "]"
    offset = f"rowid - {first}[file_index + 1]"
    conn.execute(
        "CREATE OR REPLACE TEMP VIEW _file_header AS "
        f"SELECT file_index, line FROM _lines WHERE {offset} < {header_lines}"
    )
    conn.execute(
        "CREATE OR REPLACE TEMP VIEW _records AS "
        f"SELECT file_index, {offset} + 1 AS line_number, line FROM _lines "
        f"WHERE {offset} >= {header_lines} AND regexp_matches(line, '\\S')"
    )
    conn.execute("CREATE OR REPLACE TEMP VIEW _file_lines AS SELECT * FROM _records")


def narrow_to_lines_not_in(conn: duckdb.DuckDBPyConnection, loaded_table: str) -> None:
    """Point `_file_lines` at the records whose (file_index, line_number) is not in
    `loaded_table`."""
    conn.execute(
        "CREATE OR REPLACE TEMP VIEW _file_lines AS SELECT * FROM _records "
        f"ANTI JOIN {loaded_table} USING (file_index, line_number)"
    )
