"""Landing files -> raw tables: the one ingestion path that events and payments share.

A run ingests a set of days (partitions) in one transaction: it deletes those partitions from
the raw table and from `raw.dead_letter`, then, a group of files at a time, inserts the records
that meet the contract straight into the raw table and the rest, with their reasons, into the
dead letters. A failure before COMMIT leaves the previous state intact, and a re-run gives
the same rows.

Each file is read in one streaming pass and never staged whole, so memory does not grow with
the day: the format's fast path (if it has one) parses every line once, inserts the lines it
vouches for, GROUP_FILES files per statement, and parks the others (`parked_lines`), which the
diagnosing query then parses into rows or dead letters; without a fast path (payments) every
line is left to the diagnosis. A clean file pays one parse per record, and no validity test
before it: the fast path trusts the parser to raise on a malformed line, and the run then
starts over with json_valid() first (see `_Reading`).

A file that cannot be read at all (gone since the listing, access denied, gzip cut short or
corrupt) does not fail its day: it becomes one dead letter of its own (line_number and
raw_record NULL, the reason in `error`) and counts as one record read, so conservation holds
while the day's other files load. Its day re-runs when the file is landed again.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb

from data_platform.ingestion.file_formats import SPACED_JSON, FileFormat
from data_platform.ingestion.file_lines import (
    NOT_UTF8,
    OVERSIZED_LINE,
    UNREADABLE,
    FileLines,
    expose_leftovers,
    expose_lines,
    has_lone_cr,
    python_copy,
    sql_string,
    unreadable_reason,
)
from data_platform.ingestion.parked_lines import LineParking, parking_lines
from data_platform.ingestion.tables import DEAD_LETTER, ensure_raw_tables, one_transaction
from data_platform.resources.landing import LandingFile, LandingZone

# The fast path loads this many files per statement: one write of the table instead of one
# per file (each INSERT left a partly filled row group for the commit's checkpoint to rewrite:
# 1.2 s per million clean events in four files), and per-statement costs paid once a group.
GROUP_FILES = 16
# What DuckDB raises when it cannot read a file's lines: a malformed one, a read error, or
# (NotImplementedException) a line longer than its CSV reader's 32 MB buffer, which failed
# the whole day instead of being read by the Python copy. And UnicodeDecodeError: DuckDB's
# message about a malformed line quotes the line's start, cut at a byte count, and where the
# cut splits a character its Python client cannot decode the message and raises that instead
# (a fuzz found it: one such line failed its day on every run).
READ_FAILURES = (
    duckdb.InvalidInputException,
    duckdb.IOException,
    duckdb.NotImplementedException,
    UnicodeDecodeError,
)

_DT_FOLDER = re.compile(r"^[^/]+/dt=(\d{4}-\d{2}-\d{2})/")


@dataclass(frozen=True)
class PartitionStats:
    """Conservation figures of one ingested day: records_read = rows_loaded + rows_dead_lettered."""

    dt: date
    files: int
    records_read: int
    rows_loaded: int
    rows_dead_lettered: int


def partition_of(key: str) -> date | None:
    """The dt of a landing key such as `events/dt=2026-01-05/a.jsonl`, or None if it has none.
    A file deeper in the day folder is of that day too, and so is an S3 key of the folder's own
    name that holds bytes (both dead-lettered: `misnamed`)."""
    match = _DT_FOLDER.match(key)
    if not match:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        return None


def day_bounds(source: str, first: date, last: date) -> tuple[str, str]:
    """(start_after, end_before) around every key of the day folders first..last.

    `events/dt=D` sorts before its folder's keys; `events/dt=D0` after them, as '/' is the code
    point just before '0', and before the next day's.
    """
    return f"{source}/dt={first}", f"{source}/dt={last}0"


def files_for(landing: LandingZone, fmt: FileFormat, dts: set[date]) -> list[LandingFile]:
    """Every file in the given days' folders, in key order; those the format does not read by
    their name are among them (`FileFormat.misnamed`). One listing of the key range from the
    first day to the last (a run's days are a range): not the source's whole landing history,
    which cost one S3 request per 1,000 files of it, every run."""
    if not dts:
        return []
    bounds = day_bounds(fmt.source, min(dts), max(dts))
    return [f for f in landing.list_files(f"{fmt.source}/", *bounds) if partition_of(f.key) in dts]


def _delete_partitions(conn: duckdb.DuckDBPyConnection, fmt: FileFormat, dts: list[date]) -> None:
    days = "dt IN (SELECT unnest(?::DATE[]))"
    conn.execute(f"DELETE FROM {fmt.table.qualified_name} WHERE {days}", [dts])
    conn.execute(
        f"DELETE FROM {DEAD_LETTER.qualified_name} WHERE source = ? AND {days}", [fmt.source, dts]
    )


def _by_file(files: list[LandingFile]) -> tuple[list[str], list[date | None]]:
    """Each file's key and day, by file_index: `(?::VARCHAR[])[file_index + 1]` in SQL."""
    return [f.key for f in files], [partition_of(f.key) for f in files]


def _insert_vouched_records(
    conn: duckdb.DuckDBPyConnection,
    fmt: FileFormat,
    fast_sql: str,
    files: list[LandingFile],
    loaded_at: datetime,
) -> Counter[str]:
    """Insert the `_file_lines` (of `files`, by file_index) the fast path vouches for, parking
    the others; returns how many were inserted per file key."""
    names = ", ".join(f'"{c}"' for c in fmt.table.column_names)
    contract = ", ".join(f'"{c}"' for c in fmt.contract_columns)
    keys, dts = _by_file(files)
    conn.execute(
        f"INSERT INTO {fmt.table.qualified_name} ({names}) "
        f"SELECT {contract}, NULL, (?::VARCHAR[])[file_index + 1], line_number, ?, "
        f"(?::DATE[])[file_index + 1] FROM ({fast_sql})",
        [keys, loaded_at, dts],
    )
    # Only this transaction's rows of these files: it deleted their days first.
    listed = "[" + ", ".join(sql_string(key) for key in keys) + "]"
    days = ", ".join(f"DATE '{d}'" for d in sorted(set(dts)))
    counts = conn.execute(
        f"SELECT _source_file, count(*) FROM {fmt.table.qualified_name} "
        f"WHERE dt IN ({days}) AND list_contains({listed}, _source_file) GROUP BY ALL"
    ).fetchall()
    return Counter(dict(counts))


def _diagnose_leftover_records(
    conn: duckdb.DuckDBPyConnection,
    fmt: FileFormat,
    files: list[LandingFile],
    lines: list[FileLines],
    loaded_at: datetime,
) -> None:
    """Parse `_file_lines` (of `files`, by file_index) with the format's full rules: valid rows
    to the raw table, the rest with their reasons to the dead letters."""
    undecodable = [list(file_lines.undecodable) for file_lines in lines]
    oversized = [list(file_lines.oversized) for file_lines in lines]
    not_utf8, too_long = (
        f"list_contains((${n}::BIGINT[][])[file_index + 1], line_number)" for n in (1, 2)
    )
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _diagnosed AS SELECT *, "
        f"CASE WHEN {not_utf8} THEN $3 WHEN {too_long} THEN $4 ELSE error END AS reason, "
        f"is_valid AND NOT {not_utf8} AND NOT {too_long} AS loads FROM ({fmt.parse_sql})",
        [undecodable, oversized, NOT_UTF8, OVERSIZED_LINE],
    )
    names = ", ".join(f'"{c}"' for c in fmt.table.column_names)
    contract = ", ".join(f'"{c}"' for c in fmt.contract_columns)
    keys, dts = _by_file(files)
    conn.execute(
        f"INSERT INTO {fmt.table.qualified_name} ({names}) "
        f"SELECT {contract}, _rescued, (?::VARCHAR[])[file_index + 1], line_number, ?, "
        "(?::DATE[])[file_index + 1] FROM _diagnosed WHERE loads",
        [keys, loaded_at, dts],
    )
    conn.execute(
        f"INSERT INTO {DEAD_LETTER.qualified_name} "
        "SELECT ?, (?::DATE[])[file_index + 1], (?::VARCHAR[])[file_index + 1], line_number, "
        "line, reason, ? FROM _diagnosed WHERE NOT loads",
        [fmt.source, dts, keys, loaded_at],
    )


def _dead_letter_whole_file(
    conn: duckdb.DuckDBPyConnection,
    fmt: FileFormat,
    file: LandingFile,
    reason: str,
    rejected_at: datetime,
    records_read: Counter[date],
) -> None:
    """The dead letter of a file that was not read: no line, no text, just its reason. It
    counts as one record read, so conservation holds."""
    dt = partition_of(file.key)
    conn.execute(
        f"INSERT INTO {DEAD_LETTER.qualified_name} VALUES (?, ?, ?, NULL, NULL, ?, ?)",
        [fmt.source, dt, file.key, reason, rejected_at],
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


@dataclass
class _Reading:
    """How a run reads its files. A failure makes it more careful, and the run starts over."""

    group_files: int = GROUP_FILES
    decode_in_python: set[str] = field(default_factory=set)
    # Whether the fast path parses lines that look like records without a validity test.
    trusts_parse: bool = True

    def fast_sql(self, fmt: FileFormat) -> str | None:
        trusted = self.trusts_parse and fmt.fast_sql and fmt.trusting_fast_sql
        return trusted or fmt.fast_sql


class _TrustedParseFailed(Exception):
    """A statement of the trusting fast path failed (a malformed line that looked like a
    record, or a file DuckDB cannot read); its transaction is void, so the ingestion starts
    over with the validating fast path, where only the file can be at fault."""


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


def _guess_spacing(
    conn: duckdb.DuckDBPyConnection, fmt: FileFormat, lines: list[FileLines]
) -> None:
    """Whether the fast path compares lines with their spaced spelling first: when most of the
    group's files begin as a spaced record does (one writer writes a file, and its files, one
    way). A guess: a wrong one costs time, never a record (`record_rules.spelled_back`)."""
    spaced = fmt.spaced_start is not None and 2 * sum(
        file.begins_with(fmt.spaced_start) for file in lines
    ) > len(lines)
    conn.execute(f"SET VARIABLE {SPACED_JSON} = {str(spaced).lower()}")


def _load_vouched_records(
    conn: duckdb.DuckDBPyConnection,
    fmt: FileFormat,
    fast_sql: str,
    parking: LineParking,
    files: list[LandingFile],
    lines: list[FileLines],
    loaded_at: datetime,
) -> tuple[Counter[str], list[int]]:
    """Load the lines the fast path vouches for; returns how many per file key, and how many
    records each file has among the lines left over (those it parked and those it never saw)."""
    with parking.lines() as parked:
        expose_lines(conn, lines)
        _guess_spacing(conn, fmt, lines)
        try:
            vouched = _insert_vouched_records(conn, fmt, fast_sql, files, loaded_at)
        except READ_FAILURES:
            if parked.error:
                raise parked.error from None
            raise
        parked.close()
        return vouched, expose_leftovers(conn, lines, fmt.header_lines, parked.sql)


def _ingest_group(
    conn: duckdb.DuckDBPyConnection,
    fmt: FileFormat,
    fast_sql: str | None,
    files: list[LandingFile],
    lines: list[FileLines],
    loaded_at: datetime,
    records_read: Counter[date],
    parking: LineParking | None,
) -> None:
    """Load a group of files' records into the raw table or the dead letters.

    The fast path (if any, and `parking` with it) loads the lines it vouches for and parks the
    others; without one, every line is left over. The diagnosing query parses the lines left
    over."""
    if fast_sql and parking:
        vouched, leftovers = _load_vouched_records(
            conn, fmt, fast_sql, parking, files, lines, loaded_at
        )
    else:
        vouched, leftovers = Counter(), expose_leftovers(conn, lines, fmt.header_lines, None)
    for file, count in zip(files, leftovers, strict=True):
        records_read[partition_of(file.key)] += vouched[file.key] + count
    if conn.execute("SELECT count(*) FROM _file_lines").fetchone()[0]:
        _diagnose_leftover_records(conn, fmt, files, lines, loaded_at)


@contextmanager
def _readable_lines(path: Path, decode_in_python: bool) -> Iterator[FileLines]:
    if not decode_in_python and not has_lone_cr(path):
        yield FileLines(path)
        return
    with python_copy(path) as lines:
        yield lines


def _ingest_in_one_transaction(
    conn: duckdb.DuckDBPyConnection,
    landing: LandingZone,
    fmt: FileFormat,
    dts: list[date],
    files: list[LandingFile],
    loaded_at: datetime,
    reading: _Reading,
    parking: LineParking | None,
) -> Counter[date]:
    records_read: Counter[date] = Counter()
    # A fast path runs as written: pushed below its projection, a filter repeats the parse
    # (see EVENTS_FAST_SQL). Settings survive the transaction: reset in ingest_file_partitions.
    conn.execute("SET disabled_optimizers = 'filter_pushdown'")
    # Rows carry their file and line, so their order in the table means nothing; kept, it held
    # each statement to one thread (`row_number() OVER ()` numbers the lines): 2.8 s -> 1.7 s
    # for a clean 1M-event day on 2 cores.
    conn.execute("SET preserve_insertion_order = false")
    with one_transaction(conn):
        _delete_partitions(conn, fmt, dts)
        for start in range(0, len(files), reading.group_files):
            with ExitStack() as stack:
                group, lines = [], []
                for file in files[start : start + reading.group_files]:
                    if reason := fmt.misnamed(file):
                        _dead_letter_whole_file(conn, fmt, file, reason, loaded_at, records_read)
                        continue
                    try:
                        path = stack.enter_context(landing.local_path(file.key))
                        if reason := fmt.headerless(path):
                            _dead_letter_whole_file(
                                conn, fmt, file, reason, loaded_at, records_read
                            )
                            continue
                        in_python = file.key in reading.decode_in_python
                        lines.append(stack.enter_context(_readable_lines(path, in_python)))
                    except UNREADABLE as error:
                        # Raised by the download or the decoding, before any SQL: the
                        # transaction is still good, so the day goes on without this file.
                        reason = unreadable_reason(error)
                        _dead_letter_whole_file(conn, fmt, file, reason, loaded_at, records_read)
                        continue
                    group.append(file)
                if not group:
                    continue
                fast_sql = reading.fast_sql(fmt)
                try:
                    _ingest_group(
                        conn, fmt, fast_sql, group, lines, loaded_at, records_read, parking
                    )
                except READ_FAILURES:
                    if fast_sql and fast_sql != fmt.fast_sql:
                        raise _TrustedParseFailed from None
                    if len(group) > 1:
                        raise _GroupFailed from None
                    if group[0].key in reading.decode_in_python:
                        raise  # reading the decoded copy failed: not the file's fault
                    raise _NeedsPythonDecode(group[0].key) from None
    return records_read


def _checkpoint_without_merging(conn: duckdb.DuckDBPyConnection) -> None:
    """Write the run's rows into the file now, row groups as the run filled them.

    A file of more lines than a row group holds (122,880) ends its own partly filled row group;
    the checkpoint DuckDB makes at close would merge those by rewriting every row group after the
    first of them: 0.3-0.4 s per million events, a fifth of a clean day's run. A few small row
    groups cost scans nothing measurable, and the row groups a re-run deletes whole are still
    dropped; the rows it deletes from groups shared with other days stay as deleted rows."""
    conn.execute("SET max_vacuum_tasks = 0")
    try:
        conn.execute("CHECKPOINT")
    finally:
        conn.execute("RESET max_vacuum_tasks")


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
    reading = _Reading()
    # Only a fast path parks lines: a format without one (payments) registers no function.
    with parking_lines(conn) if fmt.fast_sql else nullcontext() as parking:
        while True:
            try:
                records_read = _ingest_in_one_transaction(
                    conn, landing, fmt, dts, files, loaded_at, reading, parking
                )
                break
            except _TrustedParseFailed:
                reading.trusts_parse = False
            except _GroupFailed:
                # File by file from now on, which tells the file DuckDB cannot read.
                reading.group_files = 1
            except _NeedsPythonDecode as unreadable:
                reading.decode_in_python.add(unreadable.key)
            finally:
                conn.execute("RESET disabled_optimizers")
                conn.execute("RESET preserve_insertion_order")
                conn.execute(f"RESET VARIABLE {SPACED_JSON}")
    _checkpoint_without_merging(conn)
    return _stats(conn, fmt, dts, files, records_read)
