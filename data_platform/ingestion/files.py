"""Landing files -> raw tables: the one ingestion path that events and payments share.

A run ingests a set of days (partitions) in one transaction: it deletes those partitions from
the raw table and from `raw.dead_letter`, then, file by file, inserts the records that meet the
contract straight into the raw table and the rest, with their reasons, into the dead letters.
A failure before COMMIT leaves the previous state intact, and a re-run gives the same rows.

Each file is read in streaming passes and never staged whole, so memory does not grow with the
day: the format's fast path (if it has one) parses every line once and inserts the lines it
vouches for, GROUP_FILES files per statement, and counts each file's lines; a file with lines
left over is read once more, file by file, keeping only the lines not loaded, which the
diagnosing query parses into rows or dead letters. A clean file pays one parse per record.

A file that cannot be read at all (gone since the listing, access denied, gzip cut short or
corrupt) does not fail its day: it becomes one dead letter of its own (line_number and
raw_record NULL, the reason in `error`) and counts as one record read, so conservation holds
while the day's other files load. Its day re-runs when the file is landed again.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb

from data_platform.ingestion.file_formats import FileFormat
from data_platform.ingestion.file_lines import (
    NOT_UTF8,
    UNREADABLE,
    FileLines,
    expose_lines,
    line_counts,
    sql_string,
    unreadable_reason,
    utf8_copy,
)
from data_platform.ingestion.tables import DEAD_LETTER, ensure_raw_tables
from data_platform.resources.landing import LandingFile, LandingZone

# The fast path loads this many files per statement: one write of the table instead of one
# per file (each INSERT left a partly filled row group for the commit's checkpoint to rewrite:
# 1.2 s per million clean events in four files), and per-statement costs paid once a group.
GROUP_FILES = 16

_DT_FOLDER = re.compile(r"^[^/]+/dt=(\d{4}-\d{2}-\d{2})/[^/]+$")


@dataclass(frozen=True)
class PartitionStats:
    """Conservation figures of one ingested day: records_read = rows_loaded + rows_dead_lettered."""

    dt: date
    files: int
    records_read: int
    rows_loaded: int
    rows_dead_lettered: int


def partition_of(key: str) -> date | None:
    """The dt of a landing key such as `events/dt=2026-01-05/a.jsonl`, or None if it has none."""
    match = _DT_FOLDER.match(key)
    if not match:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        return None


def files_for(landing: LandingZone, fmt: FileFormat, dts: set[date]) -> list[LandingFile]:
    """The format's files in the given days, in key order (listed once, not once per day)."""
    return [
        f
        for f in landing.list_files(f"{fmt.source}/")
        if partition_of(f.key) in dts and f.key.endswith(fmt.suffixes)
    ]


def _delete_partitions(conn: duckdb.DuckDBPyConnection, fmt: FileFormat, dts: list[date]) -> None:
    days = "dt IN (SELECT unnest(?::DATE[]))"
    conn.execute(f"DELETE FROM {fmt.table.qualified_name} WHERE {days}", [dts])
    conn.execute(
        f"DELETE FROM {DEAD_LETTER.qualified_name} WHERE source = ? AND {days}", [fmt.source, dts]
    )


def _undecodable_filter(undecodable: tuple[int, ...]) -> str:
    """SQL keeping the lines that were valid UTF-8."""
    if not undecodable:
        return "TRUE"
    return f"NOT list_contains({list(undecodable)}, line_number)"


def _insert_vouched_records(
    conn: duckdb.DuckDBPyConnection,
    fmt: FileFormat,
    files: list[LandingFile],
    loaded_at: datetime,
) -> Counter[str]:
    """Insert the `_file_lines` (of `files`, by file_index) the format's fast path vouches for;
    returns how many per file key."""
    names = ", ".join(f'"{c}"' for c in fmt.table.column_names)
    contract = ", ".join(f'"{c}"' for c in fmt.contract_columns)
    keys, dts = [f.key for f in files], [partition_of(f.key) for f in files]
    conn.execute(
        f"INSERT INTO {fmt.table.qualified_name} ({names}) "
        f"SELECT {contract}, NULL, (?::VARCHAR[])[file_index + 1], line_number, ?, "
        f"(?::DATE[])[file_index + 1] FROM ({fmt.fast_sql})",
        [keys, loaded_at, dts],
    )
    # Only this transaction's rows are in these days: it deleted them first.
    return Counter(
        dict(
            conn.execute(
                f"SELECT _source_file, count(*) FROM {fmt.table.qualified_name} "
                "WHERE dt IN (SELECT unnest(?::DATE[])) AND _source_file IN "
                "(SELECT unnest(?::VARCHAR[])) GROUP BY ALL",
                [sorted(set(dts)), keys],
            ).fetchall()
        )
    )


def _diagnose_leftover_records(
    conn: duckdb.DuckDBPyConnection,
    fmt: FileFormat,
    key: str,
    dt: date,
    loaded_at: datetime,
    undecodable: tuple[int, ...],
) -> None:
    """Parse `_file_lines` with the format's full rules: valid rows to the raw table, the rest
    with their reasons to the dead letters."""
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _diagnosed AS SELECT *, "
        f"CASE WHEN {_undecodable_filter(undecodable)} THEN error ELSE ? END AS reason, "
        f"is_valid AND {_undecodable_filter(undecodable)} AS loads "
        f"FROM ({fmt.parse_sql})",
        [NOT_UTF8],
    )
    names = ", ".join(f'"{c}"' for c in fmt.table.column_names)
    contract = ", ".join(f'"{c}"' for c in fmt.contract_columns)
    conn.execute(
        f"INSERT INTO {fmt.table.qualified_name} ({names}) "
        f"SELECT {contract}, _rescued, ?, line_number, ?, ?::DATE FROM _diagnosed WHERE loads",
        [key, loaded_at, dt],
    )
    conn.execute(
        f"INSERT INTO {DEAD_LETTER.qualified_name} "
        "SELECT ?, ?::DATE, ?, line_number, line, reason, ? FROM _diagnosed WHERE NOT loads",
        [fmt.source, dt, key, loaded_at],
    )


def _dead_letter_unreadable(
    conn: duckdb.DuckDBPyConnection,
    fmt: FileFormat,
    file: LandingFile,
    error: BaseException,
    rejected_at: datetime,
    records_read: Counter[date],
) -> None:
    """The dead letter of a file that could not be read: no line, no text, just its reason. It
    counts as one record read, so conservation holds."""
    dt = partition_of(file.key)
    conn.execute(
        f"INSERT INTO {DEAD_LETTER.qualified_name} VALUES (?, ?, ?, NULL, NULL, ?, ?)",
        [fmt.source, dt, file.key, unreadable_reason(error), rejected_at],
    )
    records_read[dt] += 1


def _stats(
    conn: duckdb.DuckDBPyConnection,
    fmt: FileFormat,
    dts: list[date],
    files: list[LandingFile],
    records_read: Counter[date],
) -> list[PartitionStats]:
    """What was read (counted from the files), against what landed in the two tables."""
    days = "dt IN (SELECT unnest(?::DATE[]))"
    loaded = dict(
        conn.execute(
            f"SELECT dt, count(*) FROM {fmt.table.qualified_name} WHERE {days} GROUP BY dt", [dts]
        ).fetchall()
    )
    rejected = dict(
        conn.execute(
            f"SELECT dt, count(*) FROM {DEAD_LETTER.qualified_name} "
            f"WHERE source = ? AND {days} GROUP BY dt",
            [fmt.source, dts],
        ).fetchall()
    )
    return [
        PartitionStats(
            dt=dt,
            files=sum(1 for f in files if partition_of(f.key) == dt),
            records_read=records_read[dt],
            rows_loaded=loaded.get(dt, 0),
            rows_dead_lettered=rejected.get(dt, 0),
        )
        for dt in sorted(dts)
    ]


class _GroupFailed(Exception):
    """DuckDB could not read one of a group's files; its transaction is void, so the ingestion
    starts over file by file, which tells which file (a day with such a file pays one more
    pass than the file alone would)."""


class _NeedsPythonDecode(Exception):
    """DuckDB could not read a file; its transaction is void, so the ingestion starts over,
    decoding that file in Python (which tells a bad line from a file that cannot be read)."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _ingest_file(
    conn: duckdb.DuckDBPyConnection,
    fmt: FileFormat,
    lines: FileLines,
    file: LandingFile,
    loaded_at: datetime,
    vouched: int | None = None,
) -> int:
    """Load one file's records into the raw table or the dead letters; returns its records.

    `vouched`: how many of its lines a group's fast path loaded already (None: not run yet)."""
    dt = partition_of(file.key)
    if fmt.fast_sql and vouched is None:
        expose_lines(conn, [lines], fmt.header_lines)
        vouched = _insert_vouched_records(conn, fmt, [file], loaded_at)[file.key]
        if vouched == line_counts(conn, [lines])[0] - fmt.header_lines:
            return vouched  # every line loaded: a clean file is done
    loaded_sql = (
        f"SELECT _line_number FROM {fmt.table.qualified_name} "
        f"WHERE dt = DATE '{dt}' AND _source_file = {sql_string(file.key)}"
    )
    records = lines.expose_leftovers(conn, fmt.header_lines, loaded_sql if vouched else None)
    if conn.execute("SELECT count(*) FROM _file_lines").fetchone()[0]:
        _diagnose_leftover_records(conn, fmt, file.key, dt, loaded_at, lines.undecodable)
    return records


def _load_vouched_group(
    conn: duckdb.DuckDBPyConnection,
    landing: LandingZone,
    fmt: FileFormat,
    group: list[LandingFile],
    loaded_at: datetime,
    records_read: Counter[date],
) -> dict[str, int]:
    """The fast path over a group of files in one statement. Clean files are done; returns the
    others' keys with how many of their lines were vouched, for `_ingest_file` to finish."""
    with ExitStack() as stack:
        files, lines = [], []
        for file in group:
            try:
                path = stack.enter_context(landing.local_path(file.key))
            except UNREADABLE as error:  # an S3 download: before any SQL
                _dead_letter_unreadable(conn, fmt, file, error, loaded_at, records_read)
                continue
            files.append(file)
            lines.append(FileLines(path))
        try:
            expose_lines(conn, lines, fmt.header_lines)
            vouched = _insert_vouched_records(conn, fmt, files, loaded_at)
            counts = line_counts(conn, lines)
        except (duckdb.InvalidInputException, duckdb.IOException):
            raise _GroupFailed from None
    unfinished = {}
    for file, count in zip(files, counts, strict=True):
        if vouched[file.key] == count - fmt.header_lines:
            records_read[partition_of(file.key)] += vouched[file.key]
        else:
            unfinished[file.key] = vouched[file.key]
    return unfinished


@contextmanager
def _readable_lines(path: Path, decode_in_python: bool) -> Iterator[FileLines]:
    if not decode_in_python:
        yield FileLines(path)
        return
    with utf8_copy(path) as (copy, undecodable):
        yield FileLines(copy, undecodable)


def _ingest_in_one_transaction(
    conn: duckdb.DuckDBPyConnection,
    landing: LandingZone,
    fmt: FileFormat,
    dts: list[date],
    files: list[LandingFile],
    loaded_at: datetime,
    decode_in_python: set[str],
    grouped: bool,
) -> Counter[date]:
    records_read: Counter[date] = Counter()
    conn.execute("BEGIN TRANSACTION")
    # A fast path runs as written: pushed below its projection, a filter repeats the parse
    # (see EVENTS_FAST_SQL). Settings survive the transaction: reset in ingest_file_partitions.
    conn.execute("SET disabled_optimizers = 'filter_pushdown'")
    try:
        _delete_partitions(conn, fmt, dts)
        vouched: dict[str, int | None] = {file.key: None for file in files}
        if fmt.fast_sql and grouped:
            vouched = {}
            for start in range(0, len(files), GROUP_FILES):
                group = files[start : start + GROUP_FILES]
                vouched |= _load_vouched_group(conn, landing, fmt, group, loaded_at, records_read)
        for file in (f for f in files if f.key in vouched):
            in_python = file.key in decode_in_python
            try:
                with (
                    landing.local_path(file.key) as path,
                    _readable_lines(path, in_python) as lines,
                ):
                    records = _ingest_file(conn, fmt, lines, file, loaded_at, vouched[file.key])
            except (duckdb.InvalidInputException, duckdb.IOException):
                if in_python:
                    raise  # reading the decoded copy failed: not the file's fault
                raise _NeedsPythonDecode(file.key) from None
            except UNREADABLE as error:
                # Raised by the download or the decoding, before any SQL: the transaction is
                # still good, so the day goes on without this file.
                _dead_letter_unreadable(conn, fmt, file, error, loaded_at, records_read)
                continue
            records_read[partition_of(file.key)] += records
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return records_read


def ingest_file_partitions(
    conn: duckdb.DuckDBPyConnection,
    landing: LandingZone,
    fmt: FileFormat,
    dts: list[date],
    loaded_at: datetime,
) -> list[PartitionStats]:
    """Replace the given days of `fmt`'s raw table and dead letters with their files' records."""
    ensure_raw_tables(conn, (fmt.table, DEAD_LETTER))
    files = files_for(landing, fmt, set(dts))
    decode_in_python: set[str] = set()
    grouped = True
    while True:
        try:
            records_read = _ingest_in_one_transaction(
                conn, landing, fmt, dts, files, loaded_at, decode_in_python, grouped
            )
            break
        except _GroupFailed:
            grouped = False  # file by file from now on, which tells the file DuckDB cannot read
        except _NeedsPythonDecode as unreadable:
            decode_in_python.add(unreadable.key)
        finally:
            conn.execute("RESET disabled_optimizers")
    return _stats(conn, fmt, dts, files, records_read)
