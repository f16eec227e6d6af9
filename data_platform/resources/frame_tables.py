"""How a Python asset's DataFrame replaces its DuckDB table (imported when a run first stores
one: it imports pandas)."""

from __future__ import annotations

import dagster as dg
import pandas as pd
from dagster._core.storage.db_io_manager import TableSlice
from dagster_duckdb_pandas import DuckDBPandasTypeHandler


def _columns(connection, table_slice: TableSlice) -> list[str] | None:
    """The table's column names in order, or None when it does not exist."""
    rows = connection.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [table_slice.schema, table_slice.table],
    ).fetchall()
    return [name for (name,) in rows] or None


class ReplacingPandasTypeHandler(DuckDBPandasTypeHandler):
    """dagster-duckdb-pandas' handler, except that a whole table whose columns are not the
    frame's is dropped first, so the frame creates it again.

    Upstream inserts into the table it finds: an asset that gained, lost or renamed a column
    failed on every warehouse made before the change (`insert ... select *` with another
    number of columns), as the Spark IO manager's overwrite never does."""

    def handle_output(
        self,
        context: dg.OutputContext,
        table_slice: TableSlice,
        obj: pd.DataFrame,
        connection,
    ) -> None:
        columns = _columns(connection, table_slice)
        if not context.has_partition_key and columns not in (None, list(obj.columns)):
            connection.execute(f'DROP TABLE "{table_slice.schema}"."{table_slice.table}"')
        super().handle_output(context, table_slice, obj, connection)
