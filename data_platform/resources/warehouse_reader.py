"""The questions checks and analytics ask of the warehouse, answered on either engine.

Checks and analytics ask small questions (rows per day, the keys of a JSON column, a mart's
rows for a chart) and get small answers. Their SQL is written once, in DuckDB's dialect, the
embedded default's; on Spark, sqlglot renders it as Spark SQL, the query runs on the cluster and
only its answer comes back, as pandas. The answer has the same dtypes on both engines (dates as
datetime64, decimals as floats, as DuckDB hands them over), so the code reading it has no
branch per engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from data_platform.ingestion.tables import RawTable, ensure_raw_tables
from data_platform.resources.warehouse import existing_tables

if TYPE_CHECKING:  # pandas and pyspark load when a read first runs, not with the Definitions
    import duckdb
    import pandas as pd
    from pyspark.sql.connect.session import SparkSession

RelationKey = tuple[str, str]  # (schema, table), lower case


class WarehouseReader(Protocol):
    """What a check or an analytics asset may ask, whatever the engine."""

    engine: str

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """The rows of `sql` (DuckDB dialect, `?` parameters)."""
        ...

    def has_table(self, qualified_name: str) -> bool: ...

    def columns(self) -> dict[RelationKey, dict[str, str]]:
        """Every table's and view's columns and their types, in table order."""
        ...

    def ensure_raw_tables(self, tables: tuple[RawTable, ...]) -> None:
        """Create the raw tables that do not exist yet, empty: a check launched before the
        first ingestion finds an empty table, not an error."""
        ...


class DuckDBReader:
    engine = "duckdb"

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        return self.conn.execute(sql, list(params)).df()

    def has_table(self, qualified_name: str) -> bool:
        return qualified_name in existing_tables(self.conn)

    def columns(self) -> dict[RelationKey, dict[str, str]]:
        rows = self.conn.execute(
            "SELECT table_schema, table_name, column_name, data_type "
            "FROM information_schema.columns WHERE table_catalog = current_database() "
            "ORDER BY table_schema, table_name, ordinal_position"
        ).fetchall()
        columns: dict[RelationKey, dict[str, str]] = {}
        for schema, table, column, data_type in rows:
            columns.setdefault((schema.lower(), table.lower()), {})[column] = data_type
        return columns

    def ensure_raw_tables(self, tables: tuple[RawTable, ...]) -> None:
        ensure_raw_tables(self.conn, tables)


@cache
def spark_sql(duckdb_sql: str) -> str:
    """`duckdb_sql` rendered as Spark SQL (sqlglot), e.g. `unnest(json_keys(x))` ->
    `EXPLODE(JSON_OBJECT_KEYS(x))`, `date_diff('day', a, b)` -> `DATEDIFF(DAY, a, b)`."""
    import sqlglot

    [rendered] = sqlglot.transpile(duckdb_sql, read="duckdb", write="spark")
    return rendered


class SparkReader:
    engine = "spark"

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        import pandas as pd
        from pyspark.sql.types import DateType, DecimalType

        result = self.spark.sql(spark_sql(sql), args=list(params))
        frame = result.toPandas()
        for field in result.schema.fields:
            if isinstance(field.dataType, DateType):
                frame[field.name] = pd.to_datetime(frame[field.name])
            elif isinstance(field.dataType, DecimalType):
                frame[field.name] = frame[field.name].astype("float64")
        return frame

    def has_table(self, qualified_name: str) -> bool:
        return self.spark.catalog.tableExists(qualified_name)

    def columns(self) -> dict[RelationKey, dict[str, str]]:
        # The catalog API, a call per table: Spark has no information_schema to ask at once.
        catalog = self.spark.catalog
        return {
            (database.name.lower(), table.name.lower()): {
                column.name: column.dataType
                for column in catalog.listColumns(f"{database.name}.{table.name}")
            }
            for database in catalog.listDatabases()
            for table in catalog.listTables(database.name)
            if not table.isTemporary
        }

    def ensure_raw_tables(self, tables: tuple[RawTable, ...]) -> None:
        from data_platform.ingestion.spark_tables import ensure_spark_tables

        ensure_spark_tables(self.spark, tables)
