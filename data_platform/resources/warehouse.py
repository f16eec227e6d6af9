"""The DuckDB warehouse (DATA_PLATFORM_WAREHOUSE)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from data_platform.resources.duckdb_lock import connect_with_lock_wait


def existing_tables(conn: duckdb.DuckDBPyConnection) -> set[str]:
    """Every `schema.table` (tables and views) of the warehouse."""
    rows = conn.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_type IN ('BASE TABLE', 'VIEW')"
    ).fetchall()
    return {f"{schema}.{table}" for schema, table in rows}


class Warehouse(dg.ConfigurableResource):
    """A DuckDB file; `connect()` gives a UTC connection that waits out a competing writer.

    `memory_limit` bounds what a connection holds before DuckDB spills to `<file>.tmp/`: left
    at DuckDB's default (80% of the machine), a day's ingestion kept every block it wrote in
    memory, and its footprint grew with the day.
    """

    path: str
    memory_limit: str = "512MB"

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = connect_with_lock_wait(self.path, read_only=read_only)
        conn.execute(f"SET memory_limit = '{self.memory_limit}'")
        try:
            yield conn
        finally:
            conn.close()
