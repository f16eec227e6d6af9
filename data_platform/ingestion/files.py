"""Landing files -> raw tables: the one ingestion path that events and payments share.

A run ingests a set of days (partitions) in one set-based pass: every file of those days is
parsed by its format's SQL into a temp table, then one transaction replaces exactly those
partitions in the raw table and in `raw.dead_letter`. A failure before COMMIT leaves the previous
state intact, and a re-run gives the same rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

import duckdb

from data_platform.ingestion.file_formats import FileFormat
from data_platform.ingestion.file_lines import NOT_UTF8, stage_file_lines
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


def _create_parsed_table(conn: duckdb.DuckDBPyConnection, fmt: FileFormat) -> None:
    types = {c.name: c.type for c in fmt.table.columns}
    contract = ", ".join(f'"{c}" {types[c]}' for c in fmt.contract_columns)
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _parsed (dt DATE, source_file VARCHAR, line_number BIGINT, "
        f"line VARCHAR, error VARCHAR, {contract}, _rescued JSON)"
    )


def _parse_file(conn: duckdb.DuckDBPyConnection, fmt: FileFormat, file: LandingFile, path) -> None:
    undecodable = stage_file_lines(conn, path, fmt.header_lines)
    conn.execute(
        f"INSERT INTO _parsed SELECT ?::DATE, ?, * FROM ({fmt.parse_sql})",
        [partition_of(file.key), file.key],
    )
    if undecodable:
        conn.execute(
            "UPDATE _parsed SET error = ? WHERE source_file = ? "
            "AND line_number IN (SELECT unnest(?::BIGINT[]))",
            [NOT_UTF8, file.key, undecodable],
        )


def _replace_partitions(
    conn: duckdb.DuckDBPyConnection, fmt: FileFormat, dts: list[date], loaded_at: datetime
) -> None:
    target = fmt.table.qualified_name
    columns = ", ".join(f'"{c}"' for c in fmt.table.column_names)
    contract = ", ".join(f'"{c}"' for c in fmt.contract_columns)
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute(f"DELETE FROM {target} WHERE dt IN (SELECT unnest(?::DATE[]))", [dts])
        conn.execute(
            f"INSERT INTO {target} ({columns}) SELECT {contract}, _rescued, source_file, "
            "line_number, ?, dt FROM _parsed WHERE error IS NULL",
            [loaded_at],
        )
        _replace_dead_letters(conn, fmt.source, dts, loaded_at)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _replace_dead_letters(
    conn: duckdb.DuckDBPyConnection, source: str, dts: list[date], rejected_at: datetime
) -> None:
    conn.execute(
        f"DELETE FROM {DEAD_LETTER.qualified_name} "
        "WHERE source = ? AND dt IN (SELECT unnest(?::DATE[]))",
        [source, dts],
    )
    conn.execute(
        f"INSERT INTO {DEAD_LETTER.qualified_name} SELECT ?, dt, source_file, line_number, line, "
        "error, ? FROM _parsed WHERE error IS NOT NULL",
        [source, rejected_at],
    )


def _stats(conn: duckdb.DuckDBPyConnection, dts: list[date], files: list[LandingFile]):
    counts = {
        row[0]: row[1:]
        for row in conn.execute(
            "SELECT dt, count(*), count(*) FILTER (error IS NULL), count(*) FILTER (error IS NOT NULL) "
            "FROM _parsed GROUP BY dt"
        ).fetchall()
    }
    return [
        PartitionStats(
            dt,
            sum(1 for f in files if partition_of(f.key) == dt),
            *counts.get(dt, (0, 0, 0)),
        )
        for dt in sorted(dts)
    ]


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
    _create_parsed_table(conn, fmt)
    for file in files:
        with landing.local_path(file.key) as path:
            _parse_file(conn, fmt, file, path)
    _replace_partitions(conn, fmt, dts, loaded_at)
    return _stats(conn, dts, files)
