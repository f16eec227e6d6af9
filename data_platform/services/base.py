"""The interface every service implements, and the start-and-wait step they share."""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from data_platform.services.logs import cap_log, logs_of
from data_platform.services.process import ServiceError, wait_until
from data_platform.settings import SettingsError

# Every service binds this address only.
HOST = "127.0.0.1"

# Long enough for a Celery worker to import the Definitions on a busy 2-core machine.
START_TIMEOUT_SECONDS = 90.0


@dataclass(frozen=True)
class AptPackage:
    """A Debian package a service runs from, found by the lookup the service itself starts it
    with: `make` asks apt (and root) only for one that lookup does not find, so a machine with
    the program from elsewhere (a developer's) never needs apt for it."""

    name: str
    # A path when the program is there; None, or ServiceError (the service's own), when not.
    lookup: Callable[[], object]

    def present(self) -> bool:
        try:
            return bool(self.lookup())
        except ServiceError:
            return False


class Service(Protocol):
    name: str
    # What `make services-up` installs for it (services/packages.py); empty when pip brings it.
    apt_packages: ClassVar[tuple[AptPackage, ...]]

    @property
    def log_file(self) -> Path: ...

    def launch(self) -> None:
        """Start the server's processes (not called when it already answers)."""

    def stop(self) -> None:
        """Stop it; nothing running is fine."""

    def is_up(self) -> bool:
        """Whether it answers its own client's health probe."""

    def is_running(self) -> bool:
        """Whether its processes are alive (a server that exited will never answer)."""

    def env(self) -> dict[str, str]:
        """The variables that point the CLI, the UI, tests and workers at it."""

    # Optional: `ports`, {setting: port} of the ports it binds on 127.0.0.1; `log_files`, every
    # log it writes when there are several (`log_file` otherwise); `stale()`, why its running
    # processes must be started again, or None.


def check_ports(services: Sequence[Service]) -> None:
    """Read the port settings of every service to start, before any starts; SettingsError when
    one is wrong or two are the same. Spark's and Kafka's are read when a process is launched:
    a wrong DATA_PLATFORM_SPARK_CONNECT_PORT stopped `up` (exit 2) with the master and the worker
    it had started left running, and a port set twice failed the second server to bind, the
    first one of this very stack named as "another program"."""
    seen: dict[int, str] = {}
    for service in services:
        for variable, port in getattr(service, "ports", {}).items():
            if port in seen:
                raise SettingsError(
                    f"{seen[port]} and {variable} are both {port}: set them to different ports"
                )
            seen[port] = variable


def start(service: Service, timeout: float | None = None) -> None:
    """Start a service unless it already answers, then wait until it does: idempotent.

    A service may declare a longer `start_timeout` (Spark: JVMs and a metastore to create).
    Its logs are capped first (services/logs.py), whether it runs or not.
    """
    if timeout is None:
        timeout = getattr(service, "start_timeout", START_TIMEOUT_SECONDS)
    # Every `up` caps the logs, of a server left running too: nothing else ever shrank them.
    # A log that cannot be capped (a full disk) is said, and stops no server from starting.
    for log_file in logs_of(service):
        try:
            cap_log(log_file)
        except OSError as err:
            print(f"{service.name}: {log_file} was not capped: {err}", file=sys.stderr)
    if reason := _stale(service):
        print(f"{service.name}: restarting: {reason}", file=sys.stderr)
        service.stop()
    elif service.is_up():
        return
    # A process of its own already running (still starting, or hung) is waited for, never
    # doubled (`process.spawn`); a service may still refuse it in `launch` (PostgreSQL does).
    already_running = service.is_running()
    service.launch()
    wait_until(lambda: service.is_up() or not service.is_running(), timeout, interval=0.5)
    if service.is_up():
        return
    if already_running and service.is_running():
        raise ServiceError(
            f"{service.name} is running but does not answer: see {service.log_file}, then "
            "`make services-down` and `make services-up`"
        )
    refuse_taken_ports(service)
    raise ServiceError(f"{service.name} did not come up: see {service.log_file}")


def _stale(service: Service) -> str | None:
    """Why a service's running processes must be started again (the Celery workers, after the
    code changed), or None."""
    stale = getattr(service, "stale", None)
    return stale() if stale else None


def refuse_taken_ports(service: Service) -> None:
    """Say which port another program holds, when that is why a server did not start: "did not
    come up: see <log>" left the cause in the log and the fix unsaid."""
    if service.is_running():
        return  # what answers on its ports may be its own processes
    # A service of several processes (Spark) leaves out the ports of those still alive.
    ports_of_exited = getattr(service, "ports_of_exited", None)
    ports = ports_of_exited() if ports_of_exited else getattr(service, "ports", {})
    for variable, port in ports.items():
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            raise ServiceError(
                f"{service.name}: {HOST}:{port} is taken by another program: stop it, or set "
                f"{variable} to a free port"
            )
