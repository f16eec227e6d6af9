"""The warehouse on Spark in a backup, and back: every table and view of the platform's schemas.

A table is exported through the cluster as parquet files, beside the DDL that recreates it
(SHOW CREATE TABLE without its LOCATION, so a restore puts it in the restoring cluster's own
warehouse folder); a view keeps its DDL only. The cluster's executors write the files, into the
backup's staging folder on this machine: the project's own cluster (`make services-up`) can, a
remote cluster cannot, and the backup then says so in one line instead of sealing a backup
without the warehouse.

A restore creates the schemas and loads each table beside the live one, under a staging name
(`load_spark_warehouse`); a restore that fails or is killed while loading leaves the cluster's
relations as they were, and can be run again. Only then are the relations replaced (the old
dropped, the staged renamed into place, the views created once the relations they read exist):
`swap_in_spark_warehouse`, a step of the restore journal (restore_journal.py), so that a restore
killed half way through it, with tables dropped and views missing, is finished by the next
command. Each of its statements is skipped once done, so it can be repeated from any point.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from data_platform.operations.backup_store import BackupError

if TYPE_CHECKING:
    from pyspark.sql.connect.session import SparkSession

SPARK_WAREHOUSE = "spark_warehouse"
CATALOG = f"{SPARK_WAREHOUSE}/relations.json"
# Spark's own schema, never the platform's.
SYSTEM_SCHEMAS = {"default"}
_LOCATION = re.compile(r"^LOCATION '(?:[^'\\]|\\.)*'\n", re.MULTILINE)
# A table being restored, until it is renamed into place.
STAGED_SUFFIX = "__restoring"
_CREATE_TABLE = re.compile(r"^(CREATE TABLE )\S+")


def platform_relations(spark: SparkSession) -> list[tuple[str, bool]]:
    """(`schema.name`, is a view) of every relation outside Spark's own schema."""
    return [
        (f"{schema}.{relation.name}", relation.tableType == "VIEW")
        for schema in sorted(d.name for d in spark.catalog.listDatabases())
        if schema not in SYSTEM_SCHEMAS
        for relation in spark.catalog.listTables(schema)
        if not relation.isTemporary and not relation.name.endswith(STAGED_SUFFIX)
    ]


def _staged_tables(spark: SparkSession) -> list[str]:
    """Tables an interrupted restore left under their staging name."""
    return [
        f"{schema}.{relation.name}"
        for schema in sorted(d.name for d in spark.catalog.listDatabases())
        for relation in spark.catalog.listTables(schema)
        if relation.name.endswith(STAGED_SUFFIX)
    ]


def relation_ddl(spark: SparkSession, name: str) -> str:
    """The statement that recreates `name` in any cluster's warehouse folder."""
    return _LOCATION.sub("", spark.sql(f"SHOW CREATE TABLE {name}").first()[0])


def export_spark_warehouse(spark: SparkSession, staging: Path) -> int:
    """Every platform relation into `staging`; returns how many."""
    relations = []
    for name, is_view in platform_relations(spark):
        relations.append({"name": name, "view": is_view, "ddl": relation_ddl(spark, name)})
        if is_view:
            continue
        folder = staging / SPARK_WAREHOUSE / name
        spark.table(name).write.mode("overwrite").parquet(str(folder.absolute()))
        if not (folder / "_SUCCESS").exists():
            raise BackupError(
                f"the Spark cluster wrote {name} somewhere this machine cannot see (a remote "
                "cluster): back its warehouse up with the cluster's own storage, or run the "
                "backup beside the cluster"
            )
    catalog = staging / CATALOG
    catalog.parent.mkdir(parents=True, exist_ok=True)
    catalog.write_text(json.dumps(relations, indent=2) + "\n")
    return len(relations)


def _create_views(spark: SparkSession, views: list[dict]) -> None:
    """Each view once the relations it reads exist: in rounds, until none is left."""
    pending = list(views)
    while pending:
        failed = []
        for view in pending:
            try:
                spark.sql(view["ddl"])
            except Exception as error:  # a relation it reads is not there yet
                failed.append((view, error))
        if len(failed) == len(pending):
            view, error = failed[0]
            raise BackupError(f"the backup's view {view['name']} cannot be created: {error}")
        pending = [view for view, _ in failed]


def _load_staged(spark: SparkSession, staging: Path, table: dict) -> None:
    """The backup's `table` created and filled under its staging name."""
    staged = table["name"] + STAGED_SUFFIX
    spark.sql(_CREATE_TABLE.sub(lambda m: m[1] + staged, table["ddl"], count=1))
    folder = staging / SPARK_WAREHOUSE / table["name"]
    if any(folder.glob("*.parquet")):
        columns = spark.table(staged).columns
        spark.read.parquet(str(folder.absolute())).select(*columns).write.insertInto(staged)


def load_spark_warehouse(spark: SparkSession, staging: Path, force: bool) -> list[list]:
    """The backup's tables loaded beside the cluster's, under their staging names; returns the
    cluster's platform relations, [name, is a view], which the swap replaces. A cluster that
    holds platform relations is refused unless `force`."""
    existing = platform_relations(spark)
    if existing and not force:
        raise BackupError(
            f"the Spark cluster already holds {len(existing)} of the platform's tables and "
            "views: restore into an empty cluster, or add --force to replace them"
        )
    relations = json.loads((staging / CATALOG).read_text())
    for schema in sorted({r["name"].split(".")[0] for r in relations}):
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {schema}")
    for leftover in _staged_tables(spark):
        spark.sql(f"DROP TABLE {leftover}")
    try:
        for table in relations:
            if not table["view"]:
                _load_staged(spark, staging, table)
    except BaseException:
        for leftover in _staged_tables(spark):
            spark.sql(f"DROP TABLE {leftover}")
        raise
    return [[name, is_view] for name, is_view in existing]


def swap_in_spark_warehouse(spark: SparkSession, staging: Path, existing: list[list]) -> int:
    """The loaded tables renamed over the cluster's relations, then the backup's views created;
    returns how many relations the backup holds. Repeatable from any point: a table whose staged
    copy is gone is already in place, and what is dropped is looked up as it is now."""
    relations = json.loads((staging / CATALOG).read_text())
    tables = [r["name"] for r in relations if not r["view"]]
    staged = {name.removesuffix(STAGED_SUFFIX) for name in _staged_tables(spark)}
    now = dict(platform_relations(spark))
    # The old relations and the backup's views (created again below), never a restored table.
    doomed = {name for name, _ in existing} | {r["name"] for r in relations if r["view"]}
    for name in sorted(doomed):
        if name in now and (name not in tables or name in staged):
            spark.sql(f"DROP {'VIEW' if now[name] else 'TABLE'} {name}")
    for name in tables:
        if name in staged:
            spark.sql(f"ALTER TABLE {name}{STAGED_SUFFIX} RENAME TO {name}")
    _create_views(spark, [r for r in relations if r["view"]])
    return len(relations)
