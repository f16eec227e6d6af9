"""`SERVICES=spark`: a real standalone Spark cluster (master, worker, Spark Connect endpoint) as
`make services-up|services-env|services-down` drive it, in a home of its own, on free ports.

One cluster start for the module (90 s on 2 cores at load 5-9), a module fixture the tests run on
in file order: up twice, SQL and a JSON file read through the endpoint with the work done by the
worker's executor, the exported settings; then `data-platform sql` on Spark through the real CLI
(every format, streaming, the refused writes, Spark's errors); then the PII salt of a hash, in no
file of the home; then down with no process left.
Needs Java 17 (`make test` installs it through system-packages); the choice of Java is checked
apart, on fake JDK folders, and an unreachable endpoint needs no cluster at all.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import jinja2
import pytest
import yaml
import zstandard

from data_platform.assets.dbt_project import DBT_PROJECT_DIR
from data_platform.resources.privacy import SALT_VARIABLE
from data_platform.resources.spark_retries import retries_within, retry_policy
from data_platform.resources.warehouse import SparkEndpointLost, Warehouse, endpoint_lost
from data_platform.services.config import load_services_config
from data_platform.services.process import group_alive, pid_alive, read_pid
from data_platform.services.spark_cluster import (
    APP_NAME,
    CONNECT_PORT_VARIABLE,
    MASTER_PORT_VARIABLE,
    MASTER_UI_PORT_VARIABLE,
    PROCESSES,
    WORKER_UI_PORT_VARIABLE,
    SparkCluster,
    java_home,
)
from data_platform.settings import load_settings
from data_platform.sql_engines import QueryError, read_only_query
from data_platform_tests.conftest import services_home
from data_platform_tests.helpers import free_port
from data_platform_tests.helpers import run_services as services

CLI = str(Path(sys.executable).with_name("data-platform"))


def listening_addresses(port: int) -> set[str]:
    """The addresses something listens on at this port; Java's IPv4-mapped IPv6 sockets included."""
    addresses = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if int(hex_port, 16) != port or state != "0A":  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # Each 32-bit word is little-endian; an IPv4-mapped address ends in the IPv4 one.
            ipv4 = raw[-4:][::-1]
            mapped = len(raw) == 16 and raw[:12] == bytes(8) + b"\xff\xff\x00\x00"
            if len(raw) == 4 or mapped:
                addresses.add(".".join(str(b) for b in ipv4))
            else:
                addresses.add(raw.hex())
    return addresses


@dataclass(frozen=True)
class Cluster:
    """The module's one cluster, as its fixture started it."""

    env: dict[str, str]
    ports: dict[str, int]
    cluster: SparkCluster
    state: Path
    first_up: subprocess.CompletedProcess[str]
    started: float  # seconds the first `up` took

    @property
    def remote(self) -> str:
        """What `services env` exports: the endpoint with the cluster's secret as its token."""
        return self.cluster.remote


@pytest.fixture(scope="module")
def spark_cluster() -> Iterator[Cluster]:
    """One cluster start for the whole module (~90 s on 2 cores): the tests below run in file
    order on it (`--dist loadfile`), the last one stops it; stopped here too whatever happens."""
    with services_home("data_platform_spark_test_") as home:
        ports = {
            CONNECT_PORT_VARIABLE: free_port(),
            MASTER_PORT_VARIABLE: free_port(),
            MASTER_UI_PORT_VARIABLE: free_port(),
            WORKER_UI_PORT_VARIABLE: free_port(),
        }
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("DATA_PLATFORM_", "SPARK_", "PYSPARK_"))
            },
            "DATA_PLATFORM_HOME": str(home),
            "SERVICES": "spark",
            **{name: str(port) for name, port in ports.items()},
        }
        cluster = SparkCluster(load_services_config(env))
        try:
            assert services(env, "down").returncode == 0  # nothing runs yet: fine
            began = time.monotonic()
            first = services(env, "up")
            started = time.monotonic() - began
            assert first.returncode == 0, first.stderr + _tail(cluster.log_file)
            yield Cluster(env, ports, cluster, home / "services" / "spark", first, started)
        finally:
            services(env, "down")


def test_spark_cluster_up_twice_sql_and_json_on_the_worker_env(spark_cluster, tmp_path):
    env, ports, cluster, state = (
        spark_cluster.env,
        spark_cluster.ports,
        spark_cluster.cluster,
        spark_cluster.state,
    )
    pids = {p: read_pid(state / f"{p}.pid") for p in PROCESSES}
    again = services(env, "up")
    assert again.returncode == 0, again.stderr
    assert {p: read_pid(state / f"{p}.pid") for p in PROCESSES} == pids
    for port in ports.values():
        assert listening_addresses(port) == {"127.0.0.1"}

    # One alive worker; the endpoint is an application of this cluster.
    master = cluster.master_status()
    assert master is not None and master["aliveworkers"] == 1
    (app,) = master["activeapps"]
    assert app["name"] == APP_NAME

    exports = dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1)
        for line in services(env, "env").stdout.splitlines()
    )
    remote = spark_cluster.remote
    assert exports["DATA_PLATFORM_ENGINE"] == "spark"
    assert exports["DATA_PLATFORM_SPARK_REMOTE"] == remote
    settings = load_settings({"DATA_PLATFORM_HOME": str(tmp_path), **exports})
    assert (settings.engine, settings.spark_remote) == ("spark", remote)

    from pyspark.sql.connect.session import SparkSession

    spark = SparkSession.builder.remote(remote).create()
    try:
        spark.sql(
            "CREATE TABLE numbers USING parquet AS SELECT id, id % 3 AS k FROM range(0, 1000, 1, 2)"
        ).collect()
        rows = spark.sql("SELECT k, count(*) AS n FROM numbers GROUP BY k ORDER BY k")
        assert [tuple(r) for r in rows.collect()] == [(0, 334), (1, 333), (2, 333)]

        landing = tmp_path / "landing"
        landing.mkdir()
        (landing / "events.json").write_text(
            '{"event_id": "a", "amount": 1.5}\n{"event_id": "b", "amount": 2}\nnot json\n'
        )
        events = (
            spark.read.option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", "_rescued")
            .schema("event_id STRING, amount DOUBLE, _rescued STRING")
            .json(str(landing))
        )
        assert sorted((tuple(r) for r in events.collect()), key=repr) == [
            ("a", 1.5, None),
            ("b", 2.0, None),
            (None, None, "not json"),
        ]
        counted = spark.sql(f"SELECT count(*) FROM json.`{landing}`").collect()
        assert counted[0][0] == 3
        # Where rows are computed: in the executor's JVM (its own java.io.tmpdir), not the
        # driver's. Asked of the JVM itself: Spark logs no line of a task that succeeds (WARN).
        where = spark.sql(
            "SELECT DISTINCT reflect('java.lang.System', 'getProperty', 'java.io.tmpdir') "
            "FROM range(0, 4, 1, 2)"
        ).collect()
        assert [r[0] for r in where] == [str(state / "tmp" / "executor")]
    finally:
        spark.stop()

    # The table's files are in the services folder; the worker's executor ran the tasks.
    assert list((state / "warehouse" / "numbers").glob("part-*.parquet"))
    worker = cluster.worker_status()
    assert worker is not None
    assert [e["appid"] for e in worker["executors"]] == [app["id"]]
    assert next((state / "work" / app["id"]).glob("*/stderr")).is_file()
    assert (state / "metastore_db").is_dir()

    # Every JVM's temporary files are the cluster's state, not /tmp's (where a killed cluster
    # left them for good): the endpoint's driver made its own there.
    executors = [pid for pid, args in java_processes() if app["id"] in args]
    assert len(executors) == 1
    for pid in [*pids.values(), *executors]:
        (tmpdir,) = [a for a in dict(java_processes())[pid] if a.startswith("-Djava.io.tmpdir=")]
        assert Path(tmpdir.split("=", 1)[1]).parent == state / "tmp"
    assert {p.name.split("-")[0] for p in (state / "tmp" / "connect").iterdir()} >= {"spark"}
    print(f"spark cluster started in {spark_cluster.started:.1f} s")


def connect_refusal(remote: str) -> str:
    """The error of a statement through `remote`, which must fail.

    The session is stopped, retries off: a client left open asks its endpoint to clean up at
    the interpreter's exit, with pyspark's 10 minutes of retries, and the module has stopped
    the cluster by then (a lone run of this file hung at exit; xdist kills a worker after 10 s).
    """
    from pyspark.errors import PySparkException
    from pyspark.sql.connect.client.retries import DefaultPolicy
    from pyspark.sql.connect.session import SparkSession

    session = SparkSession.builder.remote(remote).create()
    try:
        with pytest.raises(PySparkException) as refused:
            session.sql("SELECT 1").collect()
    finally:
        session.client.set_retry_policies([DefaultPolicy(max_retries=0)])
        session.stop()
    return str(refused.value)


ROGUE_APPLICATION = """
from pyspark.sql import SparkSession
spark = SparkSession.builder.master({master!r}).appName("rogue").getOrCreate()
print("the rogue application ran", spark.range(10).count(), flush=True)
"""


def test_the_cluster_admits_only_holders_of_its_secret(spark_cluster, tmp_path):
    """Spark Connect and the standalone master took any user of the machine: SQL through the
    endpoint reads every table (raw personal data) and runs Python as the platform's user, and
    an application registered at the master runs its code on the worker. Both now ask for the
    cluster's secret, generated at the first start, which is in no command line and no file
    but its own two (mode 0600)."""
    state, port = spark_cluster.state, spark_cluster.ports[CONNECT_PORT_VARIABLE]
    secret = (state / "secret").read_text().strip()
    assert len(secret) >= 40 and f";token={secret}" in spark_cluster.remote
    for remote in (f"sc://127.0.0.1:{port}", f"sc://localhost:{port}"):
        assert "No authentication token provided" in connect_refusal(remote)
    assert "Invalid authentication token" in connect_refusal(f"sc://localhost:{port}/;token=x")

    # An application of its own, without the secret, is refused by the master (SASL).
    driver_log = tmp_path / "rogue.log"
    script = tmp_path / "rogue.py"
    script.write_text(ROGUE_APPLICATION.format(master=spark_cluster.cluster.master_url))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}
    env |= {
        "JAVA_HOME": str(java_home()),
        "PYSPARK_SUBMIT_ARGS": f"--driver-java-options -Djava.io.tmpdir={tmp_path} pyspark-shell",
    }
    with driver_log.open("w") as log:
        rogue = subprocess.Popen(
            [sys.executable, str(script)], env=env, cwd=tmp_path, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 120
        while "Failed to connect to master" not in driver_log.read_text():
            assert rogue.poll() is None and time.monotonic() < deadline, driver_log.read_text()
            time.sleep(0.5)
        apps = [app["name"] for app in spark_cluster.cluster.master_status()["activeapps"]]
    finally:
        rogue.kill()
        rogue.wait()
    assert "SASL" in driver_log.read_text() and apps == [APP_NAME]
    assert "the rogue application ran" not in driver_log.read_text()

    for path in (state / "secret", state / "conf" / "spark-defaults.conf"):
        assert path.stat().st_mode & 0o777 == 0o600
    holding = files_holding([state], [secret.encode()])
    assert holding == sorted([str(state / "secret"), str(state / "conf" / "spark-defaults.conf")])
    assert not command_lines_holding(secret)


def log_sizes(state: Path) -> dict[str, int]:
    """The cluster's logs: each process's, and its executors' stderr and stdout."""
    files = [*(state / "logs").glob("*.log"), *(state / "work").glob("app-*/*/std*")]
    return {str(p.relative_to(state)): p.stat().st_size for p in files}


def test_the_logs_hardly_grow_per_statement_and_old_app_folders_are_cleaned(spark_cluster):
    """At Spark's default INFO the endpoint's log grew ~9.7 KB and its executor's stderr ~3.9 KB
    per statement (30 statements: +292 KB and +118 KB), for good. At WARN (conf/log4j2.properties)
    nothing of a statement that succeeds is logged; the daemons' lifecycle (INFO of
    org.apache.spark.deploy) is kept. The worker is told to remove stopped applications' folders."""
    from pyspark.sql.connect.session import SparkSession

    state = spark_cluster.state
    session = SparkSession.builder.remote(spark_cluster.remote).create()
    try:
        session.sql("CREATE TABLE IF NOT EXISTS log_growth(id BIGINT) USING parquet").collect()
        before = log_sizes(state)
        for i in range(10):
            session.sql(
                f"INSERT INTO log_growth SELECT id FROM range({i * 10}, {i * 10 + 10})"
            ).collect()
            session.sql("SELECT count(*) FROM log_growth").collect()
            session.range(100).selectExpr("sum(id)").collect()
        time.sleep(2)  # what the executor writes after the result
        after = log_sizes(state)
    finally:
        session.stop()
    grown = {name: after[name] - before.get(name, 0) for name in after}
    assert any(name.endswith("/stderr") for name in grown), grown  # the executor's is measured
    # 30 statements: under 30 B each on average in every log (INFO: 9,733 and 3,918).
    assert all(size < 900 for size in grown.values()), grown
    assert (state / "conf" / "log4j2.properties").read_text().startswith("rootLogger.level = warn")
    assert (
        "INFO Master: Registered app data-platform-sql" in (state / "logs/master.log").read_text()
    )
    worker = read_pid(state / "worker.pid")
    command = Path(f"/proc/{worker}/cmdline").read_bytes().split(b"\0")
    assert b"-Dspark.worker.cleanup.enabled=true" in command
    assert b"-Dspark.worker.cleanup.appDataTtl=259200" in command  # 3 days


def command_lines_holding(text: str) -> list[str]:
    """The command line of every process holding `text`, as `ps` shows them to every user."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        if text in args:
            found.append(args.replace("\0", " "))
    return found


def java_processes() -> list[tuple[int, list[str]]]:
    """(pid, arguments) of every running java process."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:  # ended meanwhile
            continue
        if args and args[0].endswith("/java"):
            found.append((int(cmdline.parent.name), args))
    return found


# `data-platform sql` on Spark, through the real CLI, on a table of known values.
SQL_ROWS = [
    (1, 'Zoë, "the" first', Decimal("19.99"), datetime(2026, 1, 2, 3, 4, 5), date(2026, 1, 2)),
    (2, "plain", Decimal("0.05"), datetime(2026, 1, 3, 23, 59, 59, 250000), date(2026, 1, 3)),
    (3, None, Decimal("-1234567.80"), datetime(2026, 2, 1), date(2026, 2, 1)),
]  # fmt: skip
SQL_COLUMNS = ["id", "name", "price", "seen_at", "day"]
SQL_QUERY = "SELECT * FROM marts.sample ORDER BY id"


def spark_sql(remote: str, *args: str, tz: str = "UTC") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "sql", *args], env=spark_env(remote, tz), capture_output=True, text=True, timeout=300
    )


def spark_env(remote: str, tz: str = "UTC") -> dict[str, str]:
    others = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATA_PLATFORM_", "SPARK_", "PYSPARK_"))
    }
    # The client's time zone must not shift the warehouse's UTC timestamps.
    return {
        **others,
        "TZ": tz,
        "DATA_PLATFORM_ENGINE": "spark",
        "DATA_PLATFORM_SPARK_REMOTE": remote,
    }


@pytest.fixture(scope="module")
def sample_table(spark_cluster) -> str:
    """marts.sample on the cluster, written through a Spark session; the endpoint's remote."""
    from pyspark.sql.connect.session import SparkSession

    spark = SparkSession.builder.remote(spark_cluster.remote).create()
    try:
        spark.sql("CREATE DATABASE IF NOT EXISTS marts").collect()
        spark.sql(
            "CREATE TABLE marts.sample (id INT, name STRING, price DECIMAL(10,2), "
            "seen_at TIMESTAMP, day DATE) USING parquet"
        ).collect()
        values = ", ".join(
            f"({i}, {'NULL' if n is None else repr(n)}, {p}, TIMESTAMP'{t}', DATE'{d}')"
            for i, n, p, t, d in SQL_ROWS
        )
        spark.sql(f"INSERT INTO marts.sample VALUES {values}").collect()
    finally:
        spark.stop()
    return spark_cluster.remote


def test_sql_on_spark_csv_json_and_table_give_every_value(sample_table):
    result = spark_sql(sample_table, SQL_QUERY, "--format", "csv", tz="America/New_York")
    assert result.returncode == 0, result.stderr
    records = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(records[0]) == SQL_COLUMNS
    assert [
        (
            int(r["id"]),
            r["name"] or None,
            Decimal(r["price"]),
            datetime.fromisoformat(r["seen_at"]),
            date.fromisoformat(r["day"]),
        )
        for r in records
    ] == SQL_ROWS

    result = spark_sql(sample_table, SQL_QUERY, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert [
        (
            r["id"],
            r["name"],
            r["price"],
            datetime.fromisoformat(r["seen_at"]),
            date.fromisoformat(r["day"]),
        )
        for r in json.loads(result.stdout, parse_float=Decimal)
    ] == SQL_ROWS
    empty = spark_sql(sample_table, "SELECT 1 AS x WHERE false", "--format", "json")
    assert json.loads(empty.stdout) == []

    result = spark_sql(
        sample_table, "SELECT count(*) AS n, sum(price) AS total FROM marts.sample"
    )  # the default format: table
    assert result.returncode == 0, result.stderr
    header, rule, line, count = result.stdout.splitlines()
    assert header.split() == ["n", "total"] and set(rule) == {"-", " "}
    assert line.split() == ["3", "-1234547.76"] and count == "(1 row)"

    # SHOW and DESCRIBE are reads too; a trailing semicolon is fine.
    shown = spark_sql(sample_table, "SHOW TABLES IN marts;", "--format", "csv")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == "namespace,tableName,isTemporary\nmarts,sample,false\n"
    described = spark_sql(sample_table, "DESCRIBE marts.sample", "--format", "json")
    assert [(r["col_name"], r["data_type"]) for r in json.loads(described.stdout)][:3] == [
        ("id", "int"),
        ("name", "string"),
        ("price", "decimal(10,2)"),
    ]


def test_sql_on_spark_streams_rows_without_collecting_the_result(sample_table):
    """A billion rows: the first thousand arrive in seconds (a collect would take minutes and
    the memory of all of them); closing the pipe ends the command and its Spark job."""
    began = time.monotonic()
    query = subprocess.Popen(
        [CLI, "sql", "SELECT id FROM range(0, 1000000000, 1, 10000)", "--format", "csv"],
        env=spark_env(sample_table),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [query.stdout.readline() for _ in range(1001)]
        assert lines == ["id\n", *(f"{i}\n" for i in range(1000))]
        assert time.monotonic() - began < 120
        query.stdout.close()
        query.wait(timeout=60)
    finally:
        query.kill()
        query.wait()


def test_sql_on_spark_refuses_every_write_before_running_it(sample_table):
    attempts = [
        "INSERT INTO marts.sample VALUES (4, 'x', 1, NULL, NULL)",
        "CREATE TABLE marts.copy USING parquet AS SELECT * FROM marts.sample",
        "DROP TABLE marts.sample",
        "SELECT 1; DROP TABLE marts.sample",
        "SELECT 1 -- a comment; then\n; DROP TABLE marts.sample",
        "/* SELECT 1 */ DROP TABLE marts.sample",
        "/* nested /* */ SELECT 1 */ DROP TABLE marts.sample",
        "-- SELECT 1\nDROP TABLE marts.sample",
        "WITH a AS (SELECT 9 AS id) INSERT INTO marts.sample (id) SELECT id FROM a",
        "FROM marts.sample INSERT INTO marts.sample SELECT *",
        "SELECT 1) AS x; DROP TABLE marts.sample; SELECT * FROM (SELECT 1",
        "BEGIN SELECT 1; DROP TABLE marts.sample; END",
        "TRUNCATE TABLE marts.sample",
        "USE marts",
        "SET spark.sql.ansi.enabled = false",
        "SELECT TRANSFORM(id) USING 'cat' AS (x) FROM marts.sample",
        "SELECT reflect('java.util.UUID', 'randomUUID')",
    ]
    # The CLI's refusal once (a new process imports pyspark: ~4 s); the rest in this process.
    cli = spark_sql(sample_table, attempts[0], "--format", "csv")
    assert (cli.returncode, cli.stdout) == (1, "")
    assert cli.stderr.startswith("data-platform sql: ") and cli.stderr.count("\n") == 1
    settings = load_settings(spark_env(sample_table))
    errors = {}
    for statement in attempts:
        with (
            pytest.raises(QueryError) as refused,
            read_only_query(settings, statement, timeout=60) as result,
        ):
            list(result.rows)
        errors[statement] = str(refused.value)
        assert "\n" not in errors[statement], statement
    # The writes are refused by name; a second statement is Spark's own syntax error.
    assert "only reads the warehouse" in cli.stderr and "only reads" in errors[attempts[0]]
    assert "PARSE_SYNTAX_ERROR" in errors[attempts[3]]
    assert all("runs code on the cluster" in errors[q] for q in attempts[-2:])
    # EXPLAIN of a write plans it and writes nothing.
    explained = spark_sql(sample_table, f"EXPLAIN {attempts[0]}", "--format", "csv")
    assert explained.returncode == 0, explained.stderr
    # Nothing was written, dropped or created.
    counted = spark_sql(sample_table, "SELECT count(*) AS n FROM marts.sample", "--format", "csv")
    assert counted.stdout == "n\n3\n", counted.stderr
    tables = spark_sql(sample_table, "SHOW TABLES IN marts", "--format", "csv")
    assert tables.stdout.splitlines()[1:] == ["marts,sample,false"]


def test_sql_on_spark_a_bad_query_is_sparks_message_in_one_line(sample_table):
    result = spark_sql(sample_table, "SELECT * FROM marts.nosuch")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("data-platform sql: [TABLE_OR_VIEW_NOT_FOUND]")
    assert "`marts`.`nosuch`" in line


# A salt no file, log or page of the cluster may hold once it has hashed e-mails with it.
CANARY_SALT = "salt-canary-8f3e1c"
CANARY_EMAILS = {1: "  Alice@Example.COM ", 2: "bob@example.com", 3: None, 4: "   "}


def dbt_salt_on_spark(salt: str) -> tuple[str, str, str]:
    """What dbt's spark target gives the endpoint for `salt`: the session conf of profiles.yml
    that carries it (name, value), and the SQL of macros/hash_email.sql that reads it back."""
    profile = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())
    parameters = profile["data_platform"]["outputs"]["spark"]["server_side_parameters"]
    [name] = [key for key in parameters if "pii_salt" in key]

    def env_var(variable: str, default: str = "") -> str:
        return salt if variable == SALT_VARIABLE else default

    value = jinja2.Template(parameters[name]).render(env_var=env_var)
    macros = jinja2.Template((DBT_PROJECT_DIR / "macros" / "hash_email.sql").read_text())
    return name, value, str(macros.module.spark__pii_salt())


def files_holding(roots: list[Path], needles: list[bytes]) -> list[str]:
    """Files under `roots` holding a needle; Spark's event logs (zstd) read decompressed."""
    found = set()  # a root may lie in another
    for path in (p for root in roots for p in root.rglob("*")):
        try:
            data = path.read_bytes() if path.is_file() else b""
        except FileNotFoundError:  # Spark's scratch files come and go
            continue
        if path.suffix == ".zstd":
            decompressor = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
            data = decompressor.decompress(data)
        if any(needle in data for needle in needles):
            found.add(str(path))
    return sorted(found)


def endpoint_event_logs(spark) -> list[Path]:
    """The folder of the endpoint's event log, if it writes one."""
    if spark.conf.get("spark.eventLog.enabled", "false") != "true":
        return []
    return [
        Path(urllib.parse.urlparse(spark.conf.get("spark.eventLog.dir", "/tmp/spark-events")).path)
    ]


def endpoint_ui_pages(spark) -> dict[str, bytes]:
    """The endpoint's Spark UI, if it has one: its SQL tab (each query's plans and session
    confs) and its environment, as the UI's REST API serves them."""
    if spark.conf.get("spark.ui.enabled", "true") != "true":
        return {}
    app = f"http://127.0.0.1:{spark.conf.get('spark.ui.port', '4040')}/api/v1/applications/"
    app += spark.conf.get("spark.app.id")
    pages = (f"{app}/sql?details=true&planDescription=true&length=100000", f"{app}/environment")
    return {url: urllib.request.urlopen(url, timeout=30).read() for url in pages}


def test_the_pii_salt_is_in_no_log_event_log_or_ui_page_of_the_cluster(spark_cluster):
    """dbt's spark target gives the salt to the endpoint as a session conf (hex) that Spark's
    parser substitutes into the hash's SQL: the statement's plan then holds the salt in clear
    (constant folding) and its session confs the hex. An endpoint with a UI or an event log
    shows both (measured 2026-12-03: a dbt build of users_history on an endpoint with both on
    put the salt in its SQL tab and event log; Spark's redaction cannot hide the conf, as it
    would also hide it from the substitution). This endpoint has neither, and writes the salt
    into no file of the home: checked here on the SQL the dbt project runs."""
    from pyspark.sql.connect.session import SparkSession

    name, value, salt_sql = dbt_salt_on_spark(CANARY_SALT)
    spark = SparkSession.builder.remote(spark_cluster.remote).create()
    try:
        spark.conf.set(name, value)
        emails = ", ".join(
            f"({i}, {'NULL' if e is None else repr(e)})" for i, e in CANARY_EMAILS.items()
        )
        # From a table, as dbt hashes: over inline VALUES the optimizer computes the hashes
        # itself and the plan holds no salt.
        spark.sql(
            "CREATE TABLE canary_users USING parquet AS "
            f"SELECT * FROM VALUES {emails} AS t(id, email)"
        ).collect()
        spark.sql(
            "CREATE TABLE salted USING parquet AS SELECT id, sha2("
            f"{salt_sql} || nullif(lower(trim(email)), ''), 256) AS email_hash FROM canary_users"
        ).collect()
        hashes = dict(spark.sql("SELECT id, email_hash FROM salted").collect())
        pages, event_logs = endpoint_ui_pages(spark), endpoint_event_logs(spark)
    finally:
        spark.stop()
    # What the DuckDB warehouse holds too: sha256(salt || lower(trim(email))).
    assert hashes == {
        i: hashlib.sha256((CANARY_SALT + e.strip(" ").lower()).encode()).hexdigest()
        if e and e.strip(" ")
        else None
        for i, e in CANARY_EMAILS.items()
    }
    needles = [CANARY_SALT.encode(), CANARY_SALT.encode().hex().encode()]
    home = Path(spark_cluster.env["DATA_PLATFORM_HOME"])
    leaks = [url for url, page in pages.items() if any(n in page for n in needles)]
    assert files_holding([home, *event_logs], needles) + leaks == []


def test_a_lost_endpoint_fails_the_steps_session_in_one_line(spark_cluster):
    """The Connect server killed under a step's session: pyspark retried for 10 minutes, the
    step silent, and a restart meanwhile ended it with NO_ACTIVE_SESSION and a stack trace.
    Restarted: one line at the next statement. Down: one line once the retries are spent
    (about a minute; a second here). The endpoint is left down: the next test starts the whole
    cluster again (an endpoint start of its own here took ~15 s of the module), and shows there
    that the staging folders of killed writes go when the endpoint starts again."""
    warehouse = Warehouse(
        path="unused.duckdb",
        engine="spark",
        spark_remote=spark_cluster.remote,
        spark_retry_seconds=1,
    )
    connect = read_pid(spark_cluster.state / "connect.pid")

    def kill_connect() -> None:
        os.killpg(connect, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while group_alive(connect) and time.monotonic() < deadline:
            time.sleep(0.1)

    with pytest.raises(SparkEndpointLost) as restarted, warehouse.spark() as spark:
        assert spark.sql("SELECT 1").collect()[0][0] == 1
        kill_connect()
        assert services(spark_cluster.env, "up").returncode == 0
        connect = read_pid(spark_cluster.state / "connect.pid")
        spark.sql("SELECT 2").collect()
    began = time.monotonic()
    with pytest.raises(SparkEndpointLost) as down, warehouse.spark() as spark:
        assert spark.sql("SELECT 1").collect()[0][0] == 1
        kill_connect()
        spark.sql("SELECT 2").collect()
    assert time.monotonic() - began < 60
    port = spark_cluster.ports[CONNECT_PORT_VARIABLE]
    for lost, why in (
        (restarted, "it restarted: this session is gone"),
        (down, "it does not answer"),
    ):
        [line] = str(lost.value).splitlines()
        assert line.startswith(f"the Spark Connect endpoint sc://localhost:{port} was lost ({why})")
        assert "SERVICES=spark make services-up" in line


def test_up_after_the_master_was_killed_starts_the_cluster_again(spark_cluster):
    """The master killed -9 (OOM): `status` without SERVICES did not list the cluster, and `up`
    started the master alone, and waited 240 s for a cluster that never formed again. The
    endpoint may be down too (the test above leaves it so). What a write killed with its
    endpoint leaves in its table's folder, there for good before, goes when the endpoint
    starts again, the table's own files kept."""
    table = spark_cluster.state / "warehouse" / "raw.db" / "killed_write"
    leftovers = [table / ".spark-staging-0f1e", table / "_temporary" / "0"]
    for folder in [*leftovers, table / "dt=2026-01-05"]:
        folder.mkdir(parents=True)
        (folder / "part-00000.parquet").write_bytes(b"PAR1")
    os.killpg(read_pid(spark_cluster.state / "master.pid"), signal.SIGKILL)
    # Listed without SERVICES too, which named the default services only.
    plain = {k: v for k, v in spark_cluster.env.items() if k != "SERVICES"}
    status = services(plain, "status")
    assert "spark: down" in status.stdout.splitlines() and status.returncode == 3
    up = services(spark_cluster.env, "up")
    assert up.returncode == 0, up.stderr
    assert sorted(p.name for p in table.iterdir()) == ["dt=2026-01-05"]
    result = spark_sql(spark_cluster.remote, "SELECT 41 + 1 AS answer", "--format", "csv")
    assert (result.returncode, result.stdout) == (0, "answer\n42\n"), result.stderr


def test_spark_cluster_down_without_services_stops_everything(spark_cluster):
    """Last in the module: `make services-down` without SERVICES stops the opt-in cluster too."""
    env, state = spark_cluster.env, spark_cluster.state
    pids = {p: read_pid(state / f"{p}.pid") for p in PROCESSES}
    plain = {k: v for k, v in env.items() if k != "SERVICES"}
    assert services(plain, "down").returncode == 0
    assert not any(pid_alive(pid) or group_alive(pid) for pid in pids.values())
    assert not any(listening_addresses(port) for port in spark_cluster.ports.values())
    assert services(env, "down").returncode == 0
    assert services(env, "status").stdout.split() == ["spark:", "down"]


def test_sql_on_spark_with_no_endpoint_is_one_line_saying_what_to_do():
    """No cluster needed: nothing listens on a fresh free port."""
    remote = f"sc://127.0.0.1:{free_port()}"
    began = time.monotonic()
    result = spark_sql(remote, "SELECT 1")
    assert time.monotonic() - began < 30  # not pyspark's minutes of retries
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(
        f"data-platform sql: the Spark Connect endpoint {remote} does not answer"
    )
    assert "SERVICES=spark make services-up" in line and "DATA_PLATFORM_SPARK_REMOTE" in line


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text().splitlines()[-lines:])
    except OSError:
        return f"(no {log})"


def fake_jdk(folder: Path, version: str) -> Path:
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "java").write_text("#!/bin/sh\n")
    (folder / "bin" / "java").chmod(0o755)
    (folder / "release").write_text(f'JAVA_VERSION="{version}"\n')
    return folder


def test_java_home_is_a_java_17_or_21_never_a_newer_jdk(tmp_path):
    assert java_home({"JAVA_HOME": str(fake_jdk(tmp_path / "17", "17.0.15"))}) == tmp_path / "17"
    assert java_home({"JAVA_HOME": str(fake_jdk(tmp_path / "21", "21.0.2"))}) == tmp_path / "21"
    # A JAVA_HOME naming Java 25 is passed over for apt's openjdk-17 (make system-packages).
    newer = java_home({"JAVA_HOME": str(fake_jdk(tmp_path / "25", "25.0.3"))})
    assert newer != tmp_path / "25" and newer.name.startswith("java-17-openjdk")


def test_a_spark_session_retries_for_about_the_seconds_set():
    """pyspark backs off 50 ms, then four times longer each retry, here at most 10 s: the
    fewest retries whose waits add up to the setting."""
    from pyspark.sql.connect.client.retries import DefaultPolicy

    # 0.05 + 0.2 = 0.25 s; + 0.8 = 1.05 s; + 3.2 = 4.25 s; then 10 s each: 64.25 s, 604.25 s.
    assert [retries_within(s) for s in (0.25, 1, 2, 60, 600)] == [2, 3, 4, 10, 64]
    policy = retry_policy(60)
    assert isinstance(policy, DefaultPolicy) and policy.max_retries == 10
    assert policy.initial_backoff == 50 and policy.backoff_multiplier == 4
    assert policy.max_backoff == 10_000


def test_a_lost_endpoint_is_told_from_an_error_that_quotes_it():
    """A dbt step's failure is dagster-dbt's error quoting dbt's output, not pyspark's."""
    quoting = "dbt failed: SparkConnectGrpcException: [INVALID_HANDLE.SESSION_NOT_FOUND] gone"
    assert endpoint_lost(RuntimeError(quoting)) == "it restarted: this session is gone"
    refused = "status = StatusCode.UNAVAILABLE details = Connection refused"
    assert endpoint_lost(RuntimeError(refused)) == "it does not answer"
    assert endpoint_lost(RuntimeError("[TABLE_OR_VIEW_NOT_FOUND] raw.events")) is None


def test_a_dbt_step_whose_endpoint_does_not_answer_fails_in_one_line(tmp_path):
    """dbt-spark makes its session in dbt's own process, where pyspark retried an endpoint
    that does not answer for 10 minutes, the step silent. It now waits as the platform's
    sessions do (DATA_PLATFORM_SPARK_RETRY_SECONDS, 2 s here), and the step's error is the one
    line of SparkEndpointLost. No cluster needed: nothing listens on a fresh free port."""
    remote = f"sc://127.0.0.1:{free_port()}"
    env = {
        **spark_env(remote),
        "DATA_PLATFORM_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "DATA_PLATFORM_SPARK_RETRY_SECONDS": "2",
        SALT_VARIABLE: "a salt of this test",
    }
    (tmp_path / "dagster").mkdir()
    began = time.monotonic()
    result = subprocess.run(
        [CLI, "materialize", "--select", "key:staging/stg_events__events", "--timeout", "240"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert time.monotonic() - began < 150  # dbt's parse, then 2 s of retries; not 10 minutes
    assert result.returncode == 1, result.stdout + result.stderr
    failed = [line.strip() for line in result.stdout.splitlines() if "FAILED dbt_" in line]
    lost = f"the Spark Connect endpoint {remote} was lost (it does not answer)"
    assert failed == [
        "FAILED dbt_partitioned_facts: data_platform.resources.warehouse.SparkEndpointLost: "
        f"{lost}: start it (the local cluster: `SERVICES=spark make services-up`), then run the "
        "step again: every step's writes are safe to repeat"
    ]
