"""Source-database sensor: a table whose max(updated_at) moved requests its raw extraction.

It reads four numbers from the application database (updated_at is indexed there) and never
opens the DuckDB warehouse, which a run may be writing. The cursor is JSON `{table: mark}`;
any change of a mark counts (not only an increase), as extraction is idempotent and a restored
source must be re-read. Only the tables that changed are extracted, together, in one run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from data_platform.ingestion.tables import SOURCE_DB_TABLES
from data_platform.resources.source_database import SourceDatabase

if TYPE_CHECKING:
    import sqlalchemy as sa

TABLES = [table.name for table in SOURCE_DB_TABLES]


def raw_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", table])


def sqlite_file_missing(url: str) -> bool:
    """Connecting to a SQLite file that does not exist would create an empty one."""
    # Imported here, like everywhere: the Definitions load without SQLAlchemy.
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    database = parsed.database or ""
    return (
        parsed.get_backend_name() == "sqlite"
        and database not in ("", ":memory:")
        and not (Path(database).exists())
    )


def high_water_marks(
    engine: sa.Engine, tables: list[str], log: logging.Logger | None = None
) -> dict[str, str]:
    """max(updated_at) per table, as text; empty or missing tables are left out, and so is a
    table without an `updated_at` column (said in the log): one table the contract no longer
    fits must not stop change detection for the others."""
    import sqlalchemy as sa

    inspector = sa.inspect(engine)
    existing = set(inspector.get_table_names())
    marks = {}
    with engine.connect() as conn:
        for table in tables:
            if table not in existing:
                continue
            if "updated_at" not in {c["name"] for c in inspector.get_columns(table)}:
                if log is not None:
                    log.warning(
                        f"source table {table} has no updated_at column: its changes are not "
                        "detected (and its extraction fails) until the column is back"
                    )
                continue
            query = sa.select(sa.func.max(sa.column("updated_at"))).select_from(sa.table(table))
            mark = conn.execute(query).scalar()
            if mark is not None:
                marks[table] = str(mark)
    return marks


def moved(marks: dict[str, str], seen: dict[str, str]) -> list[str]:
    return sorted(table for table, mark in marks.items() if seen.get(table) != mark)


@dg.sensor(
    name="source_database_changes",
    description="A newer max(updated_at) in the application database -> incremental extraction.",
    target=[raw_key(table) for table in TABLES],
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
def source_database_sensor(context: dg.SensorEvaluationContext, source_database: SourceDatabase):
    if sqlite_file_missing(source_database.url):
        return dg.SkipReason("the source database does not exist yet")
    seen = json.loads(context.cursor) if context.cursor else {}
    marks = high_water_marks(source_database.engine(), TABLES, context.log)
    tables = moved(marks, seen)
    context.update_cursor(json.dumps(seen | marks))
    if not tables:
        return dg.SkipReason("no source table changed")
    # The key names each mark's move: Dagster never runs a key twice, so a key of the new marks
    # alone skipped a source restored to marks it had before.
    moves = {t: [seen.get(t), marks[t]] for t in tables}
    return dg.RunRequest(
        run_key=f"extract:{json.dumps(moves, sort_keys=True)}",
        asset_selection=[raw_key(table) for table in tables],
    )
