"""The Celery workers as `make services-up|services-down` start and stop them, real processes
in a home of their own: where the broker's password goes, and what a killed worker leaves."""

from __future__ import annotations

import functools
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from data_platform.code_version import code_digest, loaded_code_version
from data_platform.services.process import group_alive, read_pid
from data_platform_tests.conftest import services_env, services_home
from data_platform_tests.helpers import next_version_of_the_code, run_services

services = functools.partial(run_services, timeout=300)


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    with services_home("data_platform_services_celery_test_") as home:
        environ = services_env(home, DATA_PLATFORM_CELERY_WORKERS="1")
        try:
            yield environ
        finally:
            services(environ, "down")


def readable_by_others(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_mode & 0o044:
            yield path


def test_no_file_others_can_read_holds_the_brokers_password(env):
    """`dagster-celery worker start` wrote the broker URL, Redis's password in it, into a new
    0644 module under the instance's folder at each worker start, never deleted: any local user
    could then queue a step that a worker runs as the platform."""
    home = Path(env["DATA_PLATFORM_HOME"])
    first = services({**env, "SERVICES": "postgres redis"}, "up")
    assert first.returncode == 0, first.stderr
    password = (home / "services" / "redis" / "password").read_text().strip()
    # What the version before left behind: removed at the next start.
    leftover = home / "services" / "dagster_home" / "dagster_celery" / "config" / "0123abcd"
    leftover.mkdir(parents=True)
    (leftover / "dagster_celery_config.py").write_text(f"broker_url = 'redis://:{password}@'\n")

    up = services(env, "up")
    assert up.returncode == 0, up.stderr  # the workers answer `celery inspect ping`
    exposed = [
        p for p in readable_by_others(home / "services") if password in p.read_text("latin-1")
    ]
    assert not exposed
    assert not leftover.exists()
    worker_log = home / "services" / "celery" / "workers.log"
    assert "data-platform-1@" in worker_log.read_text()  # the scan read the workers' output


def test_down_after_a_worker_was_killed_leaves_nothing_of_it(env):
    """The pid file named `dagster-celery worker start`, whose child was the real worker: after a
    kill -9 of the recorded pid, `down` signalled nothing (the leader was gone) and the worker
    went on taking steps; `up` then started a second worker of the same name."""
    up = services(env, "up")
    assert up.returncode == 0, up.stderr
    pid_file = Path(env["DATA_PLATFORM_HOME"]) / "services" / "celery" / "data-platform-1.pid"
    leader = read_pid(pid_file)
    assert leader is not None and group_alive(leader)
    os.kill(leader, signal.SIGKILL)

    down = services(env, "down")
    assert down.returncode == 0, down.stderr
    assert not group_alive(leader)
    assert stat.S_ISDIR((pid_file.parent).stat().st_mode) and not pid_file.exists()


def test_status_with_redis_killed_under_live_workers_says_what_is_down(env):
    """Celery's ping raised kombu's OperationalError when Redis was gone: `status` was a
    108-line traceback. Now the workers read as not answering, and `up` restarts Redis alone."""
    up = services(env, "up")
    assert up.returncode == 0, up.stderr
    redis = read_pid(Path(env["DATA_PLATFORM_HOME"]) / "services" / "redis" / "redis.pid")
    assert redis is not None
    os.kill(redis, signal.SIGKILL)
    status = services(env, "status")
    assert "Traceback" not in status.stderr, status.stderr
    # postgres, redis, celery
    assert status.stdout.split()[1::2] == ["up", "down", "down"], status.stdout
    # Workers without their broker take no step: a shell pointed at them waited for good.
    exports = services(env, "env")
    assert "DATA_PLATFORM_EXECUTOR" not in exports.stdout
    assert exports.stderr.strip() == (
        "services: celery runs but redis does not, so its variables are not exported: run "
        "`make services-up`"
    )
    again = services(env, "up")
    assert again.returncode == 0, again.stderr
    assert services(env, "status").stdout.split()[1::2] == ["up", "up", "up"]
    assert "DATA_PLATFORM_EXECUTOR=celery" in services(env, "env").stdout


def test_up_after_the_code_changed_starts_the_workers_again(env, tmp_path):
    """Workers run the code of their start: after a change, `up` left them running (they
    answered), and their steps ran the code as it was. Workers started from a copy of the
    package one comment apart are started again by the next `up` from the repository; an `up`
    with nothing changed starts nothing again."""
    # Only the workers run the copy: this `python -m` imports the package of its working folder.
    copy = next_version_of_the_code(tmp_path / "code", env)
    first = services(copy, "up")
    assert first.returncode == 0, first.stderr
    pid_file = Path(env["DATA_PLATFORM_HOME"]) / "services" / "celery" / "data-platform-1.pid"
    started = read_pid(pid_file)
    assert started is not None

    again = services(env, "up")
    assert again.returncode == 0, again.stderr
    older = code_digest(tmp_path / "code" / "data_platform", tmp_path / "code" / "dbt")
    assert (
        f"celery: restarting: its workers run the code {older}, this checkout's is "
        f"{loaded_code_version()}"
    ) in again.stderr
    restarted = read_pid(pid_file)
    assert restarted not in (None, started) and not group_alive(started)

    unchanged = services(env, "up")
    assert unchanged.returncode == 0, unchanged.stderr
    assert "restarting" not in unchanged.stderr and read_pid(pid_file) == restarted
