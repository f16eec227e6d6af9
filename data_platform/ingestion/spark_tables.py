"""The raw tables on Spark: the same declarations as DuckDB's (`tables`), in Spark's types.

JSON columns are STRING (Spark tables have no JSON type) and VARCHAR is STRING; timestamps are
Spark TIMESTAMPs, read and written in the session's time zone, UTC. The landing-file tables are
parquet partitioned by day, the dead letters by source and day, so that a run replaces exactly
its own partitions; partition columns come last in a Spark table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from data_platform.ingestion.tables import DEAD_LETTER, EVENTS, PAYMENTS, Column, RawTable

if TYPE_CHECKING:
    from pyspark.sql.connect.session import SparkSession

SPARK_TYPES = {"VARCHAR": "STRING", "JSON": "STRING"}
PARTITION_COLUMNS: dict[str, tuple[str, ...]] = {
    EVENTS.name: ("dt",),
    PAYMENTS.name: ("dt",),
    DEAD_LETTER.name: ("source", "dt"),
}


def spark_type(column: Column) -> str:
    return SPARK_TYPES.get(column.type, column.type)


def spark_columns(table: RawTable) -> list[Column]:
    """The table's columns in Spark's order: data columns, then partition columns."""
    partitions = PARTITION_COLUMNS.get(table.name, ())
    data = [c for c in table.columns if c.name not in partitions]
    return data + [c for name in partitions for c in table.columns if c.name == name]


def spark_ddl(table: RawTable) -> str:
    columns = ", ".join(f"`{c.name}` {spark_type(c)}" for c in spark_columns(table))
    partitions = PARTITION_COLUMNS.get(table.name)
    partitioned = f" PARTITIONED BY ({', '.join(partitions)})" if partitions else ""
    return (
        f"CREATE TABLE IF NOT EXISTS {table.qualified_name} ({columns}) USING parquet{partitioned}"
    )


def ensure_spark_tables(spark: SparkSession, tables: tuple[RawTable, ...]) -> dict[str, list[str]]:
    """Create the raw database and tables, and add the data columns declared since; each
    table's columns as they now lie. A column added to a table made before it lies after the
    data columns it had, not where it is declared: a write must name its columns, or match
    this order, not the declaration's."""
    spark.sql("CREATE DATABASE IF NOT EXISTS raw")
    layouts = {}
    for table in tables:
        spark.sql(spark_ddl(table))
        existing = spark.table(table.qualified_name).columns
        added = [c for c in spark_columns(table) if c.name not in existing]
        if added:
            columns = ", ".join(f"`{c.name}` {spark_type(c)}" for c in added)
            spark.sql(f"ALTER TABLE {table.qualified_name} ADD COLUMNS ({columns})")
            existing = spark.table(table.qualified_name).columns
        layouts[table.name] = existing
    return layouts
