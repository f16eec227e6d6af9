"""`SERVICES=spark`: a real standalone Spark cluster (master, worker, Spark Connect endpoint) as
`make services-up|services-env|services-down` drive it, in a home of its own, on free ports.

One cluster test, one cluster start (90 s of its 2.4-3 min at load 7-9 on 2 cores): up twice, SQL
and a JSON file read through the endpoint with the work done by the worker's executor, the
exported settings, then down with no process left. Needs Java 17 (`make test` installs it
through system-packages); the choice of Java is checked apart, on fake JDK folders.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from data_platform.services.config import load_services_config
from data_platform.services.process import group_alive, pid_alive
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
from data_platform_tests.conftest import services_home
from data_platform_tests.helpers import free_port


def services(env: dict[str, str], action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "data_platform.services", action],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


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


def test_spark_cluster_up_twice_sql_and_json_on_the_worker_env_then_down(tmp_path):
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
        state = home / "services" / "spark"
        try:
            assert services(env, "down").returncode == 0  # nothing runs yet: fine

            began = time.monotonic()
            first = services(env, "up")
            started = time.monotonic() - began
            assert first.returncode == 0, first.stderr + _tail(cluster.log_file)
            pids = {p: int((state / f"{p}.pid").read_text()) for p in PROCESSES}
            again = services(env, "up")
            assert again.returncode == 0, again.stderr
            assert {p: int((state / f"{p}.pid").read_text()) for p in PROCESSES} == pids
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
            remote = f"sc://127.0.0.1:{ports[CONNECT_PORT_VARIABLE]}"
            assert exports["DATA_PLATFORM_ENGINE"] == "spark"
            assert exports["DATA_PLATFORM_SPARK_REMOTE"] == remote
            settings = load_settings({"DATA_PLATFORM_HOME": str(tmp_path), **exports})
            assert (settings.engine, settings.spark_remote) == ("spark", remote)

            from pyspark.sql.connect.session import SparkSession

            spark = SparkSession.builder.remote(remote).create()
            try:
                spark.sql(
                    "CREATE TABLE numbers USING parquet AS "
                    "SELECT id, id % 3 AS k FROM range(0, 1000, 1, 2)"
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
            finally:
                spark.stop()

            # The table's files are in the services folder; the worker's executor ran the tasks.
            assert list((state / "warehouse" / "numbers").glob("part-*.parquet"))
            worker = cluster.worker_status()
            assert worker is not None
            assert [e["appid"] for e in worker["executors"]] == [app["id"]]
            executor_log = next((state / "work" / app["id"]).glob("*/stderr")).read_text()
            assert "Finished task" in executor_log
            assert (state / "metastore_db").is_dir()

            # `make services-down` without SERVICES stops the opt-in cluster too.
            plain = {k: v for k, v in env.items() if k != "SERVICES"}
            assert services(plain, "down").returncode == 0
            assert not any(pid_alive(pid) or group_alive(pid) for pid in pids.values())
            assert not any(listening_addresses(port) for port in ports.values())
            assert services(env, "down").returncode == 0
            assert services(env, "status").stdout.split() == ["spark:", "down"]
            print(f"spark cluster started in {started:.1f} s")
        finally:
            services(env, "down")


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
