"""`data-platform sql` on the embedded DuckDB file.

It works while the platform runs: DuckDB lets no second process open a file a writer holds,
even read-only, so the query waits for the writer (up to `--timeout` seconds) instead of
failing at once, and holds the file only while it runs and its rows are fetched (into a
spool: never while a slow reader drains the output). Read-only throughout: the file is
opened read_only (DuckDB refuses INSERT, CREATE, ...) and file access is switched off and
locked, so COPY ... TO or ATTACH cannot write elsewhere either.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from data_platform.resources.duckdb_lock import connect_with_lock_wait, is_lock_conflict
from data_platform.settings import Settings
from data_platform.sql_engines import (
    HOLD_SECONDS,
    READ_ONLY_HINT,
    QueryError,
    QueryResult,
    first_line,
)
from data_platform.sql_engines.spool import RowSpool

FETCH_ROWS = 10_000


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
            raise QueryError(first_line(err)) from None
        holder = re.search(r"held in (.+?) \(PID (\d+)\)", str(err))
        who = f"{holder[1]} (PID {holder[2]})" if holder else "another process"
        raise QueryError(
            f"the warehouse {path} is still locked by {who}, a writer, after {timeout:g} s: "
            "wait for its run to finish, or pass a longer --timeout"
        ) from None
    except duckdb.Error as err:  # "Corrupt database file: computed checksum ..." and the like
        raise QueryError(f"cannot open the warehouse {path}: {first_line(err)}") from None
    conn.execute("SET enable_external_access = false")
    conn.execute("SET lock_configuration = true")
    return conn


def _interrupted(err: Exception) -> bool:
    """DuckDB's answer to a SIGINT (Ctrl-C) while it runs: "Query interrupted", raised as a
    RuntimeError (or its InterruptException), not as the KeyboardInterrupt it stands for."""
    return isinstance(err, duckdb.InterruptException) or (
        isinstance(err, RuntimeError) and "interrupted" in str(err).lower()
    )


def _batches(result: duckdb.DuckDBPyConnection) -> Iterator[tuple]:
    try:
        while rows := result.fetchmany(FETCH_ROWS):
            yield from rows
    except (duckdb.Error, RuntimeError) as err:
        if _interrupted(err):
            raise KeyboardInterrupt from None
        if not isinstance(err, duckdb.Error):
            raise
        raise QueryError(first_line(err)) from None


def run_query(conn: duckdb.DuckDBPyConnection, sql: str) -> QueryResult:
    """Run `sql`; its rows are fetched lazily, a batch at a time."""
    try:
        # Counted before anything runs: DuckDB ran every statement and showed the last's rows,
        # where Spark's parser refuses a second one; one rule for both engines.
        if (statements := len(conn.extract_statements(sql))) > 1:
            raise QueryError(
                f"the query holds {statements} statements: pass one (a `data-platform sql` each)"
            )
        result = conn.execute(sql)
    except (duckdb.Error, RuntimeError) as err:
        if _interrupted(err):
            raise KeyboardInterrupt from None
        if not isinstance(err, duckdb.Error):
            raise
        message = first_line(err)
        refused = "read-only mode" in message or isinstance(err, duckdb.PermissionException)
        raise QueryError(f"{message} ({READ_ONLY_HINT})" if refused else message) from None
    if result is None:  # nothing but whitespace and comments
        raise QueryError("the query is empty: pass one SQL statement, e.g. 'SELECT 1'")
    description = result.description or []
    return QueryResult(
        columns=[d[0] for d in description],
        types=[str(d[1]) for d in description],
        rows=_batches(result) if description else iter(()),
    )


@contextmanager
def read_only_query(
    settings: Settings, sql: str, timeout: float, hold: float = HOLD_SECONDS
) -> Iterator[QueryResult]:
    """`sql` on the warehouse file, waiting up to `timeout` s for a writer's lock.

    Every row is fetched into a spool and the file closed before the caller writes any out:
    held while the output drained, a slow reader (a pager) made waiting writers fail.
    """
    with RowSpool() as spool:
        with (
            open_read_only(settings.warehouse, timeout) as conn,
            interrupted_by_sigint(conn),
            held_at_most(conn, hold) as expired,
        ):
            try:
                result = run_query(conn, sql)
                spool.extend(result.rows)
            except KeyboardInterrupt:
                if not expired.is_set():
                    raise
                raise QueryError(
                    f"the query held the warehouse for {hold:g} s, the most it may (a run "
                    "writing it waits ~1 min, then fails): stopped; narrow it (a WHERE on dt, a "
                    "LIMIT), or allow more with --hold-at-most (0: no limit) when no run writes"
                ) from None
        yield QueryResult(columns=result.columns, types=result.types, rows=spool.rows())


@contextmanager
def held_at_most(conn: duckdb.DuckDBPyConnection, seconds: float) -> Iterator[threading.Event]:
    """Interrupt `conn` once it has been held `seconds` (0: never); the event says it was. A
    read holds the file and DuckDB lets no writer open it meanwhile: an analysis of a few
    minutes failed the run writing the warehouse then, its dbt step out of connect attempts."""
    expired = threading.Event()
    if not seconds:
        yield expired
        return

    def expire() -> None:
        expired.set()
        conn.interrupt()

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield expired
    finally:
        timer.cancel()


@contextmanager
def interrupted_by_sigint(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Ctrl-C interrupts the query. DuckDB looks for Python's signals only between the tasks
    its main thread runs; waiting on its workers (a long join), that thread sleeps, and Ctrl-C
    did nothing until the query ended (minutes, or hours). Python's own handler writes each
    signal to a wakeup file descriptor, in C, even then: a thread reads it and interrupts the
    connection, and the query raises as interrupted. Only in the main thread (signals are
    delivered there) and where SIGINT raises KeyboardInterrupt (not ignored)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous = signal.set_wakeup_fd(write_end)

    def watch() -> None:
        while signals := os.read(read_end, 64):
            if signal.SIGINT in signals:
                conn.interrupt()

    watcher = threading.Thread(target=watch, name="sigint-interrupts-query", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        os.close(write_end)  # the watcher reads the end of the pipe, and stops
        watcher.join()
        os.close(read_end)
