"""The Spark warehouse and files: `data-platform sql` reads the warehouse's tables, never a file
by path, and the warehouse's own files are its owner's alone.

Spark answers ``SELECT * FROM text.`/any/file` `` (json., csv., parquet., binaryFile., ...) with
the file's content, read by the cluster's user on the cluster's host; DuckDB refuses file access.
The warehouse's tables hold raw personal data, as the DuckDB file does (owner-only).
A real cluster (`SERVICES=spark`, as `make services-up` starts it) in a home of its own, on free
ports, pointed at through `services env` as a user's shell is: ~40-90 s to start.
Needs Java 17, as test_spark_services.py does.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from data_platform.services.spark_cluster import (
    CONNECT_PORT_VARIABLE,
    MASTER_PORT_VARIABLE,
    MASTER_UI_PORT_VARIABLE,
    WORKER_UI_PORT_VARIABLE,
)
from data_platform.settings import load_settings
from data_platform.sql_engines import QueryError, read_only_query
from data_platform_tests.conftest import services_home
from data_platform_tests.helpers import free_port
from data_platform_tests.helpers import run_services as services

CLI = str(Path(sys.executable).with_name("data-platform"))
CANARY = "file-canary-41c7d2"


def _without_settings() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATA_PLATFORM_", "SPARK_", "PYSPARK_"))
    }


@dataclass(frozen=True)
class Cluster:
    home: Path  # DATA_PLATFORM_HOME of the services
    env: dict[str, str]  # what `eval "$(make -s services-env)"` gives a shell while it runs


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """The cluster, started under the login's default umask, with a table in its warehouse;
    stopped whatever happens."""
    with services_home("data_platform_sql_files_test_") as home:
        env = {
            **_without_settings(),
            "DATA_PLATFORM_HOME": str(home),
            "SERVICES": "spark",
            **{
                name: str(free_port())
                for name in (
                    CONNECT_PORT_VARIABLE,
                    MASTER_PORT_VARIABLE,
                    MASTER_UI_PORT_VARIABLE,
                    WORKER_UI_PORT_VARIABLE,
                )
            },
        }
        try:
            up = subprocess.run(
                [sys.executable, "-m", "data_platform.services", "up"],
                env=env, capture_output=True, text=True, timeout=300, umask=0o022,
            )  # fmt: skip
            assert up.returncode == 0, up.stderr
            exported = services(env, "env")
            assert exported.returncode == 0, exported.stderr
            shell = {**_without_settings(), "TZ": "UTC"}
            for line in exported.stdout.splitlines():
                _, assignment = shlex.split(line)  # export NAME=VALUE
                name, _, value = assignment.partition("=")
                shell[name] = value
            assert shell["DATA_PLATFORM_ENGINE"] == "spark"
            _create_table(shell["DATA_PLATFORM_SPARK_REMOTE"])
            yield Cluster(home, shell)
        finally:
            services(env, "down")


def _create_table(remote: str) -> None:
    from pyspark.sql.connect.session import SparkSession

    spark = SparkSession.builder.remote(remote).create()
    try:
        spark.sql("CREATE DATABASE IF NOT EXISTS marts").collect()
        spark.sql("CREATE TABLE marts.sample USING parquet AS SELECT 7 AS id").collect()
    finally:
        spark.stop()


@pytest.fixture
def secret_file(tmp_path) -> Path:
    """A file only its owner reads, the cluster's user here: what a query must not reach."""
    path = tmp_path / "secret.txt"
    path.write_text(CANARY + "\n")
    path.chmod(0o600)
    return path


def test_a_file_read_by_path_is_refused_in_one_line(cluster, secret_file):
    spark_env = cluster.env
    cli = subprocess.run(
        [CLI, "sql", f"SELECT * FROM text.`{secret_file}`", "--format", "csv"],
        env=spark_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (cli.returncode, cli.stdout) == (1, ""), cli.stdout
    assert cli.stderr.startswith("data-platform sql: ") and cli.stderr.count("\n") == 1
    assert "reads a file of the cluster by path" in cli.stderr, cli.stderr

    path = str(secret_file)
    # Each source Spark reads files with, and the places a relation may hide in a query.
    named = [
        f"SELECT * FROM TEXT.`{path}`",
        f"SELECT * FROM json.`{path}`",
        f"SELECT * FROM csv.`{path}`",
        f"SELECT * FROM parquet.`{path}`",
        f"SELECT * FROM orc.`{path}`",
        f"SELECT * FROM binaryFile.`{path}`",
        f"SELECT * FROM text.`file://{path}`",
        f"SELECT * FROM `org.apache.spark.sql.execution.datasources.text.TextFileFormat`.`{path}`",
        f"WITH x AS (SELECT * FROM text.`{path}`) SELECT * FROM x",
        f"SELECT (SELECT max(value) FROM text.`{path}`) AS v",
        f"SELECT * FROM marts.sample JOIN text.`{path}` ON true",
        f"SELECT * FROM IDENTIFIER('text.`{path}`')",
        f"DESCRIBE text.`{path}`",
    ]
    # Not in the parsed plan's relations: Spark's own refusal (runSQLOnFiles off) stops these.
    hidden = [f"DESCRIBE QUERY SELECT * FROM text.`{path}`"]
    settings = load_settings(spark_env)
    for statement in [*named, *hidden]:
        with (
            pytest.raises(QueryError) as refused,
            read_only_query(settings, statement, timeout=60) as result,
        ):
            list(result.rows)
        message = str(refused.value)
        assert "\n" not in message and CANARY not in message, statement
        if statement in named:
            assert "reads a file of the cluster by path" in message, (statement, message)


def test_warehouse_tables_are_still_read(cluster):
    settings = load_settings(cluster.env)
    with read_only_query(settings, "SELECT id FROM marts.sample", timeout=60) as result:
        assert list(result.rows) == [(7,)]
    # A CTE may take a source's name: it is no file.
    query = "WITH text AS (SELECT id FROM marts.sample) SELECT id FROM text"
    with read_only_query(settings, query, timeout=60) as result:
        assert list(result.rows) == [(7,)]


def test_the_warehouse_is_its_owners_alone(cluster):
    warehouse = cluster.home / "services" / "spark" / "warehouse"
    table = warehouse / "marts.db" / "sample"
    assert any(table.glob("*.parquet"))
    modes = {
        str(path.relative_to(warehouse)): path.stat().st_mode & 0o777
        for path in [warehouse, table, *table.iterdir()]
    }
    assert {name: oct(mode) for name, mode in modes.items() if mode & 0o077} == {}
