"""Every asset as the engine holding its table shows it in the UI: kind and column types.

Assets are declared for the embedded default: kind `duckdb` (dagster-dbt reads the same from
the manifest, built against the duckdb target) and the raw tables' DuckDB column types. On
Spark (DATA_PLATFORM_ENGINE=spark) the asset graph showed DuckDB's icon on every table the
cluster holds, and VARCHAR or JSON columns where Spark's are STRING, partition columns last.
"""

from __future__ import annotations

import dagster as dg

from data_platform.automation.freshness import Assets
from data_platform.ingestion.spark_tables import SPARK_TYPES, spark_columns
from data_platform.ingestion.tables import DEAD_LETTER, EVENTS, PAYMENTS, SOURCE_DB_TABLES

DEFAULT_ENGINE = "duckdb"
SCHEMA = "dagster/column_schema"
TABLE_NAME = "dagster/table_name"
_RAW_TABLES = {t.qualified_name: t for t in (*SOURCE_DB_TABLES, EVENTS, PAYMENTS, DEAD_LETTER)}


def _as_on_spark(schema: dg.TableSchema, table_name: str) -> dg.TableSchema:
    """A declared column schema as Spark holds the table: Spark's types, and a raw table's
    columns in Spark's order (partition columns last)."""
    columns = {c.name: c for c in schema.columns}
    table = _RAW_TABLES.get(table_name)
    names = [c.name for c in spark_columns(table)] if table else list(columns)
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name,
                SPARK_TYPES.get(columns[name].type, columns[name].type),
                description=columns[name].description,
            )
            for name in names
        ]
    )


def shown_on(engine: str, assets: Assets) -> list[dg.AssetsDefinition | dg.AssetSpec]:
    """`assets` with the default engine's kind replaced by `engine`'s, and on Spark each raw
    table's column schema as Spark declares it."""

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        if DEFAULT_ENGINE not in spec.kinds:
            return spec
        metadata = dict(spec.metadata)
        if engine == "spark" and SCHEMA in metadata:
            metadata[SCHEMA] = _as_on_spark(metadata[SCHEMA], str(metadata.get(TABLE_NAME)))
        return spec.replace_attributes(
            kinds=(set(spec.kinds) - {DEFAULT_ENGINE}) | {engine}, metadata=metadata
        )

    return list(assets) if engine == DEFAULT_ENGINE else dg.map_asset_specs(apply, list(assets))
