"""DATA_PLATFORM_ENGINE and DATA_PLATFORM_SPARK_REMOTE: parsed once, a wrong value is one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from data_platform.resources.warehouse import scaled_size
from data_platform.settings import SettingsError, load_settings

# Opens a DuckDB file read-write, which needs its lock, and writes to it.
OPEN_READ_WRITE = """
import sys, duckdb
with duckdb.connect(sys.argv[1]) as conn:
    conn.execute("CREATE TABLE opened AS SELECT 1 AS n")
print("written")
"""


def settings_with(tmp_path, **variables: str):
    return load_settings({"DATA_PLATFORM_HOME": str(tmp_path), **variables})


def test_duckdb_is_the_default_engine_and_no_remote_is_needed(tmp_path):
    settings = settings_with(tmp_path)
    assert (settings.engine, settings.spark_remote) == ("duckdb", None)


@pytest.mark.parametrize(
    "remote",
    [
        "sc://127.0.0.1:15002",
        "sc://spark-connect.internal",  # pyspark's default port, 15002
        "sc://spark.example.com:443/;use_ssl=true;token=abc",
    ],
)
def test_spark_engine_with_a_connect_url(tmp_path, remote):
    settings = settings_with(
        tmp_path, DATA_PLATFORM_ENGINE=" spark ", DATA_PLATFORM_SPARK_REMOTE=remote
    )
    assert (settings.engine, settings.spark_remote) == ("spark", remote)


def test_a_remote_alone_keeps_duckdb(tmp_path):
    # The remote may be exported (services-env) while a user still runs on DuckDB.
    settings = settings_with(tmp_path, DATA_PLATFORM_SPARK_REMOTE="sc://127.0.0.1:15002")
    assert settings.engine == "duckdb"


@pytest.mark.parametrize(
    ("variables", "named", "advice"),
    [
        ({"DATA_PLATFORM_ENGINE": "postgres"}, "DATA_PLATFORM_ENGINE='postgres'", "duckdb"),
        ({"DATA_PLATFORM_ENGINE": "Spark"}, "DATA_PLATFORM_ENGINE='Spark'", "spark"),
        ({"DATA_PLATFORM_ENGINE": "spark"}, "DATA_PLATFORM_SPARK_REMOTE", "services-env"),
        (
            {"DATA_PLATFORM_SPARK_REMOTE": "127.0.0.1:15002"},
            "DATA_PLATFORM_SPARK_REMOTE='127.0.0.1:15002'",
            "sc://",
        ),
        (
            {"DATA_PLATFORM_SPARK_REMOTE": "thrift://127.0.0.1:10000"},
            "DATA_PLATFORM_SPARK_REMOTE",
            "sc://",
        ),
        ({"DATA_PLATFORM_SPARK_REMOTE": "sc://host:port"}, "sc://host:port", "sc://"),
        ({"DATA_PLATFORM_SPARK_REMOTE": "sc://:15002"}, "sc://:15002", "sc://"),
        ({"DATA_PLATFORM_SPARK_REMOTE": "sc://host:15002/db"}, "sc://host:15002/db", "sc://"),
        # Accepted, they failed the first extraction with a driver's traceback instead.
        (
            {"DATA_PLATFORM_SOURCE_DB_URL": "postgres://app:s3cret@127.0.0.1/app"},
            "'postgres://app:***@127.0.0.1/app' names no installed SQLAlchemy driver",
            "postgresql://",
        ),
        (
            {"DATA_PLATFORM_SOURCE_DB_URL": "sqlite://relative/app.db"},
            "'sqlite://relative/app.db' is no SQLite file",
            "sqlite:////abs/path",
        ),
        ({"DATA_PLATFORM_SOURCE_DB_URL": "app.db"}, "not a SQLAlchemy URL", "sqlite:////"),
        # Accepted, they named another file in each process's working folder, or none.
        (
            {"DATA_PLATFORM_SOURCE_DB_URL": "sqlite:///relative/app.db"},
            "'sqlite:///relative/app.db' is no SQLite file",
            "sqlite:////abs/path",
        ),
        (
            {"DATA_PLATFORM_SOURCE_DB_URL": "sqlite:///:memory:"},
            "is no SQLite file",
            "sqlite:////abs/path",
        ),
    ],
)
def test_a_wrong_value_is_one_line_naming_it_and_the_fix(tmp_path, variables, named, advice):
    with pytest.raises(SettingsError) as raised:
        settings_with(tmp_path, **variables)
    message = str(raised.value)
    assert "\n" not in message
    assert named in message
    assert advice in message
    assert "s3cret" not in message  # a URL's password is never shown


@pytest.mark.parametrize(
    ("size", "factor", "scaled"),
    [("512MB", 0.5, "256000KB"), ("1GiB", 0.5, "536870KB"), ("2gb", 1.0, "2000000KB")],
)
def test_a_memory_limit_scales_in_duckdb_units(size, factor, scaled):
    assert scaled_size(size, factor) == scaled


def test_a_memory_limit_that_is_no_size_is_refused():
    with pytest.raises(ValueError, match="is not a size like 512MB"):
        scaled_size("lots", 0.5)


def test_a_memory_limit_duckdb_refuses_still_closes_the_connection(tmp_path):
    """`SET memory_limit` failing left the connection, and the warehouse file's lock, open:
    another process (the next run, `data-platform sql`) could not open the warehouse."""
    import duckdb

    from data_platform.resources.warehouse import Warehouse

    path = tmp_path / "w.duckdb"
    warehouse = Warehouse(path=str(path), memory_limit="99999999TB")
    # DuckDB's refusal of the value (its message does not name the setting), not a failed open.
    memory = "Memory value out of range"
    with pytest.raises(duckdb.ParserException, match=memory) as refused, warehouse.connect():
        pass
    # `refused` keeps the failed frame, and with it a leaked connection, alive: only a closed
    # one lets another process take the file's write lock.
    writer = subprocess.run(
        [sys.executable, "-c", OPEN_READ_WRITE, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert writer.returncode == 0, writer.stderr[-2000:]
    assert writer.stdout == "written\n"
    assert refused.value is not None


def test_the_retries_for_a_long_wait_are_counted_at_once():
    """A loop over every retry took 26 s of CPU for 1,000,000 s and never ended for more."""
    import time

    from data_platform.resources.spark_retries import (
        BACKOFF_MULTIPLIER,
        INITIAL_BACKOFF_MS,
        MAX_BACKOFF_MS,
        retries_within,
    )

    def counted(seconds: float) -> int:
        waited, retries = 0, 0
        while waited < seconds * 1000:
            waited += min(MAX_BACKOFF_MS, INITIAL_BACKOFF_MS * BACKOFF_MULTIPLIER**retries)
            retries += 1
        return retries

    for seconds in (0, 0.01, 0.05, 0.3, 1, 4.25, 4.26, 60, 61, 3600, 86400):
        assert retries_within(seconds) == counted(seconds), seconds
    began = time.monotonic()
    assert retries_within(10**23) == 4 + 10**22  # 4.25 s in four, then 10 s each
    assert time.monotonic() - began < 1


def test_an_interrupt_while_the_endpoint_is_retried_stops_at_once(tmp_path):
    """Ctrl-C, SIGTERM or --timeout during a step's retries was held for spark_retry_seconds
    more: the session's release retried the endpoint that did not answer."""
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    script = f"""
import _thread, threading, time
from data_platform.resources.warehouse import Warehouse
w = Warehouse(path="{tmp_path}/w.duckdb", engine="spark",
              spark_remote="sc://127.0.0.1:{port}", spark_retry_seconds=60)
threading.Timer(2, _thread.interrupt_main).start()
began = time.monotonic()
try:
    with w.spark():
        pass
except KeyboardInterrupt:
    print("interrupted after", round(time.monotonic() - began))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.startswith("interrupted after"), done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) < 10, done.stdout
