"""Source-database tables -> raw version logs: the one extraction path every app table shares.

Incremental on `updated_at`: a run reads the rows changed since the raw table's high-water mark
minus a look-back window (clock skew, late commits) and appends only the (id, updated_at)
versions not seen before. The high-water mark is derived from the data itself, so a re-run adds
nothing, and an interrupted run (one transaction) leaves no gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import duckdb

from data_platform.ingestion.tables import RawTable, ensure_raw_tables

if TYPE_CHECKING:
    import sqlalchemy as sa

SOURCE_BATCH_ROWS = 50_000


@dataclass(frozen=True)
class ExtractionStats:
    table: str
    high_water_mark_before: datetime | None
    high_water_mark_after: datetime | None
    rows_fetched: int
    versions_added: int


def _source_query(
    engine: sa.Engine, table: RawTable, since: datetime | None
) -> tuple[sa.Select, list[str]]:
    import sqlalchemy as sa

    names = [c for c in table.column_names if c != "_extracted_at"]
    source = sa.Table(table.name, sa.MetaData(), autoload_with=engine)
    missing = [n for n in names if n not in source.c]
    if missing:
        raise ValueError(
            f"source table {table.name!r} lacks column(s) {missing}: "
            "point DATA_PLATFORM_SOURCE_DB_URL at the application database of DESIGN.md"
        )
    query = sa.select(*(source.c[n] for n in names))
    if since is not None:
        query = query.where(source.c.updated_at >= since)
    return query.order_by(source.c.updated_at, source.c.id), names


def _append_new_versions(
    conn: duckdb.DuckDBPyConnection, table: RawTable, extracted_at: datetime
) -> int:
    types = {c.name: c.type for c in table.columns}
    names = [c for c in table.column_names if c != "_extracted_at"]
    select = ", ".join(f'CAST(b."{n}" AS {types[n]})' for n in names)
    columns = ", ".join(f'"{n}"' for n in [*names, "_extracted_at"])
    before = conn.execute(f"SELECT count(*) FROM {table.qualified_name}").fetchone()[0]
    conn.execute(
        f"INSERT INTO {table.qualified_name} ({columns}) "
        f"SELECT DISTINCT ON (b.id, b.updated_at) {select}, ? FROM _source_batch b "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table.qualified_name} r "
        "WHERE r.id = b.id AND r.updated_at = CAST(b.updated_at AS TIMESTAMP))",
        [extracted_at],
    )
    return conn.execute(f"SELECT count(*) FROM {table.qualified_name}").fetchone()[0] - before


def extract_incremental(
    conn: duckdb.DuckDBPyConnection,
    engine: sa.Engine,
    table: RawTable,
    lookback: timedelta,
    extracted_at: datetime,
) -> ExtractionStats:
    """Append the source table's new (id, updated_at) versions to its raw version log."""
    # Imported here: extraction is the only user, and Definitions load faster without them.
    import pyarrow as pa

    ensure_raw_tables(conn, (table,))
    hwm_sql = f"SELECT max(updated_at) FROM {table.qualified_name}"
    hwm_before = conn.execute(hwm_sql).fetchone()[0]
    query, names = _source_query(engine, table, hwm_before - lookback if hwm_before else None)
    fetched = added = 0
    conn.execute("BEGIN TRANSACTION")
    try:
        with engine.connect() as source:
            result = source.execution_options(stream_results=True).execute(query)
            while rows := result.fetchmany(SOURCE_BATCH_ROWS):
                columns = list(zip(*rows, strict=True))
                _source_batch = pa.table(
                    {n: pa.array(col) for n, col in zip(names, columns, strict=True)}
                )
                conn.execute("CREATE OR REPLACE TEMP TABLE _source_batch AS FROM _source_batch")
                fetched += len(rows)
                added += _append_new_versions(conn, table, extracted_at)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return ExtractionStats(
        table.name, hwm_before, conn.execute(hwm_sql).fetchone()[0], fetched, added
    )
