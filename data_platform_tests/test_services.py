"""The services mechanism as `make services-up|services-down|services-env` drive it: a subprocess
of `python -m data_platform.services`, on free ports, in a home of its own."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import yaml

from data_platform.services import __main__ as services_main
from data_platform.services.base import refuse_taken_ports, start
from data_platform.services.celery_workers import CeleryWorkers
from data_platform.services.config import load_services_config
from data_platform.services.instance import CONNECT_TIMEOUT_SECONDS
from data_platform.services.kafka_broker import KafkaBroker
from data_platform.services.lock import exclusive, lock_file
from data_platform.services.packages import apt_packages
from data_platform.services.postgres import Postgres, _binary, _make_traversable
from data_platform.services.process import (
    SPAWN_DELAY_VARIABLE,
    ServiceError,
    create_once,
    pid_alive,
    read_pid,
    spawn,
    terminate_group,
    wait_until,
    write_atomically,
)
from data_platform.services.registry import SERVICE_NAMES, build_services, parse_selection
from data_platform.services.spark_cluster import (
    MASTER_PORT_VARIABLE,
    WORKER_UI_PORT_VARIABLE,
    SparkCluster,
)
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
    status = services(env, "status")
    assert (status.stdout.splitlines(), status.returncode) == (["postgres: up", "redis: up"], 0)

    home = Path(env["DATA_PLATFORM_HOME"])
    exports = dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1)
        for line in services(env, "env").stdout.splitlines()
    )
    assert exports["DAGSTER_HOME"] == str(home / "services" / "dagster_home")
    assert exports["DAGSTER_PG_PORT"] == str(pg_port)
    redis_password = (home / "services" / "redis" / "password").read_text().strip()
    assert len(redis_password) >= 32
    broker = f"redis://:{redis_password}@127.0.0.1:{redis_port}/0"
    assert exports["DATA_PLATFORM_CELERY_BROKER"] == broker
    # Any user of the machine reaches 127.0.0.1: without the password, Redis serves nothing
    # (a worker runs whatever step message the broker hands it).
    anonymous = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(redis_port), "ping"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"},
    )
    assert "NOAUTH" in anonymous.stdout + anonymous.stderr
    for secret in ("password", "redis.conf"):
        assert stat.S_IMODE((home / "services" / "redis" / secret).stat().st_mode) == 0o600
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
    # Down is exit 3 (LSB's "not running"): a script can test it (it was 0 either way).
    status = services(env, "status")
    assert (status.stdout.splitlines(), status.returncode) == (["postgres: down", "redis: down"], 3)


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
        if key not in ("scheme", "params")
    )
    assert storage["postgres"]["postgres_db"]["params"] == {
        "options": "-c timezone=UTC",
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
    }


@pytest.mark.parametrize("service", ["redis", "postgres"])
def test_a_port_another_program_holds_is_one_line_naming_it_and_the_setting(env, service):
    """Something else listens on the service's port, so its server cannot bind it: the line
    was "did not come up: see <log>" (postgres: "did not start"), the cause in the log."""
    variable = f"DATA_PLATFORM_{service.upper()}_PORT"
    port = int(env[variable])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = services({**env, "SERVICES": service}, "up")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"services: {service}: 127.0.0.1:{port} is taken by another program: stop it, or set "
        f"{variable} to a free port"
    ]
    assert services({**env, "SERVICES": service}, "up").returncode == 0  # the port freed


def test_a_spark_port_another_program_holds_is_named_not_one_its_live_master_holds(tmp_path):
    """The worker's UI port taken: the worker exited, the master ran on, and the line said the
    master's port was "taken by another program", its setting to change (the master held it)."""
    ports = {variable: free_port() for variable in SparkCluster(load_services_config({})).ports}
    environ = {"DATA_PLATFORM_HOME": str(tmp_path), **{k: str(v) for k, v in ports.items()}}
    cluster = SparkCluster(load_services_config(environ))
    master_pid = cluster.folder / "master.pid"
    cluster.folder.mkdir(parents=True)
    spawn(["sleep", "60"], cluster.folder / "master.log", master_pid, os.environ)
    assert wait_until(lambda: read_pid(master_pid) is not None, 5)
    listeners = []
    try:
        # The master's own port (held by it, alive) and the worker's (another program's).
        for variable in (MASTER_PORT_VARIABLE, WORKER_UI_PORT_VARIABLE):
            listener = socket.socket()
            listeners.append(listener)
            listener.bind(("127.0.0.1", ports[variable]))
            listener.listen()
        with pytest.raises(ServiceError) as taken:
            refuse_taken_ports(cluster)
    finally:
        for listener in listeners:
            listener.close()
        terminate_group(master_pid)
    assert str(taken.value) == (
        f"spark: 127.0.0.1:{ports[WORKER_UI_PORT_VARIABLE]} is taken by another program: stop "
        f"it, or set {WORKER_UI_PORT_VARIABLE} to a free port"
    )


def test_a_service_that_does_not_come_up_is_one_line_naming_it_and_its_log(tmp_path):
    """A server that exits at once, its ports free: its log says why."""
    exits_at_once = SimpleNamespace(
        name="exits",
        log_file=tmp_path / "exits.log",
        ports={"EXITS_PORT": free_port()},
        launch=lambda: None,
        is_up=lambda: False,
        is_running=lambda: False,
    )
    with pytest.raises(ServiceError) as failed:
        start(exits_at_once, timeout=1)
    assert str(failed.value) == f"exits did not come up: see {tmp_path / 'exits.log'}"


def test_a_running_service_that_does_not_answer_is_never_started_twice(env):
    """A server still starting (here: stopped with SIGSTOP) is not up but running: `up` started
    a second one, which failed to bind and overwrote the pid file, so `down` missed the first,
    left serving as an orphan."""
    redis = {**env, "SERVICES": "redis"}
    assert services(redis, "up").returncode == 0
    pid_file = Path(env["DATA_PLATFORM_HOME"]) / "services" / "redis" / "redis.pid"
    first = read_pid(pid_file)
    [server] = build_services(load_services_config(redis), ["redis"])
    os.kill(first, signal.SIGSTOP)
    try:
        with pytest.raises(ServiceError, match="redis is running but does not answer"):
            start(server, timeout=3)
        assert read_pid(pid_file) == first
    finally:
        os.kill(first, signal.SIGCONT)
    assert services(redis, "down").returncode == 0
    assert not pid_alive(first)
    assert not bound_addresses(int(env["DATA_PLATFORM_REDIS_PORT"]))


def test_redis_keeps_its_data_and_log_to_its_owner_whatever_the_umask(env):
    """Redis's append-only file holds every Celery message (run and step payloads) and its log
    what the server saw: under the login's default umask (022) both were readable by every user
    of the machine, while the password beside them is 0600."""
    redis = {**env, "SERVICES": "redis"}
    up = subprocess.run(
        [sys.executable, "-m", "data_platform.services", "up"],
        env=redis, capture_output=True, text=True, timeout=120, umask=0o022,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    folder = Path(env["DATA_PLATFORM_HOME"]) / "services" / "redis"
    aof = folder / "appendonlydir"
    state = [aof, *aof.iterdir(), folder / "redis.log"]
    assert len(state) > 2  # the AOF's manifest and files
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state}
    assert {name: oct(mode) for name, mode in modes.items() if mode & 0o077} == {}
    assert services(redis, "down").returncode == 0


def test_redis_starts_in_a_home_whose_path_has_spaces_quotes_and_accents(env):
    """redis.conf's `dir` line held the folder unquoted: a home with a space in its path was
    "wrong number of arguments" in redis.log, and Redis never came up in that home."""
    with services_home('data platform\'s "homé" \\ ') as home:
        redis = {**env, "DATA_PLATFORM_HOME": str(home), "SERVICES": "redis"}
        try:
            up = services(redis, "up")
            assert up.returncode == 0, up.stderr
            assert (home / "services" / "redis" / "appendonlydir").is_dir()
        finally:
            assert services(redis, "down").returncode == 0


@pytest.mark.parametrize("action", ["up", "down", "env", "status"])
def test_a_services_folder_it_cannot_use_is_one_line_naming_it(env, action):
    """A folder the services cannot write or read (one root made, a read-only disk; here a file
    in the place of redis's folder, which stops root as well) was a traceback."""
    blocker = Path(env["DATA_PLATFORM_HOME"]) / "services" / "redis"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("")
    result = services({**env, "SERVICES": "redis"}, action)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    # `up` says first that the log could not be capped (base.start), then stops on the folder.
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("services: [Errno 20] Not a directory: ")
    assert str(blocker) in line


@pytest.mark.parametrize(
    ("error", "advice"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "see `make services-status`"),
        (PermissionError(13, "Permission denied", "/srv/home/services"), "free space"),
    ],
)
def test_a_system_error_gets_the_advice_of_its_kind(env, monkeypatch, capsys, error, advice):
    """Only an error naming a path is the disk's: a refused connection that escaped a
    service's own probe was told to free space."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def fails(*_args) -> None:
        raise error

    monkeypatch.setattr(services_main, "_up", fails)
    assert services_main.main(["up"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"services: {error}: ")
    assert advice in line
    assert ("free space" in line) == (error.filename is not None)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SERVICES", "postgres kafkaa"), ("DATA_PLATFORM_REDIS_PORT", "port")],
)
def test_a_wrong_setting_is_one_line_and_exit_2(env, variable, value):
    result = services({**env, variable: value}, "up")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert variable in result.stderr


def test_two_services_set_to_one_port_is_a_wrong_setting_before_anything_starts(env):
    """Redis set to PostgreSQL's port: PostgreSQL started, then Redis failed to bind, "taken by
    another program" naming this stack's own PostgreSQL, which was left running."""
    same = {**env, "DATA_PLATFORM_REDIS_PORT": env["DATA_PLATFORM_POSTGRES_PORT"]}
    result = services(same, "up")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"services: DATA_PLATFORM_POSTGRES_PORT and DATA_PLATFORM_REDIS_PORT are both "
        f"{env['DATA_PLATFORM_POSTGRES_PORT']}: set them to different ports"
    ]
    assert services(env, "status").stdout.splitlines() == ["postgres: down", "redis: down"]


@pytest.mark.skipif(not Path("/usr/lib/jvm").is_dir(), reason="no Java: Spark cannot start")
def test_a_wrong_spark_port_starts_none_of_its_processes(env):
    """The endpoint's port was read only when its command was built, after the master and the
    worker had started: exit 2, and half a cluster (~450 MB) left running."""
    spark = {**env, "SERVICES": "spark", "DATA_PLATFORM_SPARK_CONNECT_PORT": "0"}
    spark |= {
        variable: str(free_port())
        for variable in (
            "DATA_PLATFORM_SPARK_MASTER_PORT",
            "DATA_PLATFORM_SPARK_MASTER_UI_PORT",
            "DATA_PLATFORM_SPARK_WORKER_UI_PORT",
        )
    }
    try:
        result = services(spark, "up")
        assert result.returncode == 2
        assert "DATA_PLATFORM_SPARK_CONNECT_PORT='0'" in result.stderr
        assert not SparkCluster(load_services_config(spark)).has_processes()
    finally:
        services(spark, "down")


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


def test_a_wall_clock_step_does_not_make_a_running_server_read_as_exited(tmp_path, monkeypatch):
    """A VM's clock step moves the boot time psutil adds to a start time: compared in wall-clock
    time, a live server read as exited and `up` failed beside it (seen in CI)."""
    pid_file = tmp_path / "server.pid"
    spawn([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "s.log", pid_file, {})
    try:
        pid = read_pid(pid_file)
        assert pid is not None
        booted = psutil.boot_time()
        monkeypatch.setattr(psutil._pslinux, "boot_time", lambda: booted + 5)
        assert read_pid(pid_file) == pid
    finally:
        monkeypatch.undo()
        terminate_group(pid_file)
    assert not pid_alive(pid)


def test_a_pid_file_of_the_version_before_still_names_its_running_server(tmp_path):
    """Pid files recorded wall-clock starts before they recorded ticks since boot: read as
    exited after an upgrade, `down` left the servers running and `up` started second copies."""
    pid_file = tmp_path / "server.pid"
    spawn([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "s.log", pid_file, {})
    pid = read_pid(pid_file)
    try:
        pid_file.write_text(f"{pid} {psutil.Process(pid).create_time()}\n")  # as it was written
        assert read_pid(pid_file) == pid
        pid_file.write_text(f"{pid} {psutil.Process(pid).create_time() - 3600}\n")
        assert read_pid(pid_file) is None  # its pid came round again: still told apart
        pid_file.write_text(f"{pid} {psutil.Process(pid).create_time()}\n")
    finally:
        terminate_group(pid_file)
    assert not pid_alive(pid)


# Rewrites a state file, alternating two texts of 4 MB, until it is killed.
REWRITE_FOREVER = (
    "import itertools, sys; from pathlib import Path; "
    "from data_platform.services.process import write_atomically\n"
    "texts = ['a' * (4 << 20), 'b' * (4 << 20)]\n"
    "for i in itertools.count(): write_atomically(Path(sys.argv[1]), texts[i % 2], 0o644)\n"
)


def test_a_state_file_killed_mid_write_holds_the_old_text_or_the_new(tmp_path):
    """pg_hba.conf, emptied by a kill in the middle of its rewrite, read as trusting no one while
    the password file existed: nothing mended it, and no start of PostgreSQL let anyone in."""
    state = tmp_path / "state"
    state.write_text("before")
    for delay in [0.0, 0.005, 0.01, 0.02, 0.05, 0.1]:
        writer = subprocess.Popen([sys.executable, "-c", REWRITE_FOREVER, str(state)], cwd=REPO)
        assert wait_until(lambda: state.read_text(encoding="ascii") != "before", 30, 0.001)
        time.sleep(delay)
        writer.kill()
        writer.wait()
        assert state.read_text(encoding="ascii") in {"a" * (4 << 20), "b" * (4 << 20)}
        state.write_text("before")
    # What the kills interrupted: a temp file, never the state file itself.
    assert {p.name for p in tmp_path.iterdir()} - {"state"}


def test_a_state_file_is_replaced_not_rewritten(tmp_path):
    """A reader of the old file (the server, or a kill's survivor) sees it whole; the new one
    has exactly the mode asked for, whatever the umask, and no temp file is left beside it."""
    state = tmp_path / "state"
    state.write_text("old text")
    previous_umask = os.umask(0o077)
    try:
        with state.open() as reader:
            write_atomically(state, "new text", 0o644)
            assert reader.read() == "old text"
    finally:
        os.umask(previous_umask)
    assert state.read_text() == "new text"
    assert stat.S_IMODE(state.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["state"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root writes files of other users")
def test_a_state_file_keeps_its_owner(tmp_path):
    """As root, pg_hba.conf rewritten by root and owned by it stopped the `postgres` user's
    server from reading it."""
    state = tmp_path / "pg_hba.conf"
    state.write_text("host all all 127.0.0.1/32 trust\n")
    shutil.chown(state, "postgres", "postgres")
    write_atomically(state, "host all all 127.0.0.1/32 scram-sha-256\n", 0o600)
    assert (state.owner(), state.group()) == ("postgres", "postgres")


# `python -m data_platform.services up`, killed -9 the moment the Popen of a server returns.
UP_KILLED_AFTER_POPEN = (
    "import os, signal, subprocess\n"
    "from data_platform.services.__main__ import main\n"
    "class KilledOnceStarted(subprocess.Popen):\n"
    "    def __init__(self, *args, **kwargs):\n"
    "        super().__init__(*args, **kwargs)\n"
    "        if kwargs.get('start_new_session'):  # a server, not a probe\n"
    "            os.kill(os.getpid(), signal.SIGKILL)\n"
    "subprocess.Popen = KilledOnceStarted\n"
    "main(['up'])\n"
)


def test_up_killed_right_after_starting_a_server_leaves_it_recorded(env):
    """`up` killed between a server's start and its pid file left the server running with no
    record: `down` could not stop it, and every `up` started a second Redis that failed to bind
    ("redis did not come up") until someone killed the orphan by hand."""
    redis = {**env, "SERVICES": "redis"}
    killed = subprocess.run(
        [sys.executable, "-c", UP_KILLED_AFTER_POPEN], env=redis, cwd=REPO, timeout=60
    )
    assert killed.returncode == -signal.SIGKILL
    folder = Path(env["DATA_PLATFORM_HOME"]) / "services" / "redis"
    orphan = read_pid(folder / "redis.pid")
    assert orphan is not None

    again = services(redis, "up")
    # redis-server rewrites its command line; `spawn` starts it in its state folder.
    servers = [p.pid for p in psutil.process_iter(["cwd"]) if p.info["cwd"] == str(folder)]
    try:
        assert again.returncode == 0, again.stderr
        assert servers == [orphan]  # adopted, never doubled
        assert (folder / "redis.log").read_text().count("Redis is starting") == 1
        assert services(redis, "down").returncode == 0
        assert not pid_alive(orphan)
        assert not bound_addresses(int(env["DATA_PLATFORM_REDIS_PORT"]))
    finally:
        for server in servers:  # what `down` could not see: never left running
            with contextlib.suppress(ProcessLookupError):
                os.kill(server, signal.SIGKILL)


def test_a_server_whose_pid_file_cannot_be_written_is_never_started(tmp_path):
    """No server runs without its record: one `down` could not find would serve on, an orphan."""
    pid_file = tmp_path / "missing" / "server.pid"
    with pytest.raises(subprocess.SubprocessError):
        spawn(["sleep", "600"], tmp_path / "s.log", pid_file, {})
    assert not [p for p in psutil.process_iter(["cwd"]) if p.info["cwd"] == str(tmp_path)]


def exported(env: dict[str, str]) -> dict[str, str]:
    """What `make -s services-env` exports in `env`, by name."""
    result = services(env, "env")
    assert result.returncode == 0, result.stderr
    return dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1)
        for line in result.stdout.splitlines()
    )


def psql(port: int, password: str | None, sql: str = "SELECT 1") -> subprocess.CompletedProcess:
    """psql as any client of the machine would run it: the password (if any) from PGPASSWORD,
    no password file, never a prompt (-w)."""
    client_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    client_env["PGPASSFILE"] = "/nonexistent/.pgpass"
    if password is not None:
        client_env["PGPASSWORD"] = password
    command = ["psql", "-w", "-h", "127.0.0.1", "-p", str(port), "-U", "data_platform"]
    return subprocess.run(
        [*command, "-At", "-c", sql, "postgres"],
        env=client_env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_postgres_asks_every_client_for_the_password_that_services_env_exports(env):
    env = {**env, "SERVICES": "postgres"}
    port = int(env["DATA_PLATFORM_POSTGRES_PORT"])
    before = services(env, "env")  # no server has made a password yet: one line, no export
    assert before.returncode == 1 and not before.stdout
    assert before.stderr.count("\n") == 1 and "services-up" in before.stderr

    first = services(env, "up")
    assert first.returncode == 0, first.stderr
    password_file = Path(env["DATA_PLATFORM_HOME"]) / "services" / "postgres" / "password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = password_file.read_text().strip()
    assert len(password) >= 32
    exports = exported(env)
    assert exports["DAGSTER_PG_PASSWORD"] == password
    assert (exports["DAGSTER_PG_HOST"], exports["DAGSTER_PG_PORT"]) == ("127.0.0.1", str(port))

    assert "no password supplied" in psql(port, None).stderr
    assert "password authentication failed" in psql(port, "wrong").stderr
    assert psql(port, password).stdout.strip() == "1"
    # Every rule of pg_hba.conf asks for the password: none trusts a client.
    rules = psql(port, password, "SELECT DISTINCT auth_method FROM pg_hba_file_rules")
    assert rules.stdout.split() == ["scram-sha-256"]
    # Referenced from the generated dagster.yaml, never written there.
    dagster_home = Path(exports["DAGSTER_HOME"])
    assert all(password not in f.read_text() for f in dagster_home.rglob("*") if f.is_file())

    # A password file that no longer matches the server: one line naming it.
    password_file.write_text("not-the-password\n")
    again = services(env, "up")
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1
    assert f"refused the password in {password_file}" in again.stderr


def test_down_after_postgres_was_killed_is_fine(env):
    """A postmaster killed with -9 (or a reboot) leaves postmaster.pid: `down` ran pg_ctl stop,
    which could not signal it, and failed with nothing running."""
    server = Postgres(load_services_config(env))
    server.data_dir.mkdir(parents=True)
    gone = subprocess.Popen(["sleep", "60"])
    gone.kill()
    gone.wait()
    (server.data_dir / "postmaster.pid").write_text(f"{gone.pid}\n{server.data_dir}\n")
    assert services({**env, "SERVICES": "postgres"}, "down").returncode == 0


def test_down_stops_the_workers_of_a_larger_count_too(env):
    """Workers started with DATA_PLATFORM_CELERY_WORKERS=4 and stopped with the default 2:
    workers 3 and 4 went on taking steps after `down` said it was done."""
    workers = CeleryWorkers(
        load_services_config({**env, "DATA_PLATFORM_CELERY_WORKERS": "2"}), dict
    )
    pid_files = [workers.folder / f"data-platform-{i}.pid" for i in range(1, 5)]
    for pid_file in pid_files:  # stand-ins: a worker is a process group led by its pid
        spawn(["sleep", "60"], workers.log_file, pid_file, {})
    pids = [read_pid(pid_file) for pid_file in pid_files]
    workers.stop()
    assert not any(pid_alive(pid) for pid in pids)
    assert not list(workers.folder.glob("*.pid"))


def test_a_port_served_by_another_homes_postgres_is_named(env, tmp_path):
    """Another home's server on our port answered, so ours was never started; its refused login
    read as our password gone wrong, and the advice (reset the password) failed every time."""
    first = {**env, "SERVICES": "postgres"}
    assert services(first, "up").returncode == 0
    try:
        second = {**first, "DATA_PLATFORM_HOME": str(tmp_path / "another_home")}
        refused = services(second, "up")
        assert refused.returncode == 1
        [line] = refused.stderr.strip().splitlines()
        assert "is served by another server" in line and "DATA_PLATFORM_POSTGRES_PORT" in line
    finally:
        assert services(first, "down").returncode == 0


KEPT = 'CREATE DATABASE "kept"'


def old_version_folder(env: dict[str, str]) -> None:
    """A data folder as the version before passwords made it, with its server running (initdb
    with `--auth trust`, pg_ctl started with the same options) and a database of its own."""
    server = Postgres(load_services_config(env))
    server.folder.mkdir(parents=True)
    as_owner = []
    if os.geteuid() == 0:
        _make_traversable(server.folder.parent)
        shutil.chown(server.folder, "postgres", "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    for command in (
        [_binary("initdb"), "-D", str(server.data_dir), "-U", "data_platform", "--auth", "trust"],
        [_binary("pg_ctl"), "start", "-D", str(server.data_dir), "-l", str(server.log_file),
         "-o", f"-p {server.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''",
         "-w"],
    ):  # fmt: skip
        subprocess.run([*as_owner, *command], check=True, capture_output=True, cwd="/")
    created = psql(server.port, None, KEPT)  # trust: no password asked
    assert created.returncode == 0, created.stderr


def password_file_lost(env: dict[str, str]) -> None:
    """A data folder of this version, running, with a database of its own, whose password file
    was then deleted."""
    assert services(env, "up").returncode == 0
    password_file = Path(env["DATA_PLATFORM_HOME"]) / "services" / "postgres" / "password"
    port = int(env["DATA_PLATFORM_POSTGRES_PORT"])
    assert psql(port, password_file.read_text().strip(), KEPT).returncode == 0
    password_file.unlink()


@pytest.mark.parametrize("make_folder", [old_version_folder, password_file_lost])
def test_a_folder_without_a_usable_password_gets_one_at_the_next_start_and_keeps_its_data(
    env, make_folder
):
    """The server runs: `up` says in one line to restart it (its clients hold an environment
    without the new password). Restarted, it asks for a new password; its databases are kept."""
    env = {**env, "SERVICES": "postgres"}
    port = int(env["DATA_PLATFORM_POSTGRES_PORT"])
    make_folder(env)

    refused = services(env, "up")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert "`make services-down`, then `make services-up`" in refused.stderr

    assert services(env, "down").returncode == 0
    restarted = services(env, "up")
    assert restarted.returncode == 0, restarted.stderr
    password = exported(env)["DAGSTER_PG_PASSWORD"]
    assert "no password supplied" in psql(port, None).stderr
    query = "SELECT datname FROM pg_database WHERE datname = 'kept'"
    assert psql(port, password, query).stdout.strip() == "kept"


def test_terminate_group_ends_the_children_of_a_leader_killed_9(tmp_path):
    """A worker's recorded pid killed -9 leaves its children running in its group (a Celery
    pool process mid-step): `down` signalled the group only while its leader lived, so the
    children went on and `up` started a second worker beside them."""
    pid_file, child_file = tmp_path / "server.pid", tmp_path / "child.pid"
    leader_code = (
        "import pathlib, subprocess, sys, time; "
        "child = subprocess.Popen(['sleep', '600']); "
        "pathlib.Path(sys.argv[1]).write_text(str(child.pid)); time.sleep(600)"
    )
    spawn([sys.executable, "-c", leader_code, str(child_file)], tmp_path / "s.log", pid_file, {})
    leader = read_pid(pid_file)
    assert wait_until(lambda: child_file.exists() and child_file.read_text(), 30)
    child = int(child_file.read_text())
    try:
        os.kill(leader, signal.SIGKILL)
        assert wait_until(lambda: not pid_alive(leader), 30)
        assert pid_alive(child)
        terminate_group(pid_file)
        assert not pid_alive(child)
        assert not pid_file.exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def test_a_record_from_before_a_reboot_names_nothing(tmp_path):
    """After a reboot a worker's pid file names a pid, or a process group, that is now a
    stranger's: `up` ended what it took for a killed worker's group, the stranger's."""
    pid_file = tmp_path / "worker.pid"
    spawn(["sleep", "600"], tmp_path / "s.log", pid_file, {})
    pid, started, boot = pid_file.read_text().split()
    try:
        pid_file.write_text(f"{pid} {started} {boot[:-1]}{'0' if boot[-1] != '0' else '1'}\n")
        assert read_pid(pid_file) is None
        terminate_group(pid_file)
        assert pid_alive(int(pid))  # never signalled
    finally:
        os.kill(int(pid), signal.SIGKILL)


def stranger() -> subprocess.Popen:
    """A live process that is not a postmaster; as root it runs as the server's user, whom the
    server's own commands (pg_ctl, run as that user) may signal."""
    as_server_user = {"user": "postgres"} if os.geteuid() == 0 else {}
    return subprocess.Popen(["sleep", "600"], cwd="/", **as_server_user)


def test_a_postmaster_pid_now_held_by_another_process_is_stale(env):
    """A postmaster killed -9 (or a reboot) leaves postmaster.pid; once its pid is another
    process's, `down` had pg_ctl SIGINT that stranger, and `up` could not start the server."""
    env = {**env, "SERVICES": "postgres"}
    assert services(env, "up").returncode == 0
    assert services(env, "down").returncode == 0
    server = Postgres(load_services_config(env))
    pid_file = server.data_dir / "postmaster.pid"
    other = stranger()
    try:
        pid_file.write_text(f"{other.pid}\n{server.data_dir}\n")
        assert not server.is_running()
        down = services(env, "down")
        assert down.returncode == 0, down.stderr
        assert other.poll() is None  # never signalled
        up = services(env, "up")
        assert up.returncode == 0, up.stderr
        assert other.poll() is None
        assert server.is_running() and read_pid(pid_file) != other.pid
    finally:
        other.kill()
        other.wait()


def test_a_postmaster_running_but_not_yet_answering_is_waited_for_not_started_again(
    env, monkeypatch
):
    """A postmaster still starting or in crash recovery (here: stopped, then let go after the
    first probe) got a second `pg_ctl start`, which failed on its lock file, and `up` too."""
    env = {**env, "SERVICES": "postgres"}
    assert services(env, "up").returncode == 0
    server = Postgres(load_services_config(env))
    postmaster = read_pid(pid_file := server.data_dir / "postmaster.pid")
    probes = []
    answers = Postgres._answers

    def first_probe_then_resume(self):
        answered = answers(self)
        if not probes:
            os.kill(postmaster, signal.SIGCONT)
        probes.append(answered)
        return answered

    monkeypatch.setattr(Postgres, "_answers", first_probe_then_resume)
    os.kill(postmaster, signal.SIGSTOP)
    try:
        server.launch()
    finally:
        os.kill(postmaster, signal.SIGCONT)
    assert probes[0] is False and probes[-1] is True
    assert read_pid(pid_file) == postmaster


def test_up_killed_with_its_initdb_then_up_again_makes_a_whole_cluster(env):
    """The first `up`'s process group killed mid-initdb (Ctrl-C in a terminal, a container
    stopped) left a data folder with PG_VERSION and no whole cluster, which every later `up`
    took for one: "postgres did not start" or "database postgres does not exist", for good."""
    env = {**env, "SERVICES": "postgres"}
    folder = Postgres(load_services_config(env)).folder
    up = subprocess.Popen(
        [sys.executable, "-m", "data_platform.services", "up"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def initdb_runs() -> bool:
        commands = (p.info["cmdline"] or [] for p in psutil.process_iter(["cmdline"]))
        return any("initdb" in c[0] and str(folder) in " ".join(c) for c in commands if c)

    try:
        assert wait_until(initdb_runs, 60, 0.01)
        time.sleep(0.3)  # into its work: it takes 1-2 s
    finally:
        os.killpg(up.pid, signal.SIGKILL)
        up.wait()
    again = services(env, "up")
    assert again.returncode == 0, again.stderr
    password = exported(env)["DAGSTER_PG_PASSWORD"]
    assert psql(int(env["DATA_PLATFORM_POSTGRES_PORT"]), password).stdout.strip() == "1"


@pytest.mark.skipif(os.geteuid() != 0, reason="as root only: the server runs as `postgres`")
def test_a_failed_initdb_leaves_a_log_the_server_can_still_write(env):
    """As root, initdb's failure was written to postgres.log as root: `pg_ctl --log` (run as
    the `postgres` user) could not open it, and every later `up` failed, the cause fixed."""
    env = {**env, "SERVICES": "postgres"}
    server = Postgres(load_services_config(env))
    server.data_dir.mkdir(parents=True)  # root's, and not empty: initdb refuses it
    (server.data_dir / "left-over").write_text("x")
    failed = services(env, "up")
    assert failed.returncode == 1
    assert "initdb failed" in failed.stderr and server.log_file.stat().st_size > 0
    shutil.rmtree(server.data_dir)  # the cause, fixed
    up = services(env, "up")
    assert up.returncode == 0, up.stderr


def test_services_env_exports_what_runs_not_what_a_selection_names(env, tmp_path):
    """After `SERVICES="postgres redis" make services-up`, a plain `make -s services-env`
    exported DATA_PLATFORM_EXECUTOR=celery with no worker (steps waited forever); with a Kafka
    broker alone it failed on PostgreSQL's missing password; a half-dead Spark cluster lost
    DATA_PLATFORM_ENGINE=spark without a word. Stand-ins (sleeping processes) hold the pid
    files of the workers, the broker and the cluster."""
    config = load_services_config(env)
    plain = {k: v for k, v in env.items() if k != "SERVICES"}
    stand_ins = []

    def stand_in(pid_file: Path) -> None:
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        spawn(["sleep", "600"], tmp_path / "stand_in.log", pid_file, {})
        stand_ins.append(pid_file)

    try:
        stand_in(KafkaBroker(config).pid_file)  # a fresh home: nothing else has started
        result = services(plain, "env")
        assert result.returncode == 0, result.stderr
        exports = exported(plain)
        assert "DATA_PLATFORM_KAFKA_BOOTSTRAP" in exports
        assert not {"DAGSTER_HOME", "DAGSTER_PG_PASSWORD"} & set(exports)

        assert services(env, "up").returncode == 0  # SERVICES="postgres redis"
        exports = exported(plain)
        assert "DAGSTER_PG_PASSWORD" in exports and "DATA_PLATFORM_CELERY_BROKER" in exports
        assert "DATA_PLATFORM_EXECUTOR" not in exports  # no worker runs

        workers = CeleryWorkers(config, dict)
        stand_in(workers.folder / "data-platform-1.pid")  # 1 of the 2 workers
        stand_in(SparkCluster(config).folder / "master.pid")  # 1 of its 3 processes
        result = services(plain, "env")
        assert result.returncode == 0, result.stderr
        assert [line.split(" is half running")[0] for line in result.stderr.splitlines()] == [
            "services: spark",
            "services: celery",
        ]
        # `make services-down` first, as the lines said, stopped PostgreSQL and Redis too.
        assert "run `make services-up`, which starts again" in result.stderr
        assert "run `SERVICES=spark make services-up`, which starts again" in result.stderr
        exports = exported(plain)
        assert not {"DATA_PLATFORM_EXECUTOR", "DATA_PLATFORM_ENGINE"} & set(exports)

        stand_in(workers.folder / "data-platform-2.pid")
        assert exported(plain)["DATA_PLATFORM_EXECUTOR"] == "celery"
    finally:
        for pid_file in stand_ins:
            terminate_group(pid_file)


def test_a_spark_cluster_running_without_its_secret_is_one_line_to_restart_it(env, tmp_path):
    """A cluster started by a version before the secret takes any local user. `up` found it
    running and answering and left it so; a secret made then would not be its own. Stand-ins
    (sleeping processes) hold its three pid files: `up` and `env` each say, in one line, to
    stop it and start it again, and start or export nothing."""
    env = {**env, "SERVICES": "spark"}
    cluster = SparkCluster(load_services_config(env))
    pid_files = [cluster.folder / f"{process}.pid" for process in ("master", "worker", "connect")]
    cluster.folder.mkdir(parents=True)
    try:
        for pid_file in pid_files:
            spawn(["sleep", "600"], tmp_path / "stand_in.log", pid_file, {})
        for action in ("up", "env"):
            result = services(env, action)
            [line] = result.stderr.splitlines()
            assert result.returncode == 1 and "DATA_PLATFORM_SPARK_REMOTE" not in result.stdout
            assert line.startswith("services: spark: the cluster runs without its secret"), line
            assert line.endswith("run `make services-down`, then `SERVICES=spark make services-up`")
        assert not cluster.secret_file.exists()
    finally:
        for pid_file in pid_files:
            terminate_group(pid_file)


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("capsh"), reason="root's ptrace right is what is dropped"
)
def test_root_without_ptrace_rights_still_sees_its_postgres(env):
    """Root without CAP_SYS_PTRACE (Docker's default) cannot read the postmaster's exe and cwd
    links: the running server looked gone, and `env` dropped its settings."""
    env = {**env, "SERVICES": "postgres"}
    assert services(env, "up").returncode == 0
    command = f"exec {sys.executable} -m data_platform.services env"
    seen = subprocess.run(
        ["capsh", "--drop=cap_sys_ptrace", "--", "-c", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "DAGSTER_PG_PASSWORD" in seen.stdout, seen.stderr


def in_background(env: dict[str, str], action: str) -> subprocess.Popen[str]:
    """`python -m data_platform.services ACTION` left running, its stderr piped: for a test
    to race another command against it."""
    command = [sys.executable, "-m", "data_platform.services", action]
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)


def test_two_ups_at_once_start_one_server(env):
    """Two `up`s at once both found no server, both started one and both wrote its pid file:
    the loser failed to bind, and the pid file could name it, so `down` missed the winner."""
    # Both find no server within the wait between that check and the start (a test-only hook).
    redis = {**env, "SERVICES": "redis", SPAWN_DELAY_VARIABLE: "3"}
    ups = [in_background(redis, "up") for _ in range(2)]
    outcomes = [(up.wait(timeout=120), up.stderr.read()) for up in ups]
    folder = Path(env["DATA_PLATFORM_HOME"]) / "services" / "redis"
    # redis-server rewrites its command line; `spawn` starts it in its state folder.
    servers = [p.pid for p in psutil.process_iter(["cwd"]) if p.info["cwd"] == str(folder)]
    recorded = read_pid(folder / "redis.pid")
    try:
        assert [code for code, _ in outcomes] == [0, 0], outcomes
        log = (folder / "redis.log").read_text()
        assert log.count("Redis is starting") == 1, log  # one server was ever started
        assert servers == [recorded]
    finally:
        for orphan in set(servers) - {recorded}:  # what `down` cannot see: never left running
            os.kill(orphan, signal.SIGKILL)


def test_a_down_waiting_for_an_up_of_an_opt_in_service_stops_that_service_too(env):
    """A plain `down` read which opt-in services run before it took the lock: behind a
    `SERVICES=spark up` (Kafka here: the same opt-in, and it starts in a second) it found none
    running, stopped the default services only and left the one the `up` then started."""
    env = {**env, "DATA_PLATFORM_KAFKA_PORT": str(free_port())}
    config = load_services_config(env)
    # The broker starts seconds after the `up` took the lock: the `down` reads in that time.
    up = in_background({**env, "SERVICES": "kafka", SPAWN_DELAY_VARIABLE: "5"}, "up")
    try:
        lock, holder = lock_file(config), f"`up` (pid {up.pid}, "
        assert wait_until(lambda: lock.exists() and lock.read_text().startswith(holder), 60)
        down = services({k: v for k, v in env.items() if k != "SERVICES"}, "down")
        assert up.wait(timeout=120) == 0, up.stderr.read()
        assert down.returncode == 0, down.stderr
        assert "services: waiting for `up`" in down.stderr  # it did wait behind the `up`
        assert not KafkaBroker(config).is_running()
    finally:
        up.wait(timeout=120)
        services({**env, "SERVICES": "kafka"}, "down")  # what the old `down` left running


def test_a_command_waiting_for_the_lock_gives_up_in_one_line_naming_the_holder(env):
    """A second `up` waits for the first; one that never ends must not keep it waiting forever."""
    config = load_services_config(env)
    holder_code = (
        "import sys, time; from data_platform.services.config import load_services_config; "
        "from data_platform.services.lock import exclusive\n"
        "with exclusive(load_services_config(), 'up'):\n"
        "    print('held', flush=True); time.sleep(600)"
    )
    # In a zone 3.5 hours off UTC: the time it names is UTC, and says so.
    holder = subprocess.Popen(
        [sys.executable, "-c", holder_code],
        env={**env, "TZ": "America/St_Johns"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(ServiceError) as refused, exclusive(config, "down", timeout=1):
            pass
        since = re.match(
            rf"`up` \(pid {holder.pid}, since (\d\d):(\d\d):(\d\d)Z\)", str(refused.value)
        )
        assert since, refused.value
        now = datetime.now(UTC)
        held = int(since[1]) * 3600 + int(since[2]) * 60 + int(since[3])
        assert (now.hour * 3600 + now.minute * 60 + now.second - held) % 86400 < 120
        assert f"still holds {lock_file(config)} after 1 s" in str(refused.value)
    finally:
        holder.kill()
        holder.wait()
    with exclusive(config, "down", timeout=5):  # its holder gone, the lock is free again
        pass


@pytest.mark.parametrize(
    ("selection", "packages"),
    [
        ("", ["postgresql", "redis-server"]),  # the default: postgres, redis, celery
        ("postgres redis", ["postgresql", "redis-server"]),
        ("kafka", []),
        ("spark", ["openjdk-17-jre-headless"]),
    ],
)
def test_each_service_names_its_own_apt_packages(selection, packages):
    assert [package.name for package in apt_packages(parse_selection(selection))] == packages


def test_the_suite_needs_every_services_packages_and_its_own():
    wanted = [package.name for package in apt_packages(SERVICE_NAMES, suite=True)]
    assert wanted == [
        "postgresql",
        "redis-server",
        "openjdk-17-jre-headless",
        "prometheus",
        "chromium",
        "chromium-driver",
    ]


def path_of(tmp_path: Path, programs: list[str]) -> str:
    """A PATH holding only these programs (links to the machine's): any other is missing."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for program in programs:
        (folder / program).symlink_to(shutil.which(program))
    return str(folder)


def test_packages_names_what_the_machine_lacks(env, tmp_path):
    """Prometheus's promtool off PATH: only the suite (`--all`) misses it, whatever SERVICES."""
    environ = {**env, "PATH": path_of(tmp_path, ["redis-server"])}
    assert services(environ, "packages").stdout.split() == []  # postgres redis
    command = [sys.executable, "-m", "data_platform.services", "packages", "--all"]
    result = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["prometheus"], result.stderr


def test_services_up_needs_only_the_packages_of_the_services_it_starts(env, tmp_path):
    """`make services-up` depended on every apt package the suite needs (chromium, Java,
    Prometheus...) whatever SERVICES named: a machine with Redis but no Prometheus ran apt-get
    for `SERVICES=redis` as root, and stopped asking for it otherwise. Here promtool is off PATH
    (no apt-get either) and the make target starts Redis; `-o` keeps make from installing."""
    programs = ["id", "ls", "grep", "find", "redis-server", "redis-cli"]
    environ = {k: v for k, v in env.items() if not k.startswith(("MAKE", "MFLAGS"))}
    environ.update(PATH=path_of(tmp_path, programs), SERVICES="redis")
    make = [shutil.which("make"), "-s", "-C", str(REPO), "-o", "install", "-o", ".venv/.installed"]
    result = subprocess.run(
        [*make, "services-up"], env=environ, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    assert services(environ, "status").stdout.splitlines() == ["redis: up"]


def test_a_file_created_once_by_many_at_a_time_is_one_of_theirs_whole(tmp_path):
    """`materialize` and `metrics` write the repo's dagster.yaml into a home that has none, and
    they start together: a fixed temp name and a rename let one publish another's half-written
    file (the other's rename then failed, FileNotFoundError) and a reader find it empty (the
    review counted 71 and 6 in 600 races). Here 12 processes create one file at once, 8 times:
    each time it holds one writer's text whole, and no temp file is left."""
    script = (
        "import sys, time\nfrom pathlib import Path\n"
        "from data_platform.services.process import create_once\n"
        "start = float(sys.argv[2])\n"
        "while time.time() < start: pass\n"
        "create_once(Path(sys.argv[1]), sys.argv[3] * 100_000)\n"
        "print(len(Path(sys.argv[1]).read_text()))\n"
    )
    for attempt in range(8):
        path = tmp_path / f"config-{attempt}.yaml"
        start = str(time.time() + 1.5)
        writers = [
            subprocess.Popen(
                [sys.executable, "-c", script, str(path), start, letter],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for letter in "abcdefghijkl"
        ]
        outcomes = [(w.communicate(timeout=60), w.returncode) for w in writers]
        assert [code for _, code in outcomes] == [0] * 12, [err for (_, err), _ in outcomes]
        assert {out.strip() for (out, _), _ in outcomes} == {"100000"}
        text = path.read_text()
        assert len(set(text)) == 1 and len(text) == 100_000
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"config-{i}.yaml" for i in range(8)
    )
    create_once(tmp_path / "config-0.yaml", "another")  # an existing file is kept
    assert len((tmp_path / "config-0.yaml").read_text()) == 100_000


def test_the_workers_start_after_every_service_whose_variables_they_are_handed():
    """`worker_env` hands the workers the variables of the services running when they start:
    started before the Spark cluster of the same `up`, they ran a Spark run's steps on DuckDB."""
    assert parse_selection("celery spark kafka redis postgres") == [
        "postgres",
        "redis",
        "kafka",
        "spark",
        "celery",
    ]
