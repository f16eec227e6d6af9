"""Column schema, column lineage and row counts of the models one dbt run built.

dagster-dbt's `fetch_column_metadata` asks an in-process dbt adapter for each model's and each
parent's columns, one query at a time, and waits on its worker threads in a polling loop that
holds a core while dbt runs; with the adapter's start-up, that cost about half a plain `dbt
build` of the core layer. Here the warehouse is asked twice (every relation's columns, every
built table's row count), and the sqlglot lineage, which only changes with a model's SQL or
its parents' columns, is kept per model in the warehouse's dbt target folder.

Metadata is for people browsing the UI: a model whose lineage cannot be derived gets none, with
a warning, and its run goes on.
"""

import hashlib
import json
import os
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtProject
from dagster_dbt.core.dbt_cli_event import EventHistoryMetadata, _build_column_lineage_metadata

from data_platform.resources.warehouse_reader import RelationKey, WarehouseReader

Columns = dict[str, str]  # column name -> warehouse type, in table order
LINEAGE_CACHE_FILE = "column_lineage_cache.json"
# Cached lineage is only as good as the code that derived it.
LINEAGE_CODE_VERSION = f"dagster-dbt {version('dagster-dbt')}, sqlglot {version('sqlglot')}"


def relation_key(props: Mapping[str, Any]) -> RelationKey:
    """(schema, table) of a dbt model, snapshot or source; DuckDB resolves names in any case."""
    identifier = props["identifier"] if props["resource_type"] == "source" else props["alias"]
    return props["schema"].lower(), identifier.lower()


def row_counts(reader: WarehouseReader, tables: list[RelationKey]) -> dict[RelationKey, int]:
    """Rows of each table, in one query (views are left out: counting re-runs their SQL)."""
    if not tables:
        return {}
    counts = " UNION ALL ".join(
        f'SELECT {i} AS i, count(*) AS n FROM "{schema}"."{table}"'
        for i, (schema, table) in enumerate(tables)
    )
    return {tables[i]: int(n) for i, n in reader.frame(counts).itertuples(index=False)}


def column_schema(props: Mapping[str, Any], columns: Columns) -> dg.TableSchema:
    """The built relation's columns and types, described from the model's YAML."""
    described = {name.lower(): column for name, column in props.get("columns", {}).items()}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=name,
                type=data_type,
                description=described.get(name.lower(), {}).get("description") or None,
            )
            for name, data_type in columns.items()
        ]
    )


class LineageCache:
    """Column lineage per model, valid while its compiled SQL and its inputs' columns are.

    A cache that cannot be read, or an entry that cannot be restored, is a miss: the lineage
    is derived again and the file rewritten."""

    def __init__(self, target_path: Path):
        self.path = target_path / LINEAGE_CACHE_FILE
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            entries = {}
        self.entries: dict[str, Any] = entries if isinstance(entries, dict) else {}
        self.changed = False

    def lookup(self, unique_id: str, fingerprint: str) -> dict[str, Any] | None:
        entry = self.entries.get(unique_id)
        if not isinstance(entry, dict) or entry.get("fingerprint") != fingerprint:
            return None
        try:
            return dg.deserialize_value(entry["metadata"], as_type=dict)
        except Exception:
            return None

    def store(self, unique_id: str, fingerprint: str, metadata: dict[str, Any]) -> None:
        self.entries[unique_id] = {
            "fingerprint": fingerprint,
            "metadata": dg.serialize_value(metadata),
        }
        self.changed = True

    def save(self) -> None:
        if self.changed:  # written whole, then renamed: a reader never sees half a file
            partial = self.path.with_name(f"{self.path.name}.{os.getpid()}.partial")
            partial.write_text(json.dumps(self.entries))
            partial.replace(self.path)


def lineage_fingerprint(
    compiled_sql: str, history: EventHistoryMetadata, parent_keys: list[dg.AssetKey]
) -> str:
    """What a model's lineage is derived from: its compiled SQL, its and its parents' columns,
    the asset keys the lineage names its parents by, and the code that derives it."""
    keys = sorted(key.to_user_string() for key in parent_keys)
    inputs = [LINEAGE_CODE_VERSION, compiled_sql, history.columns, history.parents, keys]
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def compiled_sql_path(target_path: Path, props: Mapping[str, Any]) -> Path:
    path = target_path / "compiled" / props["package_name"] / props["original_file_path"]
    # dbt >= 1.12 writes the blocks of a snapshot file into a folder named after the file.
    return path / f"{props['name']}.sql" if props["resource_type"] == "snapshot" else path


class BuiltModelMetadata:
    """The metadata of the models one dbt invocation built, read once it has exited.

    `manifest` is the one dbt wrote for the run: its relation names carry the database the
    compiled SQL uses (dbt-duckdb names it after the warehouse file).
    """

    def __init__(
        self,
        manifest: Mapping[str, Any],
        translator: DagsterDbtTranslator,
        project: DbtProject | None,
        target_path: Path,
    ):
        self.manifest = manifest
        self.translator = translator
        self.project = project
        self.target_path = target_path

    def props(self, unique_id: str) -> Mapping[str, Any]:
        return self.manifest["nodes"].get(unique_id) or self.manifest["sources"][unique_id]

    def for_models(
        self, reader: WarehouseReader, unique_ids: list[str]
    ) -> dict[str, dict[str, Any]]:
        """unique_id -> column schema, column lineage and (tables only) row count."""
        columns = reader.columns()
        keys = {uid: relation_key(self.props(uid)) for uid in unique_ids}
        views = {
            uid for uid in unique_ids if self.props(uid)["config"].get("materialized") == "view"
        }
        counts = row_counts(
            reader, [k for uid, k in keys.items() if uid not in views and k in columns]
        )
        cache = LineageCache(self.target_path)
        metadata = {}
        for uid in unique_ids:
            key = keys[uid]
            if key not in columns:
                continue
            props = self.props(uid)
            entry: dict[str, Any] = {"dagster/column_schema": column_schema(props, columns[key])}
            entry.update(self.lineage(cache, props, columns[key], columns))
            if key in counts:
                entry["dagster/row_count"] = counts[key]
            metadata[uid] = entry
        cache.save()
        return metadata

    def lineage(
        self,
        cache: LineageCache,
        props: Mapping[str, Any],
        own_columns: Columns,
        columns: dict[RelationKey, Columns],
    ) -> dict[str, Any]:
        """dagster-dbt's sqlglot column lineage of one model, from the cache when still valid."""
        sql_path = compiled_sql_path(self.target_path, props)
        if not sql_path.is_file():  # seeds, and snapshots before dbt 1.12, have no compiled SQL
            return {}
        unique_id = props["unique_id"]
        parent_props = [
            parent
            for parent in map(self.props, self.manifest["parent_map"].get(unique_id, []))
            if parent.get("relation_name")  # ephemeral models have no relation of their own
        ]
        parents = {p["relation_name"]: columns.get(relation_key(p), {}) for p in parent_props}
        history = EventHistoryMetadata(
            columns={name: {"data_type": t} for name, t in own_columns.items()},
            parents={name: {c: {"data_type": t} for c, t in cols.items()} for name, cols in parents.items()},
        )  # fmt: skip
        parent_keys = [self.translator.get_asset_key(p) for p in parent_props]
        fingerprint = lineage_fingerprint(sql_path.read_text(), history, parent_keys)
        cached = cache.lookup(unique_id, fingerprint)
        if cached is not None:
            return cached
        try:
            lineage = _build_column_lineage_metadata(
                event_history_metadata=history,
                dbt_resource_props=dict(props),
                manifest=self.manifest,
                dagster_dbt_translator=self.translator,
                target_path=self.target_path,
                project=self.project,
            )
        except Exception as error:  # sqlglot cannot read every SQL: no lineage, not no run
            dg.get_dagster_logger().warning(
                f"No column lineage for {unique_id}: {type(error).__name__}: {error}"
            )
            lineage = {}
        cache.store(unique_id, fingerprint, lineage)
        return lineage
