"""The IO managers that store the DataFrames of Python assets as warehouse tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import dagster as dg
from dagster_duckdb import DuckDBIOManager

from data_platform.resources.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd
    from dagster._core.storage.db_io_manager import DbTypeHandler


class WarehouseIOManager(DuckDBIOManager):
    """dagster-duckdb-pandas' IO manager (a table per asset, [schema, table] from its key),
    with its pandas type handler imported when a run first stores or loads a DataFrame, and a
    table whose columns changed replaced whole (`frame_tables`).

    Importing dagster_duckdb_pandas imports pandas: a third of a second of every load of the
    Definitions (each sensor tick's code server, the UI, every run's process) otherwise.
    """

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        from data_platform.resources.frame_tables import ReplacingPandasTypeHandler

        return [ReplacingPandasTypeHandler()]

    @staticmethod
    def default_load_type() -> type:
        import pandas as pd

        return pd.DataFrame


class SparkWarehouseIOManager(dg.ConfigurableIOManager):
    """The same contract on Spark (DATA_PLATFORM_ENGINE=spark): a DataFrame returned by an asset
    becomes the Spark table [schema, table] of its key, replaced whole, and loads back as pandas.

    The frames are the small results of analytics assets (a row per customer, per table), so they
    travel through the Spark Connect client as Arrow; nothing large goes this way.
    """

    warehouse: Warehouse

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        schema, table = context.asset_key.path[-2:]
        with self.warehouse.spark() as spark:
            spark.sql(f"CREATE DATABASE IF NOT EXISTS {schema}")
            spark.createDataFrame(obj).write.mode("overwrite").saveAsTable(f"{schema}.{table}")
        context.add_output_metadata({"dagster/row_count": len(obj)})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        schema, table = context.upstream_output.asset_key.path[-2:]
        with self.warehouse.spark() as spark:
            return spark.table(f"{schema}.{table}").toPandas()
