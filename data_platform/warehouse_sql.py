"""`data-platform sql`: a read-only query of the warehouse, the one way scripts and people read it.

It works while the platform runs: DuckDB lets no second process open a file a writer holds,
even read-only, so the query waits for the writer (up to `--timeout` seconds) instead of
failing at once, and holds the file only while it runs. Read-only throughout: the file is
opened read_only (DuckDB refuses INSERT, CREATE, ...) and file access is switched off and
locked, so COPY ... TO or ATTACH cannot write elsewhere either.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb

from data_platform.resources.duckdb_lock import (
    LOCK_WAIT_SECONDS,
    connect_with_lock_wait,
    is_lock_conflict,
)
from data_platform.settings import load_settings
from data_platform.sql_output import FORMATS, write_csv, write_json, write_table

FETCH_ROWS = 10_000
READ_ONLY_HINT = "`data-platform sql` only reads the warehouse; its assets write it"


class QueryError(Exception):
    """The query could not run; the message is one line saying what is wrong and what to do."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: Iterator[tuple]


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]


def open_read_only(path: Path, timeout: float) -> duckdb.DuckDBPyConnection:
    if not path.exists():
        raise QueryError(
            f"no warehouse at {path}: build it first (`make run` or `data-platform "
            "materialize`), or set DATA_PLATFORM_WAREHOUSE to the right file"
        )
    try:
        conn = connect_with_lock_wait(str(path), read_only=True, timeout=timeout)
    except duckdb.IOException as err:
        if not is_lock_conflict(err):
            raise QueryError(_first_line(err)) from None
        holder = re.search(r"held in (.+?) \(PID (\d+)\)", str(err))
        who = f"{holder[1]} (PID {holder[2]})" if holder else "another process"
        raise QueryError(
            f"the warehouse {path} is still locked by {who}, a writer, after {timeout:g} s: "
            "wait for its run to finish, or pass a longer --timeout"
        ) from None
    conn.execute("SET enable_external_access = false")
    conn.execute("SET lock_configuration = true")
    return conn


def _batches(result: duckdb.DuckDBPyConnection) -> Iterator[tuple]:
    try:
        while rows := result.fetchmany(FETCH_ROWS):
            yield from rows
    except duckdb.Error as err:
        raise QueryError(_first_line(err)) from None


def run_query(conn: duckdb.DuckDBPyConnection, sql: str) -> QueryResult:
    """Run `sql`; its rows are fetched lazily, a batch at a time."""
    try:
        result = conn.execute(sql)
    except duckdb.Error as err:
        message = _first_line(err)
        refused = "read-only mode" in message or isinstance(err, duckdb.PermissionException)
        raise QueryError(f"{message} ({READ_ONLY_HINT})" if refused else message) from None
    description = result.description or []
    return QueryResult(
        columns=[d[0] for d in description],
        types=[str(d[1]) for d in description],
        rows=_batches(result) if description else iter(()),
    )


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", help="one SQL query, e.g. 'SELECT * FROM marts.daily_revenue'")
    parser.add_argument("--format", choices=FORMATS, default="table", help="default: table")
    parser.add_argument(
        "--timeout",
        type=float,
        default=LOCK_WAIT_SECONDS,
        metavar="SECONDS",
        help="how long to wait for a run writing the warehouse (default %(default)g)",
    )


def run(args: argparse.Namespace) -> int:
    """Exit status: 0 done, 1 the query could not run (message on stderr), 2 a wrong setting."""
    warehouse = load_settings().warehouse  # a SettingsError is the CLI's to report (status 2)
    try:
        with open_read_only(warehouse, args.timeout) as conn:
            result = run_query(conn, args.query)
            if args.format == "csv":
                write_csv(result.columns, result.rows, sys.stdout)
            elif args.format == "json":
                write_json(result.columns, result.types, result.rows, sys.stdout)
            else:
                write_table(result.columns, result.rows, sys.stdout)
    except QueryError as err:
        print(f"data-platform sql: {err}", file=sys.stderr)
        return 1
    return 0
