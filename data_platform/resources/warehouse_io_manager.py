"""The IO manager that stores the DataFrames of Python assets as warehouse tables."""

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dagster_duckdb import DuckDBIOManager

if TYPE_CHECKING:
    from dagster._core.storage.db_io_manager import DbTypeHandler


class WarehouseIOManager(DuckDBIOManager):
    """dagster-duckdb-pandas' IO manager (a table per asset, [schema, table] from its key),
    with its pandas type handler imported when a run first stores or loads a DataFrame.

    Importing dagster_duckdb_pandas imports pandas: a third of a second of every load of the
    Definitions (each sensor tick's code server, the UI, every run's process) otherwise.
    """

    @staticmethod
    def type_handlers() -> Sequence["DbTypeHandler"]:
        from dagster_duckdb_pandas import DuckDBPandasTypeHandler

        return [DuckDBPandasTypeHandler()]

    @staticmethod
    def default_load_type() -> type:
        import pandas as pd

        return pd.DataFrame
