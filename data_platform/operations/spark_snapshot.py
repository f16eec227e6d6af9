"""The warehouse on Spark in a backup, and back: every table and view of the platform's schemas.

A table is exported through the cluster as parquet files, beside the DDL that recreates it
(SHOW CREATE TABLE without its LOCATION, so a restore puts it in the restoring cluster's own
warehouse folder); a view keeps its DDL only. The cluster's executors write the files, into the
backup's staging folder on this machine: the project's own cluster (`make services-up`) can, a
remote cluster cannot, and the backup then says so in one line instead of sealing a backup
without the warehouse.

A restore creates the schemas, each table from its DDL with its rows loaded back, then the views
(a view is created once the relations it reads exist).
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


def platform_relations(spark: SparkSession) -> list[tuple[str, bool]]:
    """(`schema.name`, is a view) of every relation outside Spark's own schema."""
    return [
        (f"{schema}.{relation.name}", relation.tableType == "VIEW")
        for schema in sorted(d.name for d in spark.catalog.listDatabases())
        if schema not in SYSTEM_SCHEMAS
        for relation in spark.catalog.listTables(schema)
        if not relation.isTemporary
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


def import_spark_warehouse(spark: SparkSession, staging: Path, force: bool) -> int:
    """The backup's relations into the cluster, replacing any of the same name; returns how
    many. A cluster that holds platform relations is refused unless `force`."""
    existing = platform_relations(spark)
    if existing and not force:
        raise BackupError(
            f"the Spark cluster already holds {len(existing)} of the platform's tables and "
            "views: restore into an empty cluster, or add --force to replace them"
        )
    relations = json.loads((staging / CATALOG).read_text())
    for schema in sorted({r["name"].split(".")[0] for r in relations}):
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {schema}")
    for name, is_view in existing:
        spark.sql(f"DROP {'VIEW' if is_view else 'TABLE'} IF EXISTS {name}")
    for table in (r for r in relations if not r["view"]):
        spark.sql(table["ddl"])
        folder = staging / SPARK_WAREHOUSE / table["name"]
        if any(folder.glob("*.parquet")):
            columns = spark.table(table["name"]).columns
            rows = spark.read.parquet(str(folder.absolute())).select(*columns)
            rows.write.insertInto(table["name"])
    _create_views(spark, [r for r in relations if r["view"]])
    return len(relations)
