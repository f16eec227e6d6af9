"""Landing files -> raw tables: the one ingestion path that events and payments share.

A run ingests a set of days (partitions) in one transaction: it deletes those partitions from
the raw table and from `raw.dead_letter`, then, day by day, stages the day's files, inserts the
records that meet the contract straight into the raw table and the rest, with their reasons,
into the dead letters. A failure before COMMIT leaves the previous state intact, and a re-run
gives the same rows.

A file that cannot be read at all (gone since the listing, access denied, gzip cut short or
corrupt) does not fail its day: it becomes one dead letter of its own (line_number and
raw_record NULL, the reason in `error`) and counts as one record read, so conservation holds
while the day's other files load. Its day re-runs when the file is landed again.

Valid records are written once, directly: only the few lines left over are parsed a second
time, to record why they were rejected.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from itertools import groupby

import duckdb

from data_platform.ingestion.file_formats import FileFormat
from data_platform.ingestion.file_lines import (
    NOT_UTF8,
    UNREADABLE,
    append_file_lines,
    narrow_to_lines_not_in,
    number_day_lines,
    start_day_lines,
    unreadable_reason,
)
from data_platform.ingestion.tables import DEAD_LETTER, ensure_raw_tables
from data_platform.resources.landing import LandingFile, LandingZone

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


def _undecodable_filter(undecodable: list[str]) -> str:
    """SQL keeping lines that were valid UTF-8 (`undecodable` holds 'file_index:line_number')."""
    if not undecodable:
        return "TRUE"
    listed = ", ".join(f"'{key}'" for key in undecodable)
    return f"NOT list_contains([{listed}], file_index || ':' || line_number)"


def _load_valid_records(
    conn: duckdb.DuckDBPyConnection,
    fmt: FileFormat,
    keys: list[str],
    dt: date,
    loaded_at: datetime,
    undecodable: list[str],
) -> int:
    """Insert the day's records that meet the contract; returns how many."""
    columns = ", ".join(f'"{c}"' for c in fmt.table.column_names)
    contract = ", ".join(f'"{c}"' for c in fmt.contract_columns)
    return conn.execute(
        f"INSERT INTO {fmt.table.qualified_name} ({columns}) "
        f"SELECT {contract}, _rescued, (?::VARCHAR[])[file_index + 1], line_number, ?, ?::DATE "
        f"FROM ({fmt.parse_sql}) WHERE is_valid AND {_undecodable_filter(undecodable)}",
        [keys, loaded_at, dt],
    ).fetchone()[0]


def _dead_letter_the_rest(
    conn: duckdb.DuckDBPyConnection,
    fmt: FileFormat,
    keys: list[str],
    dt: date,
    rejected_at: datetime,
    undecodable: list[str],
) -> None:
    """Parse again only the day's records that did not load, and store them with their reason."""
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _loaded AS SELECT "
        "list_position(?::VARCHAR[], _source_file) - 1 AS file_index, _line_number AS line_number "
        f"FROM {fmt.table.qualified_name} WHERE dt = ?",
        [keys, dt],
    )
    narrow_to_lines_not_in(conn, "_loaded")
    conn.execute(
        f"INSERT INTO {DEAD_LETTER.qualified_name} "
        "SELECT ?, ?::DATE, (?::VARCHAR[])[file_index + 1], line_number, line, "
        f"CASE WHEN {_undecodable_filter(undecodable)} THEN error ELSE ? END, ? "
        f"FROM ({fmt.parse_sql})",
        [fmt.source, dt, keys, NOT_UTF8, rejected_at],
    )


def _dead_letter_unreadable_files(
    conn: duckdb.DuckDBPyConnection,
    fmt: FileFormat,
    dt: date,
    unreadable: dict[str, str],
    rejected_at: datetime,
) -> None:
    """One dead letter per file that could not be read: no line, no text, just its reason."""
    if unreadable:
        conn.executemany(
            f"INSERT INTO {DEAD_LETTER.qualified_name} VALUES (?, ?, ?, NULL, NULL, ?, ?)",
            [[fmt.source, dt, key, reason, rejected_at] for key, reason in unreadable.items()],
        )


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


class _NeedsPythonDecode(Exception):
    """DuckDB could not read a file; its transaction is void, so the ingestion starts over,
    decoding that file in Python (which tells a bad line from a file that cannot be read)."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _stage_day(
    conn: duckdb.DuckDBPyConnection,
    landing: LandingZone,
    fmt: FileFormat,
    files: list[LandingFile],
    decode_in_python: set[str],
) -> tuple[list[str], dict[str, str]]:
    """Stage a day's files as `_records`; returns its undecodable lines as 'file_index:line',
    and the reason each file that could not be read at all (by key) was left out."""
    start_day_lines(conn)
    undecodable: list[str] = []
    unreadable: dict[str, str] = {}
    for i, file in enumerate(files):
        try:
            with landing.local_path(file.key) as path:
                lines = append_file_lines(conn, i, path, file.key in decode_in_python)
        except (duckdb.InvalidInputException, duckdb.IOException):
            if file.key in decode_in_python:
                raise  # the Python path's own INSERT failed: not the file's fault
            raise _NeedsPythonDecode(file.key) from None
        except UNREADABLE as error:
            # Raised by the download or the Python decode, before any SQL: the transaction is
            # still good, so the day goes on without this file.
            unreadable[file.key] = unreadable_reason(error)
            continue
        undecodable += [f"{i}:{n}" for n in lines]
    number_day_lines(conn, fmt.header_lines)
    return undecodable, unreadable


def _ingest_in_one_transaction(
    conn: duckdb.DuckDBPyConnection,
    landing: LandingZone,
    fmt: FileFormat,
    dts: list[date],
    files: list[LandingFile],
    loaded_at: datetime,
    decode_in_python: set[str],
) -> Counter[date]:
    records_read: Counter[date] = Counter()
    conn.execute("BEGIN TRANSACTION")
    try:
        _delete_partitions(conn, fmt, dts)
        # `files` come in key order, so each day's files are adjacent.
        for dt, day in groupby(files, key=lambda f: partition_of(f.key)):
            day_files = list(day)
            keys = [f.key for f in day_files]
            undecodable, unreadable = _stage_day(conn, landing, fmt, day_files, decode_in_python)
            records = conn.execute("SELECT count(*) FROM _records").fetchone()[0]
            if _load_valid_records(conn, fmt, keys, dt, loaded_at, undecodable) < records:
                _dead_letter_the_rest(conn, fmt, keys, dt, loaded_at, undecodable)
            _dead_letter_unreadable_files(conn, fmt, dt, unreadable, loaded_at)
            # A file that cannot be read counts as one record: the one dead letter it gets.
            records_read[dt] = records + len(unreadable)
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
    while True:
        try:
            records_read = _ingest_in_one_transaction(
                conn, landing, fmt, dts, files, loaded_at, decode_in_python
            )
            return _stats(conn, fmt, dts, files, records_read)
        except _NeedsPythonDecode as unreadable:
            decode_in_python.add(unreadable.key)
