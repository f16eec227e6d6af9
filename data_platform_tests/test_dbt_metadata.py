"""The helpers that read a dbt run's column metadata and row counts from the warehouse."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest
from dagster_dbt.core.dbt_cli_event import EventHistoryMetadata

from data_platform.assets.dbt_metadata import (
    LineageCache,
    column_schema,
    lineage_fingerprint,
    relation_key,
    row_counts,
)
from data_platform.resources.warehouse_reader import DuckDBReader


@pytest.fixture
def conn(tmp_path):
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as conn:
        conn.execute("CREATE SCHEMA marts")
        conn.execute("CREATE TABLE marts.orders (order_id INTEGER, total DECIMAL(12, 2))")
        conn.execute("INSERT INTO marts.orders SELECT range, 1.5 FROM range(7)")
        conn.execute("CREATE TABLE marts.empty (day DATE)")
        conn.execute("CREATE VIEW marts.big_orders AS SELECT * FROM marts.orders WHERE total > 1")
        yield conn


def test_relation_columns_lists_tables_and_views_in_column_order(conn):
    columns = DuckDBReader(conn).columns()
    assert list(columns[("marts", "orders")].items()) == [
        ("order_id", "INTEGER"),
        ("total", "DECIMAL(12,2)"),
    ]
    assert list(columns[("marts", "big_orders")]) == ["order_id", "total"]


def test_row_counts_of_several_tables_in_one_query(conn):
    assert row_counts(DuckDBReader(conn), [("marts", "orders"), ("marts", "empty")]) == {
        ("marts", "orders"): 7,
        ("marts", "empty"): 0,
    }
    assert row_counts(DuckDBReader(conn), []) == {}


def test_relation_key_uses_the_alias_of_a_model_and_the_identifier_of_a_source():
    model = {"resource_type": "model", "schema": "marts", "alias": "fct_orders", "name": "x"}
    source = {"resource_type": "source", "schema": "raw", "identifier": "orders", "name": "y"}
    assert relation_key(model) == ("marts", "fct_orders")
    assert relation_key(source) == ("raw", "orders")


def test_column_schema_takes_types_from_the_warehouse_and_descriptions_from_yaml():
    props = {"columns": {"ORDER_ID": {"description": "The order."}, "gone": {"description": "x"}}}
    schema = column_schema(props, {"order_id": "INTEGER", "total": "DECIMAL(12,2)"})
    assert [(c.name, c.type, c.description) for c in schema.columns] == [
        ("order_id", "INTEGER", "The order."),
        ("total", "DECIMAL(12,2)", None),
    ]


def lineage_of(column: str, parent: str) -> dict:
    deps = [dg.TableColumnDep(asset_key=dg.AssetKey(["staging", parent]), column_name=column)]
    return {"dagster/column_lineage": dg.TableColumnLineage(deps_by_column={column: deps})}


def test_lineage_cache_survives_a_reload_and_misses_on_a_changed_fingerprint(tmp_path):
    cache = LineageCache(tmp_path)
    assert cache.lookup("model.a", "f1") is None
    cache.store("model.a", "f1", lineage_of("total", "stg_orders"))
    cache.save()

    reloaded = LineageCache(tmp_path)
    assert reloaded.lookup("model.a", "f1") == lineage_of("total", "stg_orders")
    assert reloaded.lookup("model.a", "f2") is None
    assert reloaded.lookup("model.b", "f1") is None


def test_an_unreadable_lineage_cache_is_treated_as_empty(tmp_path):
    (tmp_path / "column_lineage_cache.json").write_text("{not json")
    assert LineageCache(tmp_path).lookup("model.a", "f1") is None


def test_lineage_fingerprint_changes_with_each_input():
    history = EventHistoryMetadata(
        columns={"total": {"data_type": "INTEGER"}},
        parents={'"w"."staging"."orders"': {"total": {"data_type": "INTEGER"}}},
    )
    keys = [dg.AssetKey(["staging", "orders"])]
    base = lineage_fingerprint("select total from orders", history, keys)
    assert base == lineage_fingerprint("select total from orders", history, keys)
    retyped = EventHistoryMetadata(
        columns=history.columns, parents={'"w"."staging"."orders"': {"total": {"data_type": "X"}}}
    )
    assert len({
        base,
        lineage_fingerprint("select total + 1 as total from orders", history, keys),
        lineage_fingerprint("select total from orders", retyped, keys),
        lineage_fingerprint("select total from orders", history, [dg.AssetKey(["raw", "o"])]),
    }) == 4  # fmt: skip


def node(name: str, materialized: str) -> dict:
    return {
        "unique_id": f"model.shop.{name}",
        "resource_type": "model",
        "name": name,
        "schema": "marts",
        "alias": name,
        "package_name": "shop",
        "original_file_path": f"models/{name}.sql",
        "relation_name": f'"warehouse"."marts"."{name}"',
        "config": {"materialized": materialized},
        "columns": {},
    }


def test_metadata_of_built_models_survives_a_model_sqlglot_cannot_read(conn, tmp_path, monkeypatch):
    """Tables get a row count, views do not, a model missing from the warehouse gets nothing,
    and a lineage that fails to derive leaves the model's other metadata in place."""
    from data_platform.assets import dbt_metadata
    from data_platform.assets.dbt import TRANSLATOR

    names = {"orders": "table", "big_orders": "view", "never_built": "table"}
    manifest = {
        "nodes": {f"model.shop.{n}": node(n, m) for n, m in names.items()},
        "sources": {},
        "parent_map": {"model.shop.big_orders": ["model.shop.orders"]},
    }
    compiled = tmp_path / "target" / "compiled" / "shop" / "models"
    compiled.mkdir(parents=True)
    (compiled / "big_orders.sql").write_text("select * from marts.orders where total > 1")

    def unreadable(**kwargs):
        raise ValueError("sqlglot could not read it")

    monkeypatch.setattr(dbt_metadata, "_build_column_lineage_metadata", unreadable)
    reader = dbt_metadata.BuiltModelMetadata(manifest, TRANSLATOR, None, tmp_path / "target")
    metadata = reader.for_models(DuckDBReader(conn), list(manifest["nodes"]))

    assert set(metadata) == {"model.shop.orders", "model.shop.big_orders"}
    assert metadata["model.shop.orders"]["dagster/row_count"] == 7
    view = metadata["model.shop.big_orders"]
    assert "dagster/row_count" not in view and "dagster/column_lineage" not in view
    assert [c.name for c in view["dagster/column_schema"].columns] == ["order_id", "total"]
