"""Celery workers that execute Dagster steps (dagster-celery), over the Redis broker.

Each worker is its own process group (its own `worker machine`), one step at a time: steps
that write the DuckDB warehouse are serialised by the `duckdb` pool anyway, and a second pool
process per worker would hold another copy of the Definitions in memory for nothing.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from data_platform.code_version import loaded_code_version
from data_platform.services.base import AptPackage
from data_platform.services.config import ServicesConfig
from data_platform.services.instance import instance_home
from data_platform.services.process import ServiceError, read_pid, spawn, terminate_group
from data_platform.settings import CELERY_BROKER_VARIABLE, SettingsError, masked

# Built like the executor's app, the broker read from the environment (see celery_app.py).
APP = "data_platform.services.celery_app"
EXECUTOR_ENV = {"DATA_PLATFORM_EXECUTOR": "celery"}


@dataclass(frozen=True)
class CeleryWorkers:
    config: ServicesConfig
    # The environment the workers run in: the platform's settings and the services' variables
    # (instance, broker), so that a step loads the same Definitions as the process that sent it.
    # Read when needed, not when built: PostgreSQL's password exists once it has started.
    worker_env: Callable[[], Mapping[str, str]]
    name: str = "celery"
    apt_packages: ClassVar[tuple[AptPackage, ...]] = ()  # Celery comes from pip

    @property
    def folder(self) -> Path:
        return self.config.state_dir(self.name)

    @property
    def log_file(self) -> Path:
        return self.folder / "workers.log"

    @property
    def worker_names(self) -> list[str]:
        return [f"data-platform-{i}" for i in range(1, self.config.celery_workers + 1)]

    @property
    def node_names(self) -> set[str]:
        """The names the workers answer by: each is started as `--hostname <name>@%h`, %h the host name."""
        return {f"{name}@{socket.gethostname()}" for name in self.worker_names}

    def _pid_file(self, worker: str) -> Path:
        return self.folder / f"{worker}.pid"

    def stale(self) -> str | None:
        """Why the running workers must be started again: they run the code of their start,
        and the checkout's has changed since (their steps of a run of the new code are refused:
        resources/run_pinned.py), or None. Each answering worker is asked which code it runs;
        one that does not answer is left to `is_up`."""
        broker = self.worker_env().get(CELERY_BROKER_VARIABLE)
        if not broker or not self.has_processes():
            return None
        ours = {
            name: code for name, code in workers_code(broker).items() if name in self.node_names
        }
        older = sorted({code for code in ours.values() if code != loaded_code_version()})
        if not older:
            return None
        return (
            f"its workers run the code {', '.join(older)}, this checkout's is "
            f"{loaded_code_version()}"
        )

    @property
    def leftover_config(self) -> Path:
        """Where `dagster-celery worker start` (what the version before ran) wrote a config
        module per worker start, the broker URL with Redis's password in it, world-readable."""
        return instance_home(self.config) / "dagster_celery" / "config"

    def _remove_leftovers(self) -> None:
        shutil.rmtree(self.leftover_config, ignore_errors=True)
        (self.folder / "worker.yaml").unlink(missing_ok=True)

    def launch(self) -> None:
        worker_env = self.worker_env()
        if not worker_env.get(CELERY_BROKER_VARIABLE):
            raise ServiceError(f"celery: {CELERY_BROKER_VARIABLE} is not set: start redis too")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._remove_leftovers()
        bin_dir = str(Path(sys.executable).parent)
        # The venv's bin first on PATH: steps run its programs (dbt) as the CLI's process does.
        env = {**worker_env, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        for worker in self.worker_names:
            pid_file = self._pid_file(worker)
            if read_pid(pid_file) is not None:
                continue
            # A worker whose main process died (-9) may have left its pool process running a
            # step: ended first, or `down` would never reach it once the pid file is replaced.
            terminate_group(pid_file)
            # `celery` itself, not `dagster-celery worker start`: the recorded pid is the worker
            # (that wrapper's child was out of reach of `down` once the wrapper died), and the
            # broker comes from the environment (APP), never from a file.
            command = [
                f"{bin_dir}/celery",
                "--app",
                APP,
                "worker",
                "--loglevel",
                "INFO",
                "--hostname",
                f"{worker}@%h",
                # Importing the Definitions before the worker takes tasks: the first step does
                # not pay for it, and a broken import shows in the log at start.
                "--include",
                "data_platform.definitions",
                "--concurrency=1",
                "--prefetch-multiplier=1",
            ]
            spawn(command, self.log_file, pid_file, env)

    def stop(self) -> None:
        # Every worker started, not only those of the current count: started with 4 and
        # stopped with 2, workers 3 and 4 went on taking steps after `down` said it was done.
        for pid_file in sorted(self.folder.glob("data-platform-*.pid")):
            terminate_group(pid_file)
        self._remove_leftovers()

    def is_running(self) -> bool:
        return all(read_pid(self._pid_file(worker)) is not None for worker in self.worker_names)

    def has_processes(self) -> bool:
        """Whether any worker started (whatever the count now) is alive: something to stop."""
        return any(read_pid(p) is not None for p in self.folder.glob("data-platform-*.pid"))

    def is_up(self) -> bool:
        if not self.is_running():
            return False
        broker = self.worker_env().get(CELERY_BROKER_VARIABLE)
        return bool(broker) and self.node_names <= answering_workers(broker)

    def env(self) -> dict[str, str]:
        return dict(EXECUTOR_ENV)


def check_broker_answers(broker: str) -> None:
    """Raise SettingsError unless the Celery broker at `broker` takes a connection. Left to the
    run, a broker that was down failed it with Dagster's stack traces (133 lines) and a last
    line naming neither the setting nor its fix."""
    from kombu import Connection
    from kombu.exceptions import OperationalError

    try:
        with Connection(broker, connect_timeout=5) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=5)
    except (OSError, OperationalError) as err:
        raise SettingsError(
            f"{CELERY_BROKER_VARIABLE}={masked(broker)!r} does not answer ({err}): start it "
            '(`make services-up`), or point the variable at a running broker (eval "$(make -s '
            'services-env)")'
        ) from None


def _broadcast(broker: str, command: str) -> list[dict[str, object]]:
    """The workers' replies to a Celery control `command` through the broker, {name: answer}
    each; none when the broker does not answer (kombu's OperationalError: Redis killed while
    the workers ran made `status` a 108-line traceback)."""
    from celery import Celery
    from kombu.exceptions import OperationalError

    app = Celery(broker=broker)
    app.conf.broker_connection_retry_on_startup = False
    app.conf.broker_connection_timeout = 2
    try:
        return app.control.broadcast(command, reply=True, timeout=1.0) or []
    except (OSError, OperationalError):
        return []
    finally:
        app.close()


def answering_workers(broker: str) -> set[str]:
    """The names of the workers that answer `celery inspect ping` through the broker."""
    return {name for reply in _broadcast(broker, "ping") for name in reply}


# What a worker of a version that does not know the `code_version` command is said to run.
UNKNOWN_CODE = "of an earlier version (it cannot say which)"


def workers_code(broker: str) -> dict[str, str]:
    """Each answering worker's code version (celery_app.code_version), by name."""
    return {
        name: answer.get("code", UNKNOWN_CODE) if isinstance(answer, dict) else UNKNOWN_CODE
        for reply in _broadcast(broker, "code_version")
        for name, answer in reply.items()
    }
