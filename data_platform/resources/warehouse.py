"""The DuckDB warehouse (DATA_PLATFORM_WAREHOUSE)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

# Another process (a run outside the `duckdb` pool, a notebook) may hold DuckDB's single-writer
# lock for a moment; waiting is better than failing a run that would succeed a second later.
LOCK_WAIT_SECONDS = 120.0


def connect_with_lock_wait(path: str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file, waiting up to LOCK_WAIT_SECONDS while another process writes it."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    delay = 0.05
    while True:
        try:
            conn = duckdb.connect(path, read_only=read_only)
        except duckdb.IOException as err:
            if "lock" not in str(err).lower() or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
            continue
        # Every timestamp in the warehouse is UTC; offset-less input is read as UTC too.
        conn.execute("SET TimeZone = 'UTC'")
        return conn


def existing_tables(conn: duckdb.DuckDBPyConnection) -> set[str]:
    """Every `schema.table` (tables and views) of the warehouse."""
    rows = conn.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_type IN ('BASE TABLE', 'VIEW')"
    ).fetchall()
    return {f"{schema}.{table}" for schema, table in rows}


class Warehouse(dg.ConfigurableResource):
    """A DuckDB file; `connect()` gives a UTC connection that waits out a competing writer."""

    path: str

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = connect_with_lock_wait(self.path, read_only=read_only)
        try:
            yield conn
        finally:
            conn.close()
