"""The raw tables: one declaration drives their DDL, the UI's column schema and the docs.

These are contracts (README.md, "The raw layer"): dbt sources and tests depend on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import dagster as dg
import duckdb


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str
    # Personal data: its values are never shown in a log, an error message or an alert.
    personal: bool = False
    # DuckDB's compression for the column, where its own choice costs more than it saves.
    compression: str | None = None

    @property
    def duckdb_definition(self) -> str:
        using = f" USING COMPRESSION {self.compression}" if self.compression else ""
        return f'"{self.name}" {self.type}{using}'


@dataclass(frozen=True)
class RawTable:
    name: str
    description: str
    columns: tuple[Column, ...]

    @property
    def qualified_name(self) -> str:
        return f"raw.{self.name}"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def ddl(self) -> str:
        cols = ", ".join(c.duckdb_definition for c in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {self.qualified_name} ({cols})"

    def table_schema(self) -> dg.TableSchema:
        return dg.TableSchema(
            columns=[
                dg.TableColumn(name=c.name, type=c.type, description=c.description)
                for c in self.columns
            ]
        )


def _c(name: str, type_: str, description: str) -> Column:
    return Column(name, type_, description)


def _unique_id(name: str, description: str) -> Column:
    """A producer's id of each record (duplicates aside, unique): random text that no dictionary
    shortens. DuckDB's analysis and FSST compression of it were the costliest part of writing a
    raw day (0.17 of 0.55 s per 1M events) for a third of the column's size, so it is stored
    uncompressed: raw.events takes +47% on disk (38 -> 57 MB per 1M events)."""
    return Column(name, "VARCHAR", description, compression="uncompressed")


EXTRACTED_AT = _c("_extracted_at", "TIMESTAMP", "When this version was extracted (UTC).")
# Last, so that a warehouse created before it (which gets it by ALTER TABLE) has the same layout.
SOURCE_RESCUED = _c(
    "_rescued",
    "JSON",
    "The source row's columns outside the contract (nulls included), as one JSON object; "
    "null while the source has none (schema drift).",
)
FILE_LINEAGE = (
    _c("_rescued", "JSON", "Fields outside the contract, kept as one JSON object (schema drift)."),
    _c("_source_file", "VARCHAR", "Key of the landing file, relative to the landing root."),
    _c("_line_number", "BIGINT", "1-based line of the record in its file, blank lines counted."),
    _c("_loaded_at", "TIMESTAMP", "When the partition was loaded (UTC)."),
    _c("dt", "DATE", "Arrival day: the dt= folder of the file, and the partition."),
)

USERS = RawTable(
    "users",
    "Version log of the app's users: one row per (id, updated_at) ever extracted.",
    (
        _c("id", "BIGINT", "User id (primary key in the source)."),
        Column("email", "VARCHAR", "E-mail address (personal data: hashed past staging).", True),
        Column("full_name", "VARCHAR", "Full name (personal data: dropped past staging).", True),
        _c("country", "VARCHAR", "ISO 3166 alpha-2 country code."),
        _c("created_at", "TIMESTAMP", "Sign-up time (UTC)."),
        _c("updated_at", "TIMESTAMP", "Last change in the source (UTC): the version key."),
        _c("deleted_at", "TIMESTAMP", "Soft-delete time (UTC), null unless deleted."),
        EXTRACTED_AT,
        SOURCE_RESCUED,
    ),
)
PRODUCTS = RawTable(
    "products",
    "Version log of the product catalogue: one row per (id, updated_at) ever extracted.",
    (
        _c("id", "BIGINT", "Product id (primary key in the source)."),
        _c("sku", "VARCHAR", "Stock-keeping unit, unique in the source."),
        _c("name", "VARCHAR", "Product name."),
        _c("category", "VARCHAR", "Product category."),
        _c("unit_price", "DECIMAL(10,2)", "List price."),
        _c("updated_at", "TIMESTAMP", "Last change in the source (UTC): the version key."),
        EXTRACTED_AT,
        SOURCE_RESCUED,
    ),
)
ORDERS = RawTable(
    "orders",
    "Version log of orders: every status change extracted is one row.",
    (
        _c("id", "BIGINT", "Order id (primary key in the source)."),
        _c("user_id", "BIGINT", "Ordering user."),
        _c("status", "VARCHAR", "pending, completed, cancelled or refunded."),
        _c("ordered_at", "TIMESTAMP", "Order time (UTC)."),
        _c("updated_at", "TIMESTAMP", "Last change in the source (UTC): the version key."),
        EXTRACTED_AT,
        SOURCE_RESCUED,
    ),
)
ORDER_ITEMS = RawTable(
    "order_items",
    "Version log of order lines.",
    (
        _c("id", "BIGINT", "Order item id (primary key in the source)."),
        _c("order_id", "BIGINT", "Order the line belongs to."),
        _c("product_id", "BIGINT", "Product ordered."),
        _c("quantity", "INTEGER", "Units ordered."),
        _c("unit_price", "DECIMAL(10,2)", "Price per unit at order time."),
        _c("updated_at", "TIMESTAMP", "Last change in the source (UTC): the version key."),
        EXTRACTED_AT,
        SOURCE_RESCUED,
    ),
)
EVENTS = RawTable(
    "events",
    "Product analytics events from the landing zone, faithful (duplicates kept), by arrival day.",
    (
        _unique_id("event_id", "Event id given by the emitter; not unique in raw."),
        _c("user_id", "BIGINT", "User id (digit strings in the file are read as integers)."),
        _c("event_type", "VARCHAR", "Event type as sent; unknown types are kept."),
        _c("occurred_at", "TIMESTAMP", "When it happened, normalised to UTC."),
        _c("session_id", "VARCHAR", "Session id, optional."),
        _c("properties", "JSON", "Free-form event properties, optional JSON object."),
        *FILE_LINEAGE,
    ),
)
PAYMENTS = RawTable(
    "payments",
    "Payment provider export from the landing zone, faithful (duplicates kept), by arrival day.",
    (
        _unique_id("payment_id", "Payment id from the provider; not unique in raw."),
        _c("order_id", "BIGINT", "Order the payment is for (may be unknown to the app)."),
        _c("amount", "DECIMAL(18,4)", "Amount in `currency`."),
        _c("currency", "VARCHAR", "ISO 4217 currency code."),
        _c("status", "VARCHAR", "succeeded, failed or refunded."),
        _c("created_at", "TIMESTAMP", "When the payment was created, normalised to UTC."),
        *FILE_LINEAGE,
    ),
)
DEAD_LETTER = RawTable(
    "dead_letter",
    "Records of landing files and rows of app tables that broke a required rule, with the "
    "reason: nothing is dropped.",
    (
        _c("source", "VARCHAR", "The raw table refusing it: 'events', 'payments', 'users', ..."),
        _c("dt", "DATE", "Arrival day (partition) of the file; for an app row, the day refused."),
        _c(
            "source_file",
            "VARCHAR",
            "Key of the landing file, relative to the landing root; null for an app row.",
        ),
        _c(
            "line_number",
            "BIGINT",
            "1-based line in the file, header and blank lines counted; null for an app row.",
        ),
        _c(
            "raw_record",
            "VARCHAR",
            "The original text of the line; an app row as a JSON object of its values as text.",
        ),
        _c("error", "VARCHAR", "Why it was rejected, and what to fix."),
        _c("rejected_at", "TIMESTAMP", "When it was rejected (UTC)."),
    ),
)

SOURCE_DB_TABLES = (USERS, PRODUCTS, ORDERS, ORDER_ITEMS)


def ensure_raw_tables(conn, tables: tuple[RawTable, ...]) -> None:
    """Create the raw schema and the given tables, and add columns declared since they were made.

    Columns are only ever added to a raw table (nullable, at the end), so a warehouse built by
    an older version of the platform keeps its rows and gains the new columns as nulls.
    """
    conn.execute("CREATE SCHEMA IF NOT EXISTS raw")
    for table in tables:
        conn.execute(table.ddl())
    existing = set(
        conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'raw'"
        ).fetchall()
    )
    for table in tables:
        for column in table.columns:
            if (table.name, column.name) not in existing:
                conn.execute(
                    f"ALTER TABLE {table.qualified_name} ADD COLUMN {column.duckdb_definition}"
                )


@contextmanager
def one_transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """BEGIN, the block, COMMIT; on any failure ROLLBACK and the failure raised as it was.
    A COMMIT that failed (a disk full, a file over its size limit) has ended the transaction
    itself: the ROLLBACK after it raised "cannot rollback - no transaction is active", the
    error a run showed instead of its cause."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        with suppress(duckdb.Error):
            conn.execute("ROLLBACK")
        raise
