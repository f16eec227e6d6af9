"""The services mechanism as `make services-up|services-down|services-env` drive it: a subprocess
of `python -m data_platform.services`, on free ports, in a home of its own."""

from __future__ import annotations

import functools
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from data_platform.services.process import pid_alive, read_pid, spawn, terminate_group
from data_platform_tests.conftest import services_home
from data_platform_tests.helpers import free_port, run_services

REPO = Path(__file__).resolve().parents[1]


services = functools.partial(run_services, timeout=120)


def bound_addresses(port: int) -> set[str]:
    """The IPv4 addresses something listens on at this port, from the kernel's own table."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _, hex_port = local.partition(":")
        if int(hex_port, 16) == port and state == "0A":  # 0A: LISTEN
            addresses.add(".".join(str(b) for b in bytes.fromhex(address)[::-1]))
    return addresses


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    with services_home("data_platform_services_test_") as home:
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DATA_PLATFORM_")},
            "DATA_PLATFORM_HOME": str(home),
            "DATA_PLATFORM_POSTGRES_PORT": str(free_port()),
            "DATA_PLATFORM_REDIS_PORT": str(free_port()),
            "SERVICES": "postgres redis",
        }
        try:
            yield environ
        finally:
            services(environ, "down")


def test_up_twice_env_then_down_twice(env):
    pg_port, redis_port = (
        int(env["DATA_PLATFORM_POSTGRES_PORT"]),
        int(env["DATA_PLATFORM_REDIS_PORT"]),
    )
    assert services(env, "down").returncode == 0  # nothing runs yet: fine

    first = services(env, "up")
    assert first.returncode == 0, first.stderr
    assert bound_addresses(pg_port) == {"127.0.0.1"}
    assert bound_addresses(redis_port) == {"127.0.0.1"}
    again = services(env, "up")
    assert again.returncode == 0, again.stderr
    assert services(env, "status").stdout.split("\n")[:2] == ["postgres: up", "redis: up"]

    home = Path(env["DATA_PLATFORM_HOME"])
    exports = dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1)
        for line in services(env, "env").stdout.splitlines()
    )
    assert exports["DAGSTER_HOME"] == str(home / "services" / "dagster_home")
    assert exports["DAGSTER_PG_PORT"] == str(pg_port)
    assert exports["DATA_PLATFORM_CELERY_BROKER"] == f"redis://127.0.0.1:{redis_port}/0"
    assert "DATA_PLATFORM_EXECUTOR" not in exports  # celery is not in SERVICES
    for name in ("postgres", "redis"):
        assert (home / "services" / name).is_dir()

    # The instance those exports point at works: Dagster creates its tables on PostgreSQL.
    instance_env = {**env, **exports}
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import dagster as dg; i = dg.DagsterInstance.get(); "
            "print(type(i.run_storage).__name__, i.get_runs_count())",
        ],
        env=instance_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.stdout.split() == ["PostgresRunStorage", "0"], probe.stderr[-2000:]

    assert services(env, "down").returncode == 0
    assert not bound_addresses(pg_port) and not bound_addresses(redis_port)
    assert services(env, "down").returncode == 0
    assert services(env, "status").stdout.split("\n")[:2] == ["postgres: down", "redis: down"]


def test_distributed_instance_is_the_repo_instance_plus_postgres_storage(env):
    result = services({**env, "SERVICES": "redis"}, "up")
    assert result.returncode == 0, result.stderr
    generated = Path(env["DATA_PLATFORM_HOME"]) / "services" / "dagster_home" / "dagster.yaml"
    distributed = yaml.safe_load(generated.read_text())
    repo = yaml.safe_load((REPO / "dagster.yaml").read_text())
    storage = distributed.pop("storage")
    assert distributed == repo
    # Connection settings are env references: no host, port or password in the file.
    assert all(
        set(value) == {"env"}
        for key, value in storage["postgres"]["postgres_db"].items()
        if key != "scheme"
    )


def test_a_service_that_does_not_come_up_is_one_line_naming_it_and_its_log(env):
    # Something else already listens on Redis's port: redis-server cannot bind it.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(env["DATA_PLATFORM_REDIS_PORT"])))
        squatter.listen()
        result = services({**env, "SERVICES": "redis"}, "up")
    assert result.returncode == 1
    log = Path(env["DATA_PLATFORM_HOME"]) / "services" / "redis" / "redis.log"
    assert result.stderr.strip().splitlines() == [f"services: redis did not come up: see {log}"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SERVICES", "postgres kafkaa"), ("DATA_PLATFORM_REDIS_PORT", "port")],
)
def test_a_wrong_setting_is_one_line_and_exit_2(env, variable, value):
    result = services({**env, variable: value}, "up")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert variable in result.stderr


def test_a_pid_file_whose_pid_came_round_again_reads_as_exited(tmp_path):
    """services-down must not signal a stranger's process group, nor up take it for the
    service: a recorded pid now held by a process younger than the record is not the service."""
    pid_file = tmp_path / "server.pid"
    spawn([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "s.log", pid_file, {})
    try:
        pid = read_pid(pid_file)
        assert pid is not None
        # The same pid, recorded as started an hour before the process now holding it.
        recorded = float(pid_file.read_text().split()[1])
        pid_file.write_text(f"{pid} {recorded - 3600}\n")
        assert read_pid(pid_file) is None
        terminate_group(pid_file)  # a no-op on a stranger: it must still be running
        assert pid_alive(pid)
        pid_file.write_text(f"{pid}\n")  # a server's own pid file: the pid alone
        assert read_pid(pid_file) == pid
    finally:
        pid_file.write_text(f"{pid} {recorded}\n")
        terminate_group(pid_file)
    assert not pid_alive(pid)
