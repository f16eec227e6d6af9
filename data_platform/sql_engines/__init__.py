"""The engines `data-platform sql` reads from, behind one small interface.

Each engine module offers `read_only_query(settings, sql, timeout, hold)`: a context manager that
checks the query is a read, runs it and yields a `QueryResult` whose rows arrive lazily, a batch
at a time (DuckDB's from a spool, its file already released: see spool.py); anything that goes
wrong is a `QueryError` of one line. The CLI (`warehouse_sql`) picks the module by `Settings.engine` and formats the rows; it
knows nothing of either engine. Modules are imported on demand: a DuckDB query must not pay for
importing pyspark (~1 s), nor a Spark query for DuckDB.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from data_platform.settings import Settings

READ_ONLY_HINT = "`data-platform sql` only reads the warehouse; its assets write it"
# How long a query may keep the warehouse from its writers by default (DuckDB: run and fetch
# into the spool). Below the shortest wait of the platform's writers for the file: dbt tries to
# connect for ~64 s, then fails its step (and the run pages as failed); the assets wait 120 s.
HOLD_SECONDS = 45.0
# Settings.engine -> the module implementing it.
ENGINE_MODULES = {
    "duckdb": "data_platform.sql_engines.duckdb_engine",
    "spark": "data_platform.sql_engines.spark_engine",
}


class QueryError(Exception):
    """The query could not run; the message is one line saying what is wrong and what to do."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: Iterator[tuple]


class ReadOnlyQuery(Protocol):
    """What each engine module provides as `read_only_query`."""

    def __call__(
        self, settings: Settings, sql: str, timeout: float, hold: float
    ) -> AbstractContextManager[QueryResult]: ...


def first_line(error: Exception) -> str:
    """An engine's error message cut to its first line (the rest is plans and stack traces)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def read_only_query(
    settings: Settings, sql: str, timeout: float, hold: float = HOLD_SECONDS
) -> AbstractContextManager[QueryResult]:
    """`sql` run read-only on the engine the settings name; see the module docstring. `hold`:
    the most seconds a query may keep the warehouse from its writers (0: no limit)."""
    module = importlib.import_module(ENGINE_MODULES[settings.engine])
    engine_query: ReadOnlyQuery = module.read_only_query
    return engine_query(settings, sql, timeout, hold)
