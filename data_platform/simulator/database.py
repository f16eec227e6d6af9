"""The application database (README.md, "The raw layer") through SQLAlchemy Core, on any URL.

The simulator owns these four tables: it creates them when missing, `simulate` replaces their
rows with the simulated world in one transaction, and `append_day` inserts and updates rows in
place, the way the application itself would. Timestamps are naive UTC DATETIMEs; prices are
NUMERIC(10, 2). updated_at is indexed because extraction is incremental on it.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from data_platform.simulator.clock import from_datetimes, to_datetimes
from data_platform.simulator.world import TABLE_NAMES, TableChanges, World, typed

metadata = sa.MetaData()


def _key() -> sa.Column:
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=False)


def _stamp(name: str, nullable: bool = False, index: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(), nullable=nullable, index=index)


TABLES = {
    "users": sa.Table(
        "users", metadata, _key(),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("full_name", sa.String(200), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        _stamp("created_at"), _stamp("updated_at", index=True), _stamp("deleted_at", nullable=True),
    ),
    "products": sa.Table(
        "products", metadata, _key(),
        sa.Column("sku", sa.String(32), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("unit_price", sa.Numeric(10, 2), nullable=False),
        _stamp("updated_at", index=True),
    ),
    "orders": sa.Table(
        "orders", metadata, _key(),
        sa.Column("user_id", sa.Integer, nullable=False, index=True),
        sa.Column("status", sa.String(16), nullable=False),
        _stamp("ordered_at"), _stamp("updated_at", index=True),
    ),
    "order_items": sa.Table(
        "order_items", metadata, _key(),
        sa.Column("order_id", sa.Integer, nullable=False, index=True),
        sa.Column("product_id", sa.Integer, nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_price", sa.Numeric(10, 2), nullable=False),
        _stamp("updated_at", index=True),
    ),
}  # fmt: skip
_TIME_COLUMNS = ("created_at", "updated_at", "deleted_at", "ordered_at")


def connect(url: str) -> sa.Engine:
    """An engine for `url`; a SQLite file's folder is created, as on a fresh machine."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return sa.create_engine(parsed)


def create_tables(engine: sa.Engine) -> None:
    """`metadata.create_all`, with each table's indexes created in name order.

    SQLAlchemy creates a table's indexes from a set, in the order of the objects' addresses,
    which differs from one process to the next: two simulations of one config wrote SQLite
    files whose schema (and so every page after it) differed, where the rows were the same.
    """
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            if sa.inspect(conn).has_table(table.name):
                continue
            conn.execute(sa.schema.CreateTable(table))
            for index in sorted(table.indexes, key=lambda index: str(index.name)):
                index.create(conn)


def to_columns(frame: pd.DataFrame) -> dict[str, list[object]]:
    """World columns -> parameter values: ms -> datetime, cents -> Decimal, NA -> None.

    Whole columns at a time: a year of orders is a million rows, and a Python call per value
    (numpy scalar to int, ms to datetime) cost more than writing them.
    """
    out: dict[str, list[object]] = {}
    for column in frame.columns:
        values = frame[column]
        if column in _TIME_COLUMNS:
            out[column] = to_datetimes(values)
        elif column == "price_cents":
            out["unit_price"] = [Decimal(c).scaleb(-2) for c in values.tolist()]
        else:
            out[column] = values.tolist()
    return out


def to_rows(frame: pd.DataFrame) -> list[dict[str, object]]:
    """World rows -> parameter dicts (see `to_columns`)."""
    columns = to_columns(frame)
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _insert(conn: sa.Connection, table: sa.Table, columns: dict[str, list[object]]) -> None:
    """INSERT every row in one DBAPI executemany, the bind processors applied per column.

    SQLAlchemy's own executemany builds and processes a parameter set per row in Python,
    which tripled the time of writing a year's world; the statement, the processors (SQLite
    stores DATETIME as text, NUMERIC as a float) and the paramstyle are still the dialect's.
    """
    dialect = conn.dialect
    compiled = table.insert().compile(dialect=dialect)
    names = list(compiled.positiontup) if compiled.positional else list(columns)
    values = []
    for name in names:
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        values.append([process(v) for v in columns[name]] if process else columns[name])
    rows = zip(*values, strict=True)
    params = (
        list(rows) if compiled.positional else [dict(zip(names, row, strict=True)) for row in rows]
    )
    conn.exec_driver_sql(str(compiled), params)


def from_rows(table: str, rows: list[sa.Row]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(TABLES[table].columns.keys()))
    for column in _TIME_COLUMNS:
        if column in frame:
            frame[column] = from_datetimes(frame[column])
    if "unit_price" in frame:
        cents = np.rint(frame.pop("unit_price").astype(float).to_numpy() * 100)
        frame["price_cents"] = cents.astype(np.int64)
    return typed(table, frame)


def replace_world(engine: sa.Engine, world: World) -> dict[str, int]:
    """Make the tables hold exactly `world` (one transaction); rows written per table."""
    create_tables(engine)
    written = {}
    with engine.begin() as conn:
        for name in reversed(TABLE_NAMES):
            conn.execute(TABLES[name].delete())
        for name in TABLE_NAMES:
            frame = world.table(name)
            if len(frame):
                _insert(conn, TABLES[name], to_columns(frame))
            written[name] = len(frame)
    return written


def holds_world(engine: sa.Engine) -> bool:
    """Whether the database holds a simulated world (a user), without creating its tables."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("users"):
            return False
        return conn.execute(sa.select(TABLES["users"].c.id).limit(1)).first() is not None


def read_world(engine: sa.Engine) -> World:
    create_tables(engine)
    with engine.connect() as conn:
        frames = {
            name: from_rows(name, conn.execute(sa.select(TABLES[name]).order_by("id")).all())
            for name in TABLE_NAMES
        }
    return World(**frames)


def apply_changes(
    engine: sa.Engine, changes: dict[str, TableChanges]
) -> dict[str, tuple[int, int]]:
    """Insert new rows and update changed ones, in one transaction: (inserted, updated)."""
    done = {}
    with engine.begin() as conn:
        for name, change in changes.items():
            table = TABLES[name]
            inserted = to_rows(change.inserted)
            if inserted:
                conn.execute(table.insert(), inserted)
            updated = [{"key_id": row.pop("id"), **row} for row in to_rows(change.updated)]
            if updated:
                # The SET clause comes from the parameter names: every column but the key.
                statement = table.update().where(table.c.id == sa.bindparam("key_id"))
                conn.execute(statement, updated)
            done[name] = (len(inserted), len(updated))
    return done
