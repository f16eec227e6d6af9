"""The warehouse on Spark gives the same tables as on DuckDB (README.md, "Choosing an engine").

The simulated world is built on DuckDB through the platform (the `platform` fixture of
test_dbt_marts). A local Spark (a session in this process, local[2], warehouse and Derby
metastore in a temp folder) then ingests the same landing files with the Spark rendering of the
ingestion rules: raw events, payments and dead letters must equal DuckDB's row for row (reasons
and line numbers included); so must the app database's tables, extracted on Spark. The same
dbt project is then built there with `--target spark`. Every staging model, history table and
mart must hold the same rows (as multisets: order is not part of a table) with the same column
types as on DuckDB. Then late arrivals land in raw on both engines and a windowed run (one
day) rebuilds the partitioned facts on each: the `dt_partition` strategy and the orphan-flag
refresh, as each engine renders them, must again give the same tables.

Java is required (pyspark runs a JVM): without it the test fails and says so; CI installs it.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
import sqlalchemy as sa

from data_platform.assets.analytics import ANALYTICS_ASSETS
from data_platform.assets.dbt import TRANSLATOR
from data_platform.assets.dbt import target_path as dbt_target_path
from data_platform.assets.dbt_metadata import BuiltModelMetadata
from data_platform.assets.dbt_project import DBT_PROJECT_DIR
from data_platform.assets.scorecard import SCORECARD_ASSETS
from data_platform.checks import QUALITY_CHECKS
from data_platform.ingestion.file_formats import EVENT_FILES, PAYMENT_FILES
from data_platform.ingestion.file_lines import MAX_RECORD_BYTES, NOT_UTF8, OVERSIZED_LINE
from data_platform.ingestion.files import ingest_file_partitions
from data_platform.ingestion.record_rules import (
    BOM_LINE,
    INVALID_JSON,
    LONG_NUMBER_LINE,
    MAX_DEPTH,
    NON_NUMERIC_LINE,
    NUL_LINE,
    TIMESTAMP_EXAMPLE,
    TOO_DEEP,
    TRAILING_COMMA_LINE,
    TRAILING_TEXT_LINE,
)
from data_platform.ingestion.spark_database import extract_incremental_on_spark
from data_platform.ingestion.spark_files import ingest_file_partitions_on_spark
from data_platform.ingestion.spark_tables import spark_ddl
from data_platform.ingestion.tables import PAYMENTS, SOURCE_DB_TABLES, ensure_raw_tables
from data_platform.operations.backup import take_backup
from data_platform.operations.backup_store import BackupError, BackupStore
from data_platform.operations.restore import restore
from data_platform.operations.spark_snapshot import (
    CATALOG,
    SPARK_WAREHOUSE,
    load_spark_warehouse,
    platform_relations,
)
from data_platform.operations.warehouse_metrics import DuckDBDayCounts, SparkDayCounts
from data_platform.resources.build import build_resources
from data_platform.resources.landing import LandingZone
from data_platform.resources.warehouse import warehouse_of
from data_platform.services.spark_cluster import TASK_THREAD_STACK
from data_platform.settings import SPARK_REMOTE_VARIABLE, load_settings
from data_platform_tests.helpers import free_port, materialize_days
from data_platform_tests.test_cli import run_cli, run_in_home
from data_platform_tests.test_dbt_marts import (  # noqa: F401 (fixtures)
    ALL_ASSETS,
    DAYS,
    Platform,
    platform,
)
from data_platform_tests.test_lenient_json import DAY as CORPUS_DAY
from data_platform_tests.test_lenient_json import LOADED_AT as CORPUS_LOADED_AT
from data_platform_tests.test_lenient_json import corpus_landing, expected_dead_letters
from data_platform_tests.test_raw_files import (
    PAYMENT_HEADER_LETTERS,
    PAYMENT_HEADER_ROWS,
    land_payment_header_cases,
)

# Both sources are loaded on Spark by its own ingestion: the app database's tables, the files.
DATABASE_TABLES = ["users", "products", "orders", "order_items"]
FILE_TABLES = ["events", "payments", "dead_letter"]

# Every table and view dbt builds: staging, the SCD2 history tables, the marts.
DBT_SCHEMAS = ("staging", "snapshots", "marts")
JAVA_17 = Path("/usr/lib/jvm/java-17-openjdk-amd64")
# dbt's own generic tests, by selector (see the test).
BUILT_IN_TESTS = [
    f"test_name:{name}" for name in ("not_null", "unique", "accepted_values", "relationships")
]
# What the checks and Python assets of the comparison write, besides check results.
CHECK_KEYS = [key for check in QUALITY_CHECKS for key in check.check_keys]
ANALYTICS_TABLES = ["customer_segments", "data_quality_scorecard"]
# Check metadata that measures the engine, not the data.
TIMINGS = {"validation_seconds"}
# Two cores, as CI has.
LOCAL_MASTER = "local[2]"


def java_home() -> str:
    """JAVA_HOME for pyspark 4 (Java 17 or 21): $JAVA_HOME, else Debian's OpenJDK 17, else the
    `java` on PATH. No Java at all fails the test (CI installs openjdk-17-jre-headless)."""
    candidates = [os.environ.get("JAVA_HOME"), str(JAVA_17)]
    on_path = shutil.which("java")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parents[1]))
    for home in filter(None, candidates):
        java = Path(home) / "bin" / "java"
        if java.is_file():
            version = subprocess.run(
                [str(java), "-version"], capture_output=True, text=True, check=False
            ).stderr
            if re.search(r'version "(17|21)[."]', version):
                return home
    pytest.fail(
        "Java 17 (or 21) is required to run Spark (pyspark starts a JVM) and none was found "
        f"(JAVA_HOME={os.environ.get('JAVA_HOME')!r}, java on PATH: {on_path!r}). "
        "Install it, e.g. `apt-get install openjdk-17-jre-headless`, or set JAVA_HOME."
    )


def driver_java_options(tmp_path_factory: pytest.TempPathFactory, *options: str) -> str:
    """`spark.driver.extraJavaOptions` of the suite's local Spark: `options`, and the JVM's
    temporary folder in pytest's base folder (kept for the last three runs), not /tmp, where
    Hive's `*_resources`, the `artifacts-*` folders and lz4-java's library stayed for good, as
    the services' cluster keeps its own (`spark_cluster._tmpdir_option`). The first session
    of the process launches the JVM, whichever module it is: each passes the same folder."""
    folder = tmp_path_factory.getbasetemp() / "spark-jvm-tmp"
    folder.mkdir(exist_ok=True)
    # The tasks run in this JVM: their threads' stack as the services' cluster gives them.
    return " ".join([*options, f"-Djava.io.tmpdir={folder}", TASK_THREAD_STACK])


@pytest.fixture(scope="module")
def spark_env(tmp_path_factory) -> Iterator[dict[str, str]]:
    """The variables of the `spark` target of profiles.yml: warehouse files and metastore in a
    temp folder (never in the working folder), a local master on 2 cores, this process's own
    session. Set for the module, restored afterwards."""
    root = tmp_path_factory.mktemp("spark")
    values = {
        "JAVA_HOME": java_home(),
        "DATA_PLATFORM_DBT_SPARK_METHOD": "session",
        "DATA_PLATFORM_SPARK_WAREHOUSE_DIR": str(root / "warehouse"),
        "DATA_PLATFORM_SPARK_METASTORE_DIR": str(root / "metastore"),
        "DATA_PLATFORM_SPARK_SHUFFLE_PARTITIONS": "2",
    }
    mp = pytest.MonkeyPatch()
    for name, value in values.items():
        mp.setenv(name, value)
    for name in ("SPARK_REMOTE", "MASTER", "PYSPARK_SUBMIT_ARGS"):
        mp.delenv(name, raising=False)  # a local Spark, whatever the shell points at
    yield values
    mp.undo()


@pytest.fixture(scope="module")
def spark(spark_env, tmp_path_factory):
    """The Spark session dbt-spark's `session` method picks up (getOrCreate), configured as
    profiles.yml configures it."""
    from pyspark.sql import SparkSession

    metastore = spark_env["DATA_PLATFORM_SPARK_METASTORE_DIR"]
    session = (
        SparkSession.builder.master(LOCAL_MASTER)
        .appName("data_platform_tests.test_dbt_spark")
        .enableHiveSupport()
        .config("spark.sql.warehouse.dir", spark_env["DATA_PLATFORM_SPARK_WAREHOUSE_DIR"])
        .config(
            "spark.hadoop.javax.jdo.option.ConnectionURL",
            f"jdbc:derby:;databaseName={metastore}/metastore_db;create=true",
        )
        .config(
            "spark.driver.extraJavaOptions",
            driver_java_options(tmp_path_factory, f"-Dderby.system.home={metastore}"),
        )
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", spark_env["DATA_PLATFORM_SPARK_SHUFFLE_PARTITIONS"])
        # As the services' cluster: a DATE partition filter Derby cannot answer is done by Spark.
        .config("spark.sql.hive.metastorePartitionPruningFallbackOnException", "true")
        # Where `spark_remote` serves Spark Connect, when a test asks for it.
        .config("spark.connect.grpc.binding.address", "127.0.0.1")
        .config("spark.connect.grpc.binding.port", str(free_port()))
        .getOrCreate()
    )
    # dbt reports every failed statement itself; the JVM's log would repeat it at length.
    session.sparkContext.setLogLevel("OFF")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def spark_remote(spark) -> Iterator[str]:
    """A Spark Connect endpoint on this process's session, as the platform reaches a cluster
    (Warehouse.spark): its sessions share the session's catalog and tables."""
    port = spark.sparkContext.getConf().get("spark.connect.grpc.binding.port")
    service = spark._jvm.org.apache.spark.sql.connect.service.SparkConnectService
    service.start(spark._jsc.sc())
    yield f"sc://127.0.0.1:{port}"
    # Scala's default arguments: no timeout.
    service.stop(getattr(service, "stop$default$1")(), getattr(service, "stop$default$2")())


def copy_raw_to_spark(warehouse: Path, spark, folder: Path, tables: list[str]) -> None:
    """raw.* of the DuckDB warehouse -> parquet files -> Spark tables raw.*, as the Spark
    ingestion would hold them: JSON as text (Spark has no JSON type), naive timestamps as
    Spark TIMESTAMPs read in the session's UTC (parquet hands them over as TIMESTAMP_NTZ)."""
    folder.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        for table in tables:
            columns = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'raw' AND table_name = ? ORDER BY ordinal_position",
                [table],
            ).fetchall()
            select = ", ".join(
                f'CAST("{name}" AS VARCHAR) AS "{name}"' if kind == "JSON" else f'"{name}"'
                for name, kind in columns
            )
            path = folder / f"{table}.parquet"
            conn.execute(f"COPY (SELECT {select} FROM raw.{table}) TO '{path}' (FORMAT parquet)")
    spark.sql("CREATE DATABASE IF NOT EXISTS raw")
    for table in tables:
        frame = spark.read.parquet(str(folder / f"{table}.parquet"))
        frame = frame.select(
            *[
                frame[f.name].cast("timestamp").alias(f.name)
                if f.dataType.simpleString() == "timestamp_ntz"
                else frame[f.name]
                for f in frame.schema.fields
            ]
        )
        frame.write.format("parquet").mode("overwrite").saveAsTable(f"raw.{table}")


# The newest parse of the project by dbt on Spark in this process (its partial_parse.msgpack).
# Each test's new target folder starts from it: dbt checks it against the project's files,
# vars, profile and environment itself and parses again only what changed, where an empty
# folder made it parse the whole project at every test (~10 s each on 2 cores).
_SPARK_PARSES: list[Path] = []
PARTIAL_PARSE = "partial_parse.msgpack"


def seed_partial_parse(target_path: Path, parses: list[Path]) -> None:
    """Give a target folder without a parse of its own the newest of `parses`, if any."""
    if parses and parses[-1].is_file() and not (target_path / PARTIAL_PARSE).exists():
        target_path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(parses[-1], target_path / PARTIAL_PARSE)


def dbt_on_spark(args: list[str], target_path: Path, salt: str) -> list[Any]:
    """`dbt <args> --target spark` in this process (dbt-spark's session method then runs in the
    Spark session above); fails the test unless dbt succeeded. Returns dbt's node results."""
    from dbt.cli.main import dbtRunner

    seed_partial_parse(target_path, _SPARK_PARSES)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATA_PLATFORM_PII_SALT", salt)
        result = dbtRunner().invoke(
            [
                *args,
                "--target", "spark",
                "--project-dir", str(DBT_PROJECT_DIR),
                "--profiles-dir", str(DBT_PROJECT_DIR),
                "--target-path", str(target_path),
                "--log-path", str(target_path / "logs"),
                "--quiet",
                # Spark's statements wait mostly on the JVM: more than 2 overlap on 2 cores.
                "--threads", "4",
            ]
        )  # fmt: skip
    failures = [
        f"{r.node.unique_id}: {r.status} {r.message}"
        for r in (result.result or [])
        if str(r.status) in ("error", "fail", "runtime error")
    ]
    assert result.success and not failures, (result.exception, failures)
    _SPARK_PARSES.append(target_path / PARTIAL_PARSE)
    return list(result.result)


# DuckDB type -> the Spark type the same column must have.
SPARK_TYPES = {
    "VARCHAR": "string",
    "JSON": "string",
    "BIGINT": "bigint",
    "INTEGER": "int",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "DOUBLE": "double",
}


def expected_spark_type(duckdb_type: str) -> str:
    decimal = re.fullmatch(r"DECIMAL\((\d+),(\d+)\)", duckdb_type)
    if decimal:
        return f"decimal({decimal[1]},{decimal[2]})"
    return SPARK_TYPES.get(duckdb_type, duckdb_type)


def normalise(value: Any, duckdb_type: str) -> Any:
    """One value, made comparable across engines on purpose:
    - JSON: DuckDB's JSON and Spark's string are compared as parsed documents, keys in their
      order, a repeated key kept (the engines' JSON writers spell some floats each their own
      way: 0.00001 and 1.0E-5; -0.0, 0 and 0.0 differ);
    - DECIMAL: as Decimal numbers (equal values compare and hash equal whatever their
      exponent); the declared precision and scale are compared separately, as column types;
    - TIMESTAMP: read from Spark as TIMESTAMP_NTZ in the session's UTC (see spark_rows), so
      both sides are naive UTC datetimes, to the microsecond;
    - everything else (strings, integers, booleans, dates, NULL) as it is."""
    if value is None:
        return None
    if duckdb_type == "JSON":
        # An object nested 800 deep (deep.jsonl) is more levels than Python's default
        # recursion limit lets json's encoder go.
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 10_000))
        try:
            return json.dumps(json.loads(value, object_pairs_hook=list))
        finally:
            sys.setrecursionlimit(limit)
    if isinstance(value, Decimal):
        return value.normalize()
    return value


def duckdb_table(
    warehouse: Path, schema: str, table: str, where: str = "true"
) -> tuple[dict[str, str], Counter]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        types = {
            name: kind
            for name, kind in conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                [schema, table],
            ).fetchall()
        }
        names = ", ".join(f'"{name}"' for name in types)
        rows = conn.execute(f"SELECT {names} FROM {schema}.{table} WHERE {where}").fetchall()
    kinds = list(types.values())
    return types, Counter(
        tuple(normalise(v, kind) for v, kind in zip(row, kinds, strict=True)) for row in rows
    )


def spark_table(
    spark, schema: str, table: str, types: dict[str, str], where: str = "true"
) -> tuple[dict, Counter]:
    """The Spark table's column types, and its rows in DuckDB's column order (by name)."""
    fields = {f.name: f.dataType.simpleString() for f in spark.table(f"{schema}.{table}").schema}
    select = ", ".join(
        f"CAST(`{name}` AS TIMESTAMP_NTZ) AS `{name}`"
        if fields.get(name) == "timestamp"
        else f"`{name}`"
        for name in types
        if name in fields
    )
    rows = spark.sql(f"SELECT {select} FROM {schema}.{table} WHERE {where}").collect()
    kinds = [types[name] for name in types if name in fields]
    return fields, Counter(
        tuple(normalise(v, kind) for v, kind in zip(row, kinds, strict=True)) for row in rows
    )


def dbt_relations(warehouse: Path) -> list[tuple[str, str]]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            f"WHERE table_schema IN {DBT_SCHEMAS} ORDER BY 1, 2"
        ).fetchall()


def table_differences(
    warehouse: Path, spark, schema: str, table: str, where: str = "true"
) -> list[str]:
    """One table on both engines: columns and types, then the rows `where` selects, as
    multisets (a few differing rows shown)."""
    types, duck_rows = duckdb_table(warehouse, schema, table, where)
    fields, spark_rows = spark_table(spark, schema, table, types, where)
    expected_types = {name: expected_spark_type(kind) for name, kind in types.items()}
    if fields != expected_types:
        return [f"{schema}.{table}: columns {fields} != expected {expected_types}"]
    only_duckdb, only_spark = duck_rows - spark_rows, spark_rows - duck_rows
    if only_duckdb or only_spark:
        return [
            f"{schema}.{table}: {sum(duck_rows.values())} rows on DuckDB, "
            f"{sum(spark_rows.values())} on Spark; only on DuckDB "
            f"{list(only_duckdb.elements())[:3]}, only on Spark {list(only_spark.elements())[:3]}"
        ]
    return []


def differences(warehouse: Path, spark) -> list[str]:
    """Every table and view dbt built on DuckDB, compared with Spark's."""
    return [
        found
        for schema, table in dbt_relations(warehouse)
        for found in table_differences(warehouse, spark, schema, table)
    ]


def late_arrivals(warehouse: Path, day: str) -> tuple[str, int]:
    """Raw changes a windowed run of `day` must absorb, made in the DuckDB warehouse:
    - an event of a later day arrives again in a late file of `day`: its first arrival moves
      to `day`, and its copy in the later partition must go;
    - every payment of `day` disappears: that partition must end up empty;
    - the missing user of an orphan event outside the window is extracted at last: its flag
      must be cleared in a partition the run does not rebuild.
    Returns the moved event_id and the user_id that stops being an orphan."""
    with duckdb.connect(str(warehouse)) as conn:
        [(event_id,)] = conn.execute(
            "SELECT event_id FROM marts.fct_events WHERE dt > ? ORDER BY event_id LIMIT 1", [day]
        ).fetchall()
        conn.execute(
            "INSERT INTO raw.events SELECT * REPLACE (CAST(? AS DATE) AS dt, "
            "'events/dt=' || ? || '/late.jsonl' AS _source_file, 1 AS _line_number) "
            "FROM raw.events WHERE event_id = ? LIMIT 1",
            [day, day, event_id],
        )
        conn.execute("DELETE FROM raw.payments WHERE dt = ?", [day])
        [(user_id,)] = conn.execute(
            "SELECT min(user_id) FROM marts.fct_events WHERE is_orphan_user AND dt <> ?", [day]
        ).fetchall()
        assert user_id is not None, "the simulated world has no orphan event outside the window"
        conn.execute(
            "INSERT INTO raw.users (id, email, full_name, country, created_at, updated_at, "
            "deleted_at, _extracted_at) VALUES (?, 'late@example.com', 'Late Comer', 'FR', "
            "TIMESTAMP '2026-01-01 08:00:00', TIMESTAMP '2026-01-01 08:00:00', NULL, "
            "TIMESTAMP '2026-01-08 00:00:00')",
            [user_id],
        )
    return event_id, user_id


def dbt_on_duckdb(
    args: list[str], warehouse: Path, target_path: Path, salt: str, parsed_in: Path | None = None
) -> None:
    """`dbt <args>` on the DuckDB warehouse, as its own process (as the platform runs it).
    `parsed_in`: a target folder where dbt already parsed the project for this warehouse (the
    platform's own), whose parse the new folder starts from (see seed_partial_parse)."""
    seed_partial_parse(target_path, [parsed_in / PARTIAL_PARSE] if parsed_in else [])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DATA_PLATFORM_SPARK")},
        "DBT_TARGET": "dev",
        "DATA_PLATFORM_WAREHOUSE": str(warehouse),
        "DATA_PLATFORM_PII_SALT": salt,
    }
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("dbt")), *args,
            "--project-dir", str(DBT_PROJECT_DIR),
            "--profiles-dir", str(DBT_PROJECT_DIR),
            "--target-path", str(target_path),
            "--log-path", str(target_path / "logs"),
        ],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-5000:]


def conserved_records(warehouse: Path, source: str) -> list[int]:
    """Records per day of DAYS that DuckDB's ingestion accounted for: loaded + dead letters."""
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return [
            conn.execute(
                f"SELECT (SELECT count(*) FROM raw.{source} WHERE dt = $1) + (SELECT count(*) "
                "FROM raw.dead_letter WHERE source = $2 AND dt = $1)",
                [day, source],
            ).fetchone()[0]
            for day in DAYS
        ]


def spark_resources(built: Platform, spark_remote: str) -> dict:
    """The platform's resources with its warehouse on Spark: the same landing zone, app
    database and salt."""
    settings = load_settings(
        {
            "DATA_PLATFORM_HOME": str(built.settings.home),
            "DATA_PLATFORM_ENGINE": "spark",
            SPARK_REMOTE_VARIABLE: spark_remote,
        }
    )
    return build_resources(settings) | {"privacy": built.resources["privacy"]}


def checks_and_analytics(resources: dict) -> dict[str, tuple]:
    """Every quality check over the simulated days and the analytics assets, in one run
    through Dagster: check -> (passed, severity, metadata but timings); a check partitioned by
    day has one entry per day, `check@day`."""
    result = materialize_days(
        [*ALL_ASSETS, *QUALITY_CHECKS],
        resources,
        DAYS,
        selection=dg.AssetSelection.checks(*QUALITY_CHECKS)
        | dg.AssetSelection.assets(*ANALYTICS_ASSETS, *SCORECARD_ASSETS),
        instance=dg.DagsterInstance.ephemeral(),
    )
    return {
        str(check.asset_check_key) + (f"@{check.partition}" if check.partition else ""): (
            check.passed,
            check.severity,
            {k: v.value for k, v in check.metadata.items() if k not in TIMINGS},
        )
        for check in result.get_asset_check_evaluations()
    }


def model_metadata(reader, target: Path, models) -> dict[str, tuple]:
    """unique_id -> (row count, {column: type}) as the dbt steps read them."""
    manifest = json.loads((target / "manifest.json").read_text())
    built = BuiltModelMetadata(manifest, TRANSLATOR, None, target).for_models(reader, list(models))
    return {
        uid: (
            entry.get("dagster/row_count"),
            {c.name: c.type for c in entry["dagster/column_schema"].columns},
        )
        for uid, entry in built.items()
    }


def platform_dbt_metadata(built: Platform) -> dict[str, tuple]:
    """The same of every model DuckDB's platform built."""
    warehouse = built.resources["warehouse"]
    models = [
        e.materialization.metadata["unique_id"].value
        for e in built.result.get_asset_materialization_events()
        if "unique_id" in e.materialization.metadata
    ]
    with warehouse.reader() as reader:
        return model_metadata(reader, dbt_target_path(warehouse), models)


def relation_rows(spark) -> dict[str, Counter]:
    """Every platform table and view of the cluster, its rows as a multiset (refreshed first:
    this session caches a table's files, which a restore through another session replaced)."""
    for name, _ in platform_relations(spark):
        spark.catalog.refreshTable(name)
    return {
        name: Counter(tuple(row) for row in spark.table(name).collect())
        for name, _ in platform_relations(spark)
    }


# `data-platform restore --force BACKUP` killed (SIGKILL) before the N-th statement of its swap.
KILLED_SWAP = """
import os, signal, sys
from data_platform.cli import main
from data_platform.operations import spark_snapshot

kill_at, swap = int(sys.argv[1]), spark_snapshot.swap_in_spark_warehouse

class Dying:
    def __init__(self, spark):
        self.spark, self.statements = spark, 0
    def sql(self, statement):
        self.statements += 1
        if self.statements == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.spark.sql(statement)
    def __getattr__(self, name):
        return getattr(self.spark, name)

spark_snapshot.swap_in_spark_warehouse = lambda spark, *rest: swap(Dying(spark), *rest)
sys.exit(main(["restore", "--force", sys.argv[2]]))
"""


# First in the file (the tests run in file order): the catalog then holds its probe alone.
# After the comparison below, its backup, failed load, restore, killed swap and finish each
# exported or reloaded that test's ~40 relations, and each `relation_rows` read them all:
# 216 s against 79 s here, for the same assertions on the same probe.
def test_backup_and_restore_of_the_spark_warehouse(spark, spark_remote, tmp_path):
    """engine=spark: `backup` exports every table and view of the cluster beside the instance;
    `restore` into a cluster that lost them (refused without --force, since it still holds
    others) brings back the same rows, partitions and views; a DuckDB platform is told it
    cannot take a Spark backup."""
    spark.sql("CREATE DATABASE IF NOT EXISTS marts")
    spark.sql("DROP VIEW IF EXISTS marts.backup_probe_view")
    spark.sql("DROP TABLE IF EXISTS marts.backup_probe")
    spark.sql(
        "CREATE TABLE marts.backup_probe (id STRING, amount DECIMAL(18,4), at TIMESTAMP, "
        "dt DATE) USING parquet PARTITIONED BY (dt)"
    )
    spark.sql(
        "INSERT INTO marts.backup_probe VALUES "
        "('a', 1.5, TIMESTAMP '2025-06-01 10:00:00', DATE '2025-06-01'), "
        "('b', NULL, NULL, DATE '2025-06-02'), ('c', -2, TIMESTAMP '2025-06-02 23:59:59.5', "
        "DATE '2025-06-02')"
    )
    spark.sql("CREATE VIEW marts.backup_probe_view AS SELECT id FROM marts.backup_probe")

    def settings(home: Path, engine: str = "spark"):
        return load_settings(
            {
                "DATA_PLATFORM_HOME": str(home),
                "DATA_PLATFORM_ENGINE": engine,
                SPARK_REMOTE_VARIABLE: spark_remote,
            }
        )

    source = settings(tmp_path / "home")
    source.dagster_home.mkdir(parents=True)
    (source.dagster_home / "dagster.yaml").write_text("{}\n")

    before = relation_rows(spark)
    store = BackupStore(str(tmp_path / "backup"))
    manifest = take_backup(source, store)
    assert manifest["warehouse"] == "spark"
    stored = {f["path"] for f in manifest["files"]}
    assert CATALOG in stored
    assert any(p.startswith(f"{SPARK_WAREHOUSE}/marts.backup_probe/") for p in stored)

    # A restore that fails while loading (here: the last table's rows are not parquet) leaves
    # every relation of the cluster as it was, and no staged table behind.
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "backup", broken)
    last = [r for r in json.loads((broken / CATALOG).read_text()) if not r["view"]][-1]["name"]
    for part in (broken / SPARK_WAREHOUSE / last).rglob("*.parquet"):
        part.write_bytes(b"not parquet")
    with (
        warehouse_of(settings(tmp_path / "home")).spark() as remote,
        pytest.raises(Exception, match=r"(?i)parquet"),
    ):
        load_spark_warehouse(remote, broken, force=True)
    assert relation_rows(spark) == before
    assert not [t for t in spark.catalog.listTables("marts") if "restoring" in t.name]

    spark.sql("DROP TABLE marts.backup_probe")  # its view is left, reading nothing
    target = settings(tmp_path / "restored")  # an empty home: only the cluster holds state
    with pytest.raises(BackupError, match="already holds"):
        restore(target, store)
    restore(target, store, force=True)
    assert relation_rows(spark) == before
    partitions = spark.sql("SHOW PARTITIONS marts.backup_probe").collect()
    assert [row[0] for row in partitions] == ["dt=2025-06-01", "dt=2025-06-02"]

    # Killed while swapping (every old relation dropped, one restored table renamed in, the
    # rest and the views missing): the next command on the cluster finishes the swap. Once:
    # each kill and finish reloads the module's whole catalog.
    on_spark = {"DATA_PLATFORM_ENGINE": "spark", SPARK_REMOTE_VARIABLE: spark_remote}
    kill_at = len(platform_relations(spark)) + 2
    restoring = [sys.executable, "-c", KILLED_SWAP, str(kill_at), str(tmp_path / "backup")]
    killed = run_in_home(target.home, restoring, **on_spark)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert {name for name, _ in platform_relations(spark)} != set(before)  # half swapped
    refused = run_cli(target.home, "sql", "SELECT 1", DATA_PLATFORM_ENGINE="duckdb")
    assert refused.returncode == 1
    last_line = refused.stderr.strip().splitlines()[-1]
    assert "DATA_PLATFORM_ENGINE=spark and DATA_PLATFORM_SPARK_REMOTE" in last_line
    finisher = run_cli(target.home, "sql", "--format", "csv", "SELECT 1", **on_spark)
    assert finisher.returncode == 0, finisher.stderr[-2000:]
    assert "finishing the restore of" in finisher.stderr
    assert relation_rows(spark) == before
    assert not [t for t in spark.catalog.listTables("marts") if "restoring" in t.name]

    with pytest.raises(BackupError, match="DATA_PLATFORM_ENGINE=spark"):
        restore(settings(tmp_path / "duckdb", engine="duckdb"), store, force=True)


def test_spark_ingests_and_builds_the_same_tables_as_duckdb(
    platform,  # noqa: F811
    spark,
    spark_remote,
    tmp_path,
):
    started = time.monotonic()
    warehouse = Path(platform.settings.warehouse)
    salt = platform.resources["privacy"].salt()
    relations = dbt_relations(warehouse)
    assert {schema for schema, _ in relations} == set(DBT_SCHEMAS)

    # 1. The landing files ingested on Spark, then every model with the project's own tests
    # (generic ones of macros/tests, singular ones of tests/). dbt's built-in generic tests
    # (not_null, unique, accepted_values, relationships: ~100 of the 148, rendered by
    # dbt-spark itself) are left out to keep the test within minutes on 2 cores.
    for fmt in (EVENT_FILES, PAYMENT_FILES):
        # The load time of DuckDB's run, which the marts carry as lineage.
        [(loaded_at,)] = platform.sql(f"SELECT DISTINCT _loaded_at FROM raw.{fmt.source}")
        stats = ingest_file_partitions_on_spark(
            spark, platform.resources["landing"], fmt, DAYS, loaded_at
        )
        assert [s.records_read for s in stats] == conserved_records(warehouse, fmt.source)
    for table in FILE_TABLES:
        assert table_differences(warehouse, spark, "raw", table) == []
    # The metrics exporter's rows per source and day, read from each warehouse.
    spark_warehouse = spark_resources(platform, spark_remote)["warehouse"]
    exported = DuckDBDayCounts(warehouse).read()
    assert SparkDayCounts(spark_warehouse, wait=60).read() == exported
    assert {source for source, _ in exported["loaded"]} == {"events", "payments"}
    assert exported["dead_lettered"]
    source = sa.create_engine(platform.settings.source_db_url)
    for table in SOURCE_DB_TABLES:
        # DuckDB's run extracted each table once: its time, which the marts carry as lineage.
        [(extracted_at,)] = platform.sql(f"SELECT DISTINCT _extracted_at FROM raw.{table.name}")
        extract_incremental_on_spark(spark, source, table, timedelta(hours=1), extracted_at)
    for table in DATABASE_TABLES:
        assert table_differences(warehouse, spark, "raw", table) == []
    results = dbt_on_spark(["build", "--exclude", *BUILT_IN_TESTS], tmp_path / "spark-target", salt)
    built = {r.node.name for r in results if r.node.resource_type == "model"}
    assert built == {table for _, table in relations}
    tests = [r for r in results if r.node.resource_type == "test"]
    assert {r.node.name for r in tests} >= {
        "assert_no_pii_columns_in_marts_or_analytics",
        "assert_daily_revenue_reconciles_with_staging",
        "assert_partitioned_facts_match_staging",
    }
    own = {r.node.test_metadata.name for r in tests if hasattr(r.node, "test_metadata")}
    assert own == {
        "accepted_range", "expression_is_true", "recency", "relationships_where",
        "scd2_validity", "unique_combination_of_columns",
    }  # fmt: skip
    assert all(str(r.status) in ("pass", "warn") for r in tests)
    assert differences(warehouse, spark) == []
    # What the dbt steps show in the UI, read from Spark's catalog: DuckDB's row counts and
    # columns, each engine's types (Spark puts a table's partition column last).
    duckdb_metadata = platform_dbt_metadata(platform)
    assert len(duckdb_metadata) == len(relations)
    with spark_resources(platform, spark_remote)["warehouse"].reader() as reader:
        spark_metadata = model_metadata(reader, tmp_path / "spark-target", duckdb_metadata)
    assert spark_metadata == {
        uid: (rows, {name: expected_spark_type(kind) for name, kind in columns.items()})
        for uid, (rows, columns) in duckdb_metadata.items()
    }

    # 2. Every quality check and the Python assets through Dagster, on each warehouse: the
    # same outcomes, the same figures, the same tables.
    on_duckdb = checks_and_analytics(platform.resources)
    resources = spark_resources(platform, spark_remote)
    assert resources["warehouse"].engine == "spark"
    on_spark = checks_and_analytics(resources)
    assert on_spark.keys() == on_duckdb.keys()
    assert {key.split("@")[0] for key in on_duckdb} == {str(key) for key in CHECK_KEYS}
    # The checks kept per day (the Pandera gates of the raw files and of the partitioned facts
    # among them): a verdict per day.
    per_day = [spec.key for c in QUALITY_CHECKS for spec in c.check_specs if spec.partitions_def]
    assert len(per_day) == 10
    assert {key for key in on_spark if "@" in key} == {f"{k}@{d}" for k in per_day for d in DAYS}
    assert {key: on_spark[key] for key in on_duckdb if on_spark[key] != on_duckdb[key]} == {}
    assert {passed for passed, _, _ in on_duckdb.values()} == {True, False}
    for table in ANALYTICS_TABLES:
        assert table_differences(warehouse, spark, "analytics", table) == []
    built_at = time.monotonic()

    # 3. Late arrivals, then a windowed run of the partitioned facts on both engines: the
    # dt_partition strategy and the orphan-flag refresh as each engine renders them.
    day = str(DAYS[1])
    moved, adopted = late_arrivals(warehouse, day)
    copy_raw_to_spark(warehouse, spark, tmp_path / "raw-late", ["events", "payments", "users"])
    run = ["run", "--select", "users_history+"]
    with pytest.MonkeyPatch.context() as mp:
        # The window as the orchestrator passes it (read by macros/partition_window.sql).
        mp.setenv("DATA_PLATFORM_MIN_DT", day)
        mp.setenv("DATA_PLATFORM_MAX_DT", day)
        platform_target = dbt_target_path(platform.resources["warehouse"])
        dbt_on_duckdb(run, warehouse, tmp_path / "duckdb-target", salt, platform_target)
        dbt_on_spark(run, tmp_path / "spark-target", salt)
    assert platform.sql("SELECT dt FROM marts.fct_events WHERE event_id = ?", [moved]) == [
        (DAYS[1],)
    ]
    assert platform.sql("SELECT count(*) FROM marts.fct_payments WHERE dt = ?", [day]) == [(0,)]
    assert platform.sql(
        "SELECT DISTINCT is_orphan_user FROM marts.fct_events WHERE user_id = ?", [adopted]
    ) == [(False,)]
    assert differences(warehouse, spark) == []
    # On Spark the facts are stored a folder per dt: the emptied day is no partition at all.
    partitions = {row[0] for row in spark.sql("SHOW PARTITIONS marts.fct_payments").collect()}
    assert f"dt={day}" not in partitions
    assert partitions == {
        f"dt={d}" for (d,) in platform.sql("SELECT DISTINCT dt FROM marts.fct_payments")
    }
    print(
        f"dbt on Spark: build and comparison {built_at - started:.0f} s, "
        f"windowed runs and comparison {time.monotonic() - built_at:.0f} s"
    )


_SPELLED = (
    '{{"event_id":{},"user_id":{},"event_type":"page_view","occurred_at":"2025-06-01T10:00:00Z"{}}}'
)
# Lines as the fast paths spell them (minified, contract order), or nearly: each engine's
# extractor reads some of them leniently, and only the diagnosis may judge those.
NEAR_SPELLED = [
    _SPELLED.format('"n1"', 1, ""),  # spelled exactly: vouched for
    _SPELLED.format('"n2"', 2, ',"properties":{"z":1,"a":[2]}'),  # an object, keys unsorted
    _SPELLED.format('"n3\tx"', 3, ""),  # a raw control character in a string: not JSON
    _SPELLED.format("'n4'", 4, "").replace('"event_id"', "'event_id'"),  # single quotes
    _SPELLED.format('"n\\"5"', 5, ""),  # an escaped quote: valid, spelled otherwise
    _SPELLED.format('"n6"', '"6"', ""),  # digits in a string: valid, spelled otherwise
    _SPELLED.format('"n7"', 7, ',"session_id":null'),  # an optional field null
    _SPELLED.format('"n8"', "12.0", ""),  # a whole number written as a float: not an integer
    _SPELLED.format('"n9"', 2**63, ""),  # an integer beyond 64 bits
    # DuckDB casts these words to timestamps; neither is ISO-8601 on either engine.
    _SPELLED.format('"n10"', 10, "").replace("2025-06-01T10:00:00Z", "infinity"),
    _SPELLED.format('"n11"', 11, "").replace("2025-06-01T10:00:00Z", "epoch"),
    _SPELLED.format('"n12"', 12, ',"user_id":2'),  # a repeated key: refused, not guessed
    # Each engine's JSON writer has its say on these (see normalise): keys unsorted, -0.0
    _SPELLED.format('"n13"', 13, ', "properties": {"z": 1, "a": -0.0}'),
    # a float Java spells 1.0E7, a key repeated inside properties
    _SPELLED.format('"n14"', 14, ',"properties":{"d":10000000.0,"k":1,"k":2}'),
    # fields to rescue: nested keys unsorted, -0.0, a string of digits
    _SPELLED.format('"n15"', 15, ',"zz":{"b":[true,null],"a":-0.0},"aa":"5","x":1e-05'),
    "\t" + _SPELLED.format('"n16"', 16, ""),  # JSON's whitespace before the object: valid
    "\x0b\x0c",  # blank on both engines (and in the conservation check): no record
    # Spaced as json.dumps spaces: vouched for; an escaped space and a key with a space: not
    json.dumps(json.loads(_SPELLED.format('"n17"', 17, ',"properties":{"q":"red shoes"}'))),
    _SPELLED.format('"n\\u002018"', 18, ""),
    _SPELLED.format('"n19"', 19, "").replace('"user_id"', '"user _id"'),
    # A time without a date: Spark's cast read it as that time today (DuckDB's refuses it).
    _SPELLED.format('"n20"', 20, "").replace("2025-06-01T10:00:00Z", "10:00:00"),
    # Digits in a string, up to BIGINT's largest: loaded; one past it: refused
    _SPELLED.format('"n21"', f'"{2**63 - 1}"', ""),
    _SPELLED.format('"n22"', f'"{2**63}"', ""),
    # Raw control characters elsewhere than a string field's value: in properties' strings and
    # keys, in the optional string, between tokens (not JSON); a tab between tokens (valid JSON)
    _SPELLED.format('"n23"', 23, ',"properties":{"k":"a\x01b"}'),
    _SPELLED.format('"n24"', 24, ',"properties":{"k\x1f":[1]}'),
    _SPELLED.format('"n25"', 25, ',"session_id":"s\x0b"'),
    _SPELLED.format('"n26"', 26, "").replace(',"user_id"', ',\x01"user_id"'),
    _SPELLED.format('"n27"', 27, "").replace(',"user_id"', ',\t"user_id"'),
    # A no-break space is no JSON whitespace: after the object, text follows it; before it, no
    # object opens the line (DuckDB's ltrim and rtrim took it for a space)
    _SPELLED.format('"n28"', 28, "") + "\u00a0",
    "\u00a0" + _SPELLED.format('"n29"', 29, "") + " x",
    # Numbers of 900 and 901 characters outside a string, 1,001 digits in an extra field (more
    # than Jackson reads: not valid JSON on Spark), and 1,001 digits in a string (text: loaded)
    _SPELLED.format('"n30"', 30, ',"properties":{"x":' + "1" * 900 + "}"),
    _SPELLED.format('"n31"', 31, ',"properties":{"x":' + "1" * 901 + "}"),
    _SPELLED.format('"n32"', 32, ',"x":' + "1" * 1001),
    _SPELLED.format('"n33"', 33, ',"properties":{"x":"' + "1" * 1001 + '"}'),
]


ODD_PAYMENTS = [
    "payment_id,order_id,amount,currency,status,created_at,note",
    'p1,1,12.50,EUR,succeeded,2025-06-01T10:00:00Z,"late, ""really"""',
    "p2,2,3.00,EUR,failed,2025-06-01T11:00:00Z,",
    '"p3"x,3,1.00,EUR,failed,2025-06-01T11:00:00Z,',  # text after a closing quote
    'p4,4,"125,EUR,failed,2025-06-01T11:00:00Z,',  # a quote never closed
    ",5,1.00,EUR,failed,2025-06-01T11:00:00Z,",  # the first field empty: payment_id missing
    "p6,12.50,1.00,EUR,failed,2025-06-01T11:00:00Z,",  # DuckDB's cast: order 13, Spark's: none
    "p7,7,1_000.50,EUR,failed,2025-06-01T11:00:00Z,",  # DuckDB's cast: 1000.50, Spark's: none
    # Spelled right, but both casts would change them: beyond BIGINT, rounded to 4 places.
    "p8,99999999999999999999,1.00,EUR,failed,2025-06-01T11:00:00Z,",
    "p9,9,12.12345,EUR,failed,2025-06-01T11:00:00Z,",
    "p10,10,-0.00001,EUR,refunded,2025-06-01T11:00:00Z,",
    "p12,12,1e-27,EUR,refunded,2025-06-01T11:00:00Z,",  # beyond DECIMAL(38,24) too
    "p11,11,12.50000,EUR,failed,2025-06-01T11:00:00Z,",  # exact: loaded
    # One timestamp grammar (TIMESTAMP_GRAMMAR): no seconds loaded on DuckDB only, as did
    # 24:00:00; a zone name glued to the time on Spark only. Now the first loads on both.
    "p13,13,1.00,EUR,failed,2025-06-01T11:00Z,",
    "p14,14,1.00,EUR,failed,2025-06-01T24:00:00Z,",
    "p15,15,1.00,EUR,failed,2025-06-01T11:00:00Europe/Paris,",
    # A quoted field of 100,000 characters: Java's regex recursed once per character, and the
    # StackOverflowError killed Spark's JVM (a fuzz found it). Loaded on both.
    'p16,16,1.00,EUR,failed,2025-06-01T11:00:00Z,"' + "x" * 100_000 + '"',
    # A no-break space before the amount: DuckDB's trim() took it off, Spark's not. Refused.
    "p17,17,\u00a01.00,EUR,failed,2025-06-01T11:00:00Z,",
    # Amounts both engines' casts read as 0 without being zero, or only Spark's (0e999999).
    "p18,18,0." + "0" * 400 + "1,EUR,failed,2025-06-01T11:00:00Z,",
    "p19,19,0e999999,EUR,failed,2025-06-01T11:00:00Z,",
    "p20,20,-0.0e-300,EUR,failed,2025-06-01T11:00:00Z,",
    # 1, with more digits before the exponent than the type has before its point: DuckDB's cast
    # refused them, Spark's read 1 (record_rules._mantissa_fits). Refused on both.
    "p21,21,100000000000000e-14,EUR,failed,2025-06-01T11:00:00Z,",
    "p22,22,0.000000000000001e15,EUR,failed,2025-06-01T11:00:00Z,",
]

# occurred_at spelled as one engine's cast read it and the other's did not, or as both read
# beyond ISO 8601: (text, whether it loads, now alike on both).
TIMESTAMPS = [
    ("2025-06-01T10:00Z", True),  # no seconds: DuckDB's cast only, now both
    ("2025-06-01T11:00+01:00", True),
    ("2025-06-01", True),
    ("2025-06-01T04:29:59.123456789-05:30", True),
    ("2025-06-01T24:00:00Z", False),  # DuckDB's cast: the next day
    # Spelled as most are (toISOString), which Spark casts without the grammar: a field out
    # of range is refused by both all the same.
    ("2025-06-01T24:00:00.000Z", False),
    ("2025-06-01T23:60:00.000Z", False),
    ("2025-06-01T23:59:60.000Z", False),
    ("2025-02-29T10:00:00.000Z", False),
    ("2025-13-01T10:00:00.000Z", False),
    ("2024-02-29T23:59:59.999Z", True),
    ("10000-01-01T00:00:00Z", False),  # DuckDB's cast: year 10000
    ("2025-06-01T10:00:00+01:60", False),  # DuckDB's cast: +02:00
    ("2025-6-1T10:00:00Z", False),  # both casts
    (" 025-06-01T10:00:00.000Z", False),  # DuckDB's cast: year 25
    ("2025-06-01T10:00:00Europe/Paris", False),  # Spark's cast: 08:00Z
    ("2025-06-01T10:00:00UTC", False),  # Spark's cast
    ("2025-06-01 10:00:00 europe/paris", False),  # DuckDB's cast, in any case; Spark's not
    ("2025-06-01T10:00:00 +01:00", False),  # Spark's cast
    ("2025-06-01T10", False),  # Spark's cast: 10:00
    # Spaces after a date or a time without zone: Spark's cast trims them, DuckDB's refused.
    ("2025-06-01 ", True),
    ("2025-06-01T10:00:00  ", True),
    # Years 0001-9999, in UTC too: both casts read year 0 alike, which Python cannot hold.
    ("0000-06-01T10:00:00.000Z", False),
    ("0000-01-01T00:00:00Z", False),
    ("0001-01-01T00:30:00+01:00", False),  # year 0 in UTC
    ("9999-12-31T23:00:00-05:00", False),  # year 10000 in UTC
    ("0001-01-01T00:00:00.000Z", True),
    ("9999-12-31T23:59:59.999999+00:00", True),
]


def ingest_on_duckdb(
    warehouse: Path, landing: LandingZone, day: date, loaded_at: datetime, fmt=EVENT_FILES
) -> list:
    """The files of `day` ingested into a DuckDB file of their own, for Spark's to match."""
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        return ingest_file_partitions(conn, landing, fmt, [day], loaded_at)


def test_spark_ingestion_reads_odd_files_as_duckdb_does(spark, tmp_path):
    """Files that take the ingestion off its common path, on both engines: a CRLF file with a
    blank line and broken JSON, LF and CRLF mixed, lone CRs, a name with a space and a percent sign, a name holding glob
    characters beside the file that glob would match, a line that is not
    UTF-8, a gzip cut short, an empty file, lines longer than DuckDB's reader takes by
    default, and lines close to the fast paths' spelling (see NEAR_SPELLED). Spark must give DuckDB's rows and dead letters, touch no other day, and give
    the same again when the day is re-run."""
    # Its own raw tables: the tests above leave raw.events and raw.payments replaced by copies.
    for table in ("events", "payments", "dead_letter"):
        spark.sql(f"DROP TABLE IF EXISTS raw.{table}")
    day = date(2025, 6, 1)
    landing = LandingZone(url=str(tmp_path / "landing"))
    good = [json.dumps({"event_id": f"e{i}", "user_id": i, "event_type": "page_view",
                        "occurred_at": "2025-06-01T10:00:00Z"}) for i in range(4)]  # fmt: skip
    folder = tmp_path / "landing" / "events" / f"dt={day}"
    folder.mkdir(parents=True)
    (folder / "crlf.jsonl").write_bytes(f"{good[0]}\r\n\r\n{{broken\r\n{good[1]}\r\n".encode())
    # Lines end at LF, a CR ending one dropped; any other CR is text in its line.
    (folder / "mixed.jsonl").write_bytes(f"{good[0]}\n{good[1]}\r\n{{broken\n{good[2]}\n".encode())
    (folder / "lone-cr.jsonl").write_bytes(
        f"{good[0]}\r\n{good[1]}\r{good[2]}\r\n{good[3]}".encode()
    )
    (folder / "cr-only.jsonl").write_bytes(f"{good[0]}\r{good[1]}\r".encode())
    (folder / "a name 100%.jsonl").write_text(f"{good[2]}\n")
    # Spark skips a name opening with `_` and spells `é` its own way: each read by both.
    (folder / "_late.jsonl").write_text(f"{good[3]}\n")
    (folder / "données.jsonl").write_text(f"{good[0]}\n")
    # JSON has no NaN and no trailing comma; DuckDB's reader took both, Spark's not.
    nan = good[1][:-1] + ', "properties": {"a": NaN}}'
    # A comma and a brace in a string are text: the third line is only cut short.
    cut = good[3][:-1] + ', "properties": {"note": "a, }"'
    (folder / "lenient.jsonl").write_text(f"{nan}\n{good[2][:-1]}, }}\n{cut}\n")
    # Records run together, or text after one: named alike (they were "truncated or malformed").
    (folder / "tails.jsonl").write_text(f"{good[0]}{good[1]}\n{good[2]} x\n")
    # Numbers a 64-bit float does not hold as written: DuckDB's reader kept 1e400, Spark's wrote
    # the string "Infinity"; refused on both. The others load, alike (see normalise).
    numbers = ["1e400", "-1E+400", "1e-400", "12345678901234567890", "-0", "1.0", "1E2"]
    numbered = [good[0][:-1] + f', "properties": {{"x": {n}}}}}' for n in [*numbers, 10**400]]
    numbered.append(good[1][:-1] + ', "big": 1e400}')  # a field to rescue
    numbered.append(good[2][:-1] + ', "properties": {"x": [1, 2.5e400]}}')
    numbered.append(good[3][:-1] + f', "properties": {{"x": {"9" * 400}.5}}}}')
    (folder / "numbers.jsonl").write_text("\n".join(numbered) + "\n")
    (folder / "g1.jsonl").write_text(f"{good[0]}\n")
    (folder / "g[1].jsonl").write_text(f"{good[1]}\n{good[2]}\n")
    # The third line is spelled as the fast paths spell, but for its Latin-1 byte.
    (folder / "latin1.jsonl").write_bytes(
        good[3].encode() + b"\n" + '{"caf\xe9": 1}'.encode("latin-1") + b"\n"
        + good[2].replace("page_view", "caf\xe9").encode("latin-1")
    )  # fmt: skip
    (folder / "cut.jsonl.gz").write_bytes(gzip.compress("\n".join(good).encode())[:30])
    (folder / "empty.jsonl").write_bytes(b"")
    # Not read, by name or place: each one whole-file dead letter.
    (folder / "notes.json").write_text(f"{good[0]}\n")
    (folder / "late").mkdir()
    (folder / "late" / "x.jsonl").write_text(f"{good[1]}\n")
    (folder / "near-spelled.jsonl").write_text("\n".join(NEAR_SPELLED) + "\n")
    # A byte order mark opening a line past the first, a raw NUL: each named in its reason.
    nul = good[2].replace("e2", "e\x002")
    (folder / "bom-nul.jsonl").write_text(f"{good[0]}\n\ufeff{good[1]}\n{nul}\n")
    long_event = good[0][:-1] + f', "properties": {{"blob": "{"x" * 2_500_000}"}}}}'
    (folder / "long.jsonl").write_text(f"{long_event}\n{long_event[:-1]}\n")
    # Past the longest record: a dead letter keeping the line's start, the next line loads.
    oversized = good[0][:-1] + f', "properties": {{"blob": "{"x" * MAX_RECORD_BYTES}"}}}}'
    (folder / "big.jsonl").write_text(f"{oversized}\n{good[3]}\n")
    # No zone is 18 hours or more from UTC: DuckDB's cast took +99:00, Spark's not.
    at = '"occurred_at": "2025-06-01T10:00:00'
    # A line break after it (JSON's \\n): Java's $ matched before it, RE2's not.
    spelled = ("+99:00", "-25:00", "+14:00", "+99:00\\n")
    offsets = [good[0].replace(f'{at}Z"', f'{at}{o}"') for o in spelled]
    (folder / "offsets.jsonl").write_text("\n".join(offsets) + "\n")
    # Spark's parser reads nothing nested 1000 deep, DuckDB's any depth: past MAX_DEPTH a dead
    # letter on both (an extra field, properties), MAX_DEPTH itself a row.
    deep = [
        good[0][:-1] + ', "x": ' + "[" * 999 + "]" * 999 + "}",
        good[1][:-1] + ', "properties": {"a": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}}",
        good[2][:-1] + ', "x": ' + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "}",
        # Objects nested deep: Spark's diagnosis (schema_of_variant) recurses per level, and
        # with Java's default thread stack one 740 deep killed the executor (a fuzz found it).
        good[3][:-1] + ', "x": ' + '{"b":' * 800 + "1" + "}" * 800 + "}",
        good[0][:-1] + ', "properties": ' + '{"b":' * 950 + "1" + "}" * 950 + "}",
    ]
    (folder / "deep.jsonl").write_text("\n".join(deep) + "\n")
    stamped = [good[0].replace("2025-06-01T10:00:00Z", text) for text, _ in TIMESTAMPS]
    (folder / "timestamps.jsonl").write_text("\n".join(stamped) + "\n")
    loaded_at = datetime(2025, 6, 2)
    # A day loaded before, which the runs of `day` must leave alone.
    other_day = date(2025, 5, 31)
    landing.write_bytes(f"events/dt={other_day}/a.jsonl", "\n".join(good[:2]).encode())
    ingest_file_partitions_on_spark(spark, landing, EVENT_FILES, [other_day], loaded_at)

    warehouse = tmp_path / "warehouse.duckdb"
    duckdb_stats = ingest_on_duckdb(warehouse, landing, day, loaded_at)
    for _ in range(2):  # the second run re-runs the day: same rows, nothing doubled
        spark_stats = ingest_file_partitions_on_spark(spark, landing, EVENT_FILES, [day], loaded_at)
        assert spark_stats == duckdb_stats
        for table in ("events", "dead_letter"):
            assert table_differences(warehouse, spark, "raw", table, f"dt = '{day}'") == []

    # Figures from the files written above: 15 good lines load, 13 near-spelled ones, the
    # long event, 6 of numbers.jsonl and lines 3 and 4 of deep.jsonl, among others; nesting
    # past MAX_DEPTH (lines 1, 2 and 5 of deep.jsonl), broken JSON (line 3 of crlf.jsonl and
    # of mixed.jsonl, line 2 of long.jsonl, the three lines of lenient.jsonl, lines 2 and 3 of
    # bom-nul.jsonl), two objects in a line (line 2 of lone-cr.jsonl, the whole of
    # cr-only.jsonl, both lines of tails.jsonl), numbers beyond a float (lines 1, 2, 9, 10 and
    # 11 of numbers.jsonl), the Latin-1 lines (lines 2 and 3), the cut gzip, notes.json and
    # late/x.jsonl (each as a whole), a control character, single quotes, 12.0, 2**63,
    # infinity, epoch, a repeated key, a key with a space, a time without a date, digits past
    # BIGINT's largest, four more control characters, the two no-break spaces and the two
    # numbers of more than 900 characters (near-spelled.jsonl) are dead letters.
    # So are the TIMESTAMPS outside the grammar, each with the same reason on both.
    assert spark_stats[0].records_read == 88 + len(TIMESTAMPS)
    assert spark_stats[0].rows_loaded == 41 + sum(loads for _, loads in TIMESTAMPS)
    letters = {
        (row.source_file, row.line_number): row.error
        for row in spark.sql(f"SELECT * FROM raw.dead_letter WHERE dt = '{day}'").collect()
    }
    refused = {
        (f"events/dt={day}/timestamps.jsonl", n)
        for n, (_, loads) in enumerate(TIMESTAMPS, start=1)
        if not loads
    }
    assert letters.keys() - refused == {
        (f"events/dt={day}/near-spelled.jsonl", 3),
        (f"events/dt={day}/near-spelled.jsonl", 4),
        (f"events/dt={day}/near-spelled.jsonl", 8),
        (f"events/dt={day}/near-spelled.jsonl", 9),
        (f"events/dt={day}/near-spelled.jsonl", 10),
        (f"events/dt={day}/near-spelled.jsonl", 11),
        (f"events/dt={day}/near-spelled.jsonl", 12),
        (f"events/dt={day}/near-spelled.jsonl", 20),
        (f"events/dt={day}/near-spelled.jsonl", 21),
        (f"events/dt={day}/near-spelled.jsonl", 23),
        (f"events/dt={day}/near-spelled.jsonl", 24),
        (f"events/dt={day}/near-spelled.jsonl", 25),
        (f"events/dt={day}/near-spelled.jsonl", 26),
        (f"events/dt={day}/near-spelled.jsonl", 27),
        (f"events/dt={day}/near-spelled.jsonl", 29),
        (f"events/dt={day}/near-spelled.jsonl", 30),
        (f"events/dt={day}/near-spelled.jsonl", 32),
        (f"events/dt={day}/near-spelled.jsonl", 33),
        (f"events/dt={day}/crlf.jsonl", 3),
        (f"events/dt={day}/mixed.jsonl", 3),
        (f"events/dt={day}/lone-cr.jsonl", 2),
        (f"events/dt={day}/cr-only.jsonl", 1),
        (f"events/dt={day}/long.jsonl", 2),
        (f"events/dt={day}/latin1.jsonl", 2),
        (f"events/dt={day}/latin1.jsonl", 3),
        (f"events/dt={day}/cut.jsonl.gz", None),
        (f"events/dt={day}/notes.json", None),
        (f"events/dt={day}/lenient.jsonl", 1),
        (f"events/dt={day}/lenient.jsonl", 2),
        (f"events/dt={day}/lenient.jsonl", 3),
        (f"events/dt={day}/tails.jsonl", 1),
        (f"events/dt={day}/tails.jsonl", 2),
        (f"events/dt={day}/numbers.jsonl", 1),
        (f"events/dt={day}/numbers.jsonl", 2),
        (f"events/dt={day}/numbers.jsonl", 9),
        (f"events/dt={day}/numbers.jsonl", 10),
        (f"events/dt={day}/numbers.jsonl", 11),
        (f"events/dt={day}/late/x.jsonl", None),
        (f"events/dt={day}/bom-nul.jsonl", 2),
        (f"events/dt={day}/bom-nul.jsonl", 3),
        (f"events/dt={day}/big.jsonl", 1),
        (f"events/dt={day}/offsets.jsonl", 1),
        (f"events/dt={day}/offsets.jsonl", 2),
        (f"events/dt={day}/offsets.jsonl", 4),
        (f"events/dt={day}/deep.jsonl", 1),
        (f"events/dt={day}/deep.jsonl", 2),
        (f"events/dt={day}/deep.jsonl", 5),
    }
    assert refused <= letters.keys()
    assert {letters[key] for key in refused} == {
        f'occurred_at: expected {TIMESTAMP_EXAMPLE}, got "{text}"'
        for text, loads in TIMESTAMPS
        if not loads
    }
    assert letters[(f"events/dt={day}/deep.jsonl", 1)] == TOO_DEEP
    assert letters[(f"events/dt={day}/deep.jsonl", 5)] == TOO_DEEP
    assert letters[(f"events/dt={day}/big.jsonl", 1)] == OVERSIZED_LINE
    assert letters[(f"events/dt={day}/latin1.jsonl", 2)] == NOT_UTF8
    assert letters[(f"events/dt={day}/latin1.jsonl", 3)] == NOT_UTF8
    assert letters[(f"events/dt={day}/bom-nul.jsonl", 2)] == BOM_LINE
    assert letters[(f"events/dt={day}/bom-nul.jsonl", 3)] == NUL_LINE
    assert letters[(f"events/dt={day}/lenient.jsonl", 1)] == NON_NUMERIC_LINE
    assert letters[(f"events/dt={day}/lenient.jsonl", 2)] == TRAILING_COMMA_LINE
    assert letters[(f"events/dt={day}/lenient.jsonl", 3)] == INVALID_JSON
    assert letters[(f"events/dt={day}/tails.jsonl", 1)] == TRAILING_TEXT_LINE
    assert letters[(f"events/dt={day}/tails.jsonl", 2)] == TRAILING_TEXT_LINE
    no_break_after, no_break_before = 29, 30
    assert letters[(f"events/dt={day}/near-spelled.jsonl", no_break_after)] == TRAILING_TEXT_LINE
    assert letters[(f"events/dt={day}/near-spelled.jsonl", no_break_before)] == INVALID_JSON
    for line in (32, 33):
        assert letters[(f"events/dt={day}/near-spelled.jsonl", line)] == LONG_NUMBER_LINE
    for line, number in ((1, "1e400"), (2, "-1E+400"), (9, "1e400"), (10, "2.5e400")):
        assert letters[(f"events/dt={day}/numbers.jsonl", line)].startswith(
            f'the number "{number}" is beyond the range of a 64-bit float'
        )
    assert "gzip" in letters[(f"events/dt={day}/cut.jsonl.gz", None)]
    assert spark.sql(f"SELECT count(*) FROM raw.events WHERE dt = '{other_day}'").first()[0] == 2

    # raw.payments as a version before `_rescued` made it: the column is added after the
    # others, so the writes must follow the table's own order, not the declaration's.
    older = dataclasses.replace(
        PAYMENTS, columns=tuple(c for c in PAYMENTS.columns if c.name != "_rescued")
    )
    spark.sql(spark_ddl(older))
    # CSV quoting a reader could guess at, and a column named twice, are refused alike; an
    # empty first field is a field.
    landing.write_bytes(f"payments/dt={day}/odd.csv", "\n".join(ODD_PAYMENTS).encode())
    twice = [ODD_PAYMENTS[0] + ",Note", ODD_PAYMENTS[2] + ",x"]  # a column named twice
    landing.write_bytes(f"payments/dt={day}/twice.csv", "\n".join(twice).encode())
    unnamed = [ODD_PAYMENTS[0] + ",,", ODD_PAYMENTS[2] + ",x,"]  # two columns without a name
    landing.write_bytes(f"payments/dt={day}/unnamed.csv", "\n".join(unnamed).encode())
    # No record after a first line that is no header: each file one dead letter.
    landing.write_bytes(f"payments/dt={day}/headless.csv", f"{ODD_PAYMENTS[2]}\n".encode())
    mac = "\r".join([ODD_PAYMENTS[0], ODD_PAYMENTS[2], ODD_PAYMENTS[2]])
    landing.write_bytes(f"payments/dt={day}/mac.csv", mac.encode())
    # A header whose quoting is malformed: its names are not guessed at, its row is refused.
    malformed = [ODD_PAYMENTS[0].replace(",note", ',"note""x'), ODD_PAYMENTS[2]]
    landing.write_bytes(f"payments/dt={day}/malformed-header.csv", "\n".join(malformed).encode())
    # Zeros after the gzip member (block padding): Python's gzip and DuckDB read it, Hadoop's
    # codec failed the Spark job, and the run with it, on every attempt.
    padded = gzip.compress("\n".join(ODD_PAYMENTS[:3:2]).encode()) + bytes(16)
    landing.write_bytes(f"payments/dt={day}/padded.csv.gz", padded)
    duckdb_payments = ingest_on_duckdb(warehouse, landing, day, loaded_at, PAYMENT_FILES)
    spark_payments = ingest_file_partitions_on_spark(
        spark, landing, PAYMENT_FILES, [day], loaded_at
    )
    assert spark_payments == duckdb_payments
    assert (spark_payments[0].records_read, spark_payments[0].rows_loaded) == (28, 7)
    assert spark.table("raw.payments").columns[-3:] == ["_loaded_at", "_rescued", "dt"]
    for table in ("payments", "dead_letter"):
        assert table_differences(warehouse, spark, "raw", table, f"dt = '{day}'") == []
    [header_letter] = spark.sql(
        f"SELECT error FROM raw.dead_letter WHERE source_file = 'payments/dt={day}/"
        "malformed-header.csv'"
    ).collect()
    assert header_letter.error.startswith("malformed CSV quoting in the header (line 1)")


def test_repeated_names_are_found_in_one_sort_as_on_duckdb(spark):
    """The header names or JSON keys given more than once, on Spark as on DuckDB: the same
    reason's names over lists of repeats, empty names, case and accent variants and NULL.
    Spark compared each name with every other (191 s for a header of 40,000 columns here,
    quadratic, inside the day's INSERT); sorted, equal neighbours take a second or two."""
    from data_platform.ingestion.file_formats import _repeated as on_duckdb
    from data_platform.ingestion.spark_formats import _repeated as on_spark

    letters = ["", "a", "A", "b", "é", "e\u0301", "x7", " ", '"', "Ω", "😀", "a b"]
    rng = random.Random(7)
    lists = [[], *([rng.choice(letters) for _ in range(rng.randint(1, 8))] for _ in range(300))]
    spark.createDataFrame(
        [*enumerate(lists), (len(lists), None)], "i INT, n ARRAY<STRING>"
    ).createOrReplaceTempView("name_lists")
    found = dict(spark.sql(f"SELECT i, {on_spark('n')} FROM name_lists").collect())
    with duckdb.connect() as conn:
        expected = [
            conn.execute(
                f"SELECT {on_duckdb('n')} FROM (SELECT ?::VARCHAR[] AS n)", [n]
            ).fetchone()[0]
            for n in [*lists, None]
        ]
    assert [found[i] for i in range(len(expected))] == expected
    assert any(expected) and None in expected
    wide = (
        "concat(transform(sequence(0, 39999), j -> concat('x', j)), "
        "array('x7', '', 'B', 'x7', '', 'b'))"
    )
    started = time.monotonic()
    [(repeated,)] = spark.sql(f"SELECT {on_spark('n')} FROM (SELECT {wide} AS n)").collect()
    assert repeated == '"", "x7"'
    assert time.monotonic() - started < 60


def test_payments_headers_after_blank_lines_and_unicode_spaces_read_alike(spark, tmp_path):
    """The header is the first line that is not blank, unnamed columns hold nothing, a header
    that is not UTF-8 refuses its rows, and a line of Unicode spaces is a record refused with
    its space named, payments and events alike (test_raw_files.PAYMENT_HEADER_CASES): Spark
    gives DuckDB's tables, which are the expected ones."""
    day, loaded_at = date(2025, 7, 1), datetime(2025, 7, 2, 3, 0)
    root = tmp_path / "landing"
    landing, warehouse = LandingZone(url=str(root)), tmp_path / "warehouse.duckdb"
    land_payment_header_cases(root, day)
    events = root / "events" / f"dt={day}"
    events.mkdir(parents=True)
    good = json.dumps({"event_id": "e1", "user_id": 1, "event_type": "page_view",
                       "occurred_at": "2025-07-01T10:00:00Z"})  # fmt: skip
    (events / "spaces.jsonl").write_text(f"\n{good}\n\u00a0\n\u2028 \n\u3000\t\n")
    for fmt, (records, loaded) in ((PAYMENT_FILES, (17, 8)), (EVENT_FILES, (4, 1))):
        duckdb_stats = ingest_on_duckdb(warehouse, landing, day, loaded_at, fmt)
        spark_stats = ingest_file_partitions_on_spark(spark, landing, fmt, [day], loaded_at)
        assert spark_stats == duckdb_stats
        assert (spark_stats[0].records_read, spark_stats[0].rows_loaded) == (records, loaded)
    for table in ("payments", "events", "dead_letter"):
        assert table_differences(warehouse, spark, "raw", table, f"dt = '{day}'") == []
    rows = spark.sql(
        f"SELECT _source_file, _line_number, payment_id, _rescued FROM raw.payments "
        f"WHERE dt = '{day}' ORDER BY 1, 2"
    ).collect()
    assert [
        (r._source_file.rsplit("/", 1)[1], r._line_number, r.payment_id,
         r._rescued and json.loads(r._rescued))
        for r in rows
    ] == PAYMENT_HEADER_ROWS  # fmt: skip
    letters = spark.sql(
        f"SELECT source, source_file, line_number, error FROM raw.dead_letter WHERE dt = '{day}' "
        "ORDER BY source DESC, source_file, line_number NULLS FIRST"
    ).collect()
    spaces = "the line holds only spaces, U+{} among them (a no-break space"
    expected = [
        *(("payments", name, line, reason) for name, line, reason in PAYMENT_HEADER_LETTERS),
        *(("events", "spaces.jsonl", n, spaces.format(c)) for n, c in ((3, "00A0"), (4, "2028"), (5, "3000"))),
    ]  # fmt: skip
    assert len(letters) == len(expected)
    for letter, (source, name, line, reason) in zip(letters, expected, strict=True):
        assert (letter.source, letter.source_file.rsplit("/", 1)[1], letter.line_number) == (
            source, name, line,
        )  # fmt: skip
        assert letter.error.startswith(reason), letter


def test_the_lenient_json_corpus_lands_alike_on_both_engines(spark, tmp_path):
    """test_lenient_json's corpus (NaN, Infinity and trailing commas, in and out of strings,
    escapes, \\f, lines cut short) on Spark: DuckDB's rows and dead letters, each dead letter
    with the corpus' reason. DuckDB refuses these lines by `record_rules.lenient_json`, Spark
    by its parser; both name them by the same rules."""
    for table in ("events", "dead_letter"):
        spark.sql(f"DROP TABLE IF EXISTS raw.{table}")
    landing = corpus_landing(tmp_path)
    warehouse = tmp_path / "warehouse.duckdb"
    duckdb_stats = ingest_on_duckdb(warehouse, landing, CORPUS_DAY, CORPUS_LOADED_AT)
    spark_stats = ingest_file_partitions_on_spark(
        spark, landing, EVENT_FILES, [CORPUS_DAY], CORPUS_LOADED_AT
    )
    assert spark_stats == duckdb_stats
    for table in ("events", "dead_letter"):
        assert table_differences(warehouse, spark, "raw", table, f"dt = '{CORPUS_DAY}'") == []
    letters = spark.sql(f"SELECT line_number, error FROM raw.dead_letter WHERE dt = '{CORPUS_DAY}'")
    assert {row.line_number: row.error for row in letters.collect()} == expected_dead_letters()


# A raw world of one user and two events for the dt_partition strategy alone (see below).
MOVING_EVENT_RAW = """
CREATE SCHEMA raw;
CREATE TABLE raw.users (id BIGINT, email VARCHAR, full_name VARCHAR, country VARCHAR,
    created_at TIMESTAMP, updated_at TIMESTAMP, deleted_at TIMESTAMP, _extracted_at TIMESTAMP);
INSERT INTO raw.users VALUES (1, 'a@example.com', 'A B', 'DE', TIMESTAMP '2026-01-01',
    TIMESTAMP '2026-01-01', NULL, TIMESTAMP '2026-01-01');
CREATE TABLE raw.events (event_id VARCHAR, user_id BIGINT, event_type VARCHAR,
    occurred_at TIMESTAMP, session_id VARCHAR, properties JSON, _rescued JSON,
    _source_file VARCHAR, _line_number BIGINT, _loaded_at TIMESTAMP, dt DATE);
INSERT INTO raw.events VALUES
    ('K', 1, 'login', TIMESTAMP '2026-01-05 09:00', 's1', NULL, NULL,
     'events/dt=2026-01-05/a.jsonl', 1, TIMESTAMP '2026-01-06', DATE '2026-01-05'),
    ('K', 1, 'login', TIMESTAMP '2026-01-05 09:00', 's1', NULL, NULL,
     'events/dt=2026-01-07/a.jsonl', 1, TIMESTAMP '2026-01-08', DATE '2026-01-07'),
    ('A', 1, 'login', TIMESTAMP '2026-01-07 09:00', 's1', NULL, NULL,
     'events/dt=2026-01-07/a.jsonl', 2, TIMESTAMP '2026-01-08', DATE '2026-01-07');
"""


def test_a_windowed_run_on_spark_keeps_an_event_whose_first_copy_is_gone(spark, tmp_path):
    """README's "moved" case on Spark: event K first arrived on D5, a copy on D7; D5 is
    re-ingested without K and a run of window D5..D5 must move K to D7, as on DuckDB.
    dbt-spark's source is a lazy temp view that reads the window's partitions of the target
    (macro partition_window_rows): the strategy dropped the emptied D5 before the INSERT
    OVERWRITE read that view, and K was lost (measured: fct_events held only A)."""
    warehouse, salt = tmp_path / "moving.duckdb", "a salt for this test"
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute(MOVING_EVENT_RAW)
        # Built by hand as an older platform would have: brought up to the contract, as a run does.
        ensure_raw_tables(conn, SOURCE_DB_TABLES)
    copy_raw_to_spark(warehouse, spark, tmp_path / "raw", ["users", "events"])
    full = ["run", "--select", "+fct_events", "--full-refresh"]
    dbt_on_duckdb(full, warehouse, tmp_path / "duckdb-target", salt)
    dbt_on_spark(full, tmp_path / "spark-target", salt)
    moved = "SELECT event_id, CAST(dt AS STRING) FROM marts.fct_events ORDER BY 1"
    assert sorted(tuple(r) for r in spark.sql(moved).collect()) == [
        ("A", "2026-01-07"), ("K", "2026-01-05"),
    ]  # fmt: skip

    with duckdb.connect(str(warehouse)) as conn:  # D5 re-ingested without K
        conn.execute("DELETE FROM raw.events WHERE dt = DATE '2026-01-05'")
    copy_raw_to_spark(warehouse, spark, tmp_path / "raw-again", ["events"])
    window = ["run", "--select", "fct_events"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATA_PLATFORM_MIN_DT", "2026-01-05")
        mp.setenv("DATA_PLATFORM_MAX_DT", "2026-01-05")
        dbt_on_duckdb(window, warehouse, tmp_path / "duckdb-target", salt)
        dbt_on_spark(window, tmp_path / "spark-target", salt)
    spark.catalog.refreshTable("marts.fct_events")
    assert sorted(tuple(r) for r in spark.sql(moved).collect()) == [
        ("A", "2026-01-07"), ("K", "2026-01-07"),
    ]  # fmt: skip
    assert table_differences(warehouse, spark, "marts", "fct_events") == []
    partitions = {row[0] for row in spark.sql("SHOW PARTITIONS marts.fct_events").collect()}
    assert partitions == {"dt=2026-01-07"}  # the emptied D5 is no partition at all


# Properties as apps may send them: fct_events publishes only some keys, typed, alike on both
# engines (macro published_event_properties).
ODD_PROPERTIES = [
    '{"channel": "ads", "email": "a@example.com", "contact": {"mail": "a@example.com"}}',
    '{"page": "/p", "product_id": 7, "quantity": 2, "order_id": 9, "amount": 12.5}',
    '{"amount": 3, "currency": "EUR", "note": "b@example.com"}',
    '{"channel": 5, "page": {"a": [1, "x"]}, "currency": true, "product_id": "12"}',
    '{"product_id": 12.0, "quantity": 99999999999999999999, "amount": "12", "page": null}',
    '{"page": "mail me: c@example.org", "channel": "x@y"}',
    '{"z": 1}',
    "{}",
    # An address's @ percent-encoded in a page's query string, or full-width.
    '{"page": "/account?email=jane.doe%40example.com", "channel": "jane\uff20example.com"}',
    # A page is published as its path: what a form put in its query or fragment is not.
    '{"page": "/signup?name=Jane+Doe&phone=555#step2"}',
    '{"page": "?name=Jane+Doe"}',
]


# Versions that publish nothing new (a name, the e-mail's case, a product written again) and an
# address whose lower() differs by engine.
HISTORY_RAW = """
INSERT INTO raw.users VALUES
    (1, 'a@example.com', 'A C', 'DE', '2026-01-01', '2026-01-02', NULL, '2026-01-03'),
    (1, 'A@Example.COM', 'A C', 'DE', '2026-01-01', '2026-01-03', NULL, '2026-01-04'),
    (1, 'a@example.com', 'A C', 'FR', '2026-01-01', '2026-01-04', NULL, '2026-01-05'),
    (2, ' İNCİ.Σ@EXAMPLE.COM ', 'C D', 'TR', '2026-01-01', '2026-01-01', NULL, '2026-01-02');
CREATE TABLE raw.products (id BIGINT, sku VARCHAR, name VARCHAR, category VARCHAR,
    unit_price DECIMAL(10,2), updated_at TIMESTAMP, _extracted_at TIMESTAMP);
INSERT INTO raw.products VALUES
    (10, 'S10', 'P', 'c', 1.00, '2026-01-01', '2026-01-02'),
    (10, 'S10', 'P', 'c', 1.00, '2026-01-02', '2026-01-03'),
    (10, 'S10', 'P', 'c', 2.00, '2026-01-03', '2026-01-04');
"""


def test_event_properties_are_published_alike_on_both_engines(spark, tmp_path):
    """The allowed keys of each event's properties, each of its type, no e-mail: the same
    documents on DuckDB and Spark (compared parsed, keys in their order)."""
    warehouse, salt = tmp_path / "properties.duckdb", "a salt for this test"
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute(MOVING_EVENT_RAW)
        conn.executemany(
            "INSERT INTO raw.events SELECT 'p' || ?, 1, 'login', TIMESTAMP '2026-01-07 10:00', "
            "NULL, CAST(? AS JSON), NULL, 'events/dt=2026-01-07/p.jsonl', ?, "
            "TIMESTAMP '2026-01-08', DATE '2026-01-07'",
            [[str(n), p, n] for n, p in enumerate(ODD_PROPERTIES, start=1)],
        )
        conn.execute(HISTORY_RAW)
        # Built by hand as an older platform would have: brought up to the contract, as a run does.
        ensure_raw_tables(conn, SOURCE_DB_TABLES)
    copy_raw_to_spark(warehouse, spark, tmp_path / "raw", ["users", "events", "products"])
    full = ["run", "--select", "+fct_events", "+products_history", "--full-refresh"]
    dbt_on_duckdb(full, warehouse, tmp_path / "duckdb-target", salt)
    dbt_on_spark(full, tmp_path / "spark-target", salt)
    published = dict(
        spark.sql(
            "SELECT event_id, properties FROM marts.fct_events WHERE event_id LIKE 'p%'"
        ).collect()
    )
    assert {k: json.loads(v) for k, v in published.items()} == {
        "p1": {"channel": "ads"},
        "p2": {"page": "/p", "product_id": 7, "quantity": 2, "order_id": 9, "amount": 12.5},
        "p3": {"amount": 3.0, "currency": "EUR"},
        "p4": {"channel": "5", "page": '{"a":[1,"x"]}', "currency": "true"},
        "p5": {},
        "p6": {"channel": "x@y"},
        "p7": {},
        "p8": {},
        "p9": {"page": "/account"},
        "p10": {"page": "/signup"},
        "p11": {},
    }
    assert table_differences(warehouse, spark, "marts", "fct_events") == []
    # The history tables too: a non-ASCII e-mail hashes alike (only A-Z is lowered), and
    # versions that change nothing published collapse alike.
    for table in ("users_history", "products_history"):
        assert table_differences(warehouse, spark, "snapshots", table) == []
    assert spark.sql("SELECT count(*) FROM snapshots.users_history").first()[0] == 3


KILLED_STEP = """
import sys

import dagster as dg

from data_platform.resources.warehouse import Warehouse


@dg.asset
def long_write(warehouse: Warehouse) -> None:
    with warehouse.spark() as spark:
        spark.sql(
            "CREATE TABLE default.killed_write USING parquet AS "
            "SELECT sum(id % 7) AS total FROM range(0, 200000000000)"
        )


with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
    warehouse = Warehouse(path="unused.duckdb", engine="spark", spark_remote=sys.argv[2])
    dg.materialize([long_write], instance=instance, resources={"warehouse": warehouse})
"""


def test_a_dead_runs_spark_write_is_interrupted_before_its_slot_is_freed(
    spark, spark_remote, tmp_path
):
    """kill -9 of a run's process mid-write: Spark Connect ran the write on to its end (the
    table appeared 5 s after the kill, measured), beside the next run's writes once the dead
    run's slot was freed. The run's sessions are in its log, and its write is interrupted when
    the run is called dead: no table, ever. The write would take minutes: one of ~15 s ended
    before a loaded CI machine had called the run dead (the table appeared, nothing wrong)."""
    from data_platform.orchestration.run_health import release_dead_runs
    from data_platform.resources.run_pinned import spark_endpoint
    from data_platform.resources.spark_sessions import sessions_of_run, with_session_id
    from data_platform_tests.healing_world import wait_for

    tracker = spark.sparkContext.statusTracker()
    child = subprocess.Popen([sys.executable, "-c", KILLED_STEP, str(tmp_path), spark_remote])
    try:
        wait_for("the write to start", lambda: list(tracker.getActiveJobsIds()), timeout=120)
    finally:
        child.kill()
        child.wait()
    with (
        dg.DagsterInstance.from_config(str(tmp_path)) as instance,
        pytest.MonkeyPatch.context() as mp,
    ):
        mp.setenv(SPARK_REMOTE_VARIABLE, spark_remote)
        [failed] = release_dead_runs(instance)
    assert failed.endswith(f"marked failed: run process {child.pid} is gone.")
    # Stopped, or ended: a statement runs as several jobs (adaptive execution), instants apart.
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 3:
        if tracker.getActiveJobsIds():
            quiet_since = time.monotonic()
        time.sleep(0.05)
    assert not spark.catalog.tableExists("default.killed_write")
    # Closed too: a step still alive (its worker unasked, the broker away) fails at its next
    # statement instead of running it beside the next run's.
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        [run] = instance.get_runs()
        [session] = sessions_of_run(instance, run.run_id, f"spark {spark_endpoint(spark_remote)}")
    from pyspark.errors import PySparkException
    from pyspark.sql.connect.client.retries import DefaultPolicy
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    attached = ConnectSession.builder.remote(with_session_id(spark_remote, session)).create()
    try:
        with pytest.raises(PySparkException, match="SESSION_CLOSED"):
            attached.sql("SELECT 1").collect()
    finally:
        # Stopped, retries off: a client left open asks the endpoint to clean up at the
        # interpreter's exit, retried for 10 minutes once the module has stopped the endpoint.
        attached.client.set_retry_policies([DefaultPolicy(max_retries=0)])
        attached.stop()
