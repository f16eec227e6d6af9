"""Redis from the apt package: the Celery broker, with a config file generated at each start.

Every client needs the password (`requirepass`): on 127.0.0.1 any user of the machine reaches
the port, and a Celery worker runs whatever step message the broker hands it, so a broker
without one let any local user run code as the platform. The password is generated at the
first start into `password` (mode 0600) in the state folder, like PostgreSQL's, and reaches
clients only through the broker URL that `make -s services-env` exports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from data_platform.services.base import HOST, AptPackage
from data_platform.services.config import REDIS_PORT_VARIABLE, ServicesConfig
from data_platform.services.process import (
    ServiceError,
    ensure_secret,
    read_pid,
    read_secret,
    spawn,
    terminate_group,
    write_secret,
)
from data_platform.settings import CELERY_BROKER_VARIABLE


def _binary(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise ServiceError(
            f"redis: {name} not found: install the apt package redis-server (make test does)"
        )
    return found


def config_string(value: str) -> str:
    """`value` as one argument of a redis.conf line: double-quoted, each byte outside printable
    ASCII, and `"` and `\\`, as a `\\xHH` escape (Redis's own parser decodes them). Unquoted, a
    home with a space in its path made the `dir` line "wrong number of arguments", and Redis
    never started in that home."""
    escaped = "".join(
        chr(byte) if 0x20 <= byte < 0x7F and chr(byte) not in '"\\' else f"\\x{byte:02x}"
        for byte in os.fsencode(value)
    )
    return f'"{escaped}"'


@dataclass(frozen=True)
class Redis:
    config: ServicesConfig
    name: str = "redis"
    # redis-cli, the health probe, comes with it (redis-tools, a dependency).
    apt_packages: ClassVar[tuple[AptPackage, ...]] = (
        AptPackage("redis-server", lambda: _binary("redis-server")),
    )

    @property
    def folder(self) -> Path:
        return self.config.state_dir(self.name)

    @property
    def log_file(self) -> Path:
        return self.folder / "redis.log"

    @property
    def pid_file(self) -> Path:
        return self.folder / "redis.pid"

    @property
    def port(self) -> int:
        return self.config.redis_port

    @property
    def ports(self) -> dict[str, int]:
        return {REDIS_PORT_VARIABLE: self.port}

    @property
    def password_file(self) -> Path:
        return self.folder / "password"

    @property
    def password(self) -> str:
        """The password, as generated at the server's first start (token_urlsafe: URL-safe)."""
        return read_secret(self.password_file, self.name)

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{HOST}:{self.port}/0"

    def _write_config(self) -> Path:
        # An append-only file, fsynced every second: Redis holds the step messages in flight and
        # their results, and a run's process waits on them. Lost in a restart, a step's result
        # never comes and its run waits forever with a live process (run monitoring sees nothing
        # wrong). RDB snapshots add nothing to that.
        path = self.folder / "redis.conf"
        write_secret(  # it holds the password
            path,
            "\n".join(
                [
                    f"requirepass {self.password}",
                    f"bind {HOST}",
                    f"port {self.port}",
                    "protected-mode yes",
                    f"dir {config_string(str(self.folder))}",
                    "daemonize no",
                    'save ""',
                    "appendonly yes",
                    "appendfsync everysec",
                    'logfile ""',
                ]
            ),
        )
        return path

    def launch(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        ensure_secret(self.password_file)
        command = [_binary("redis-server"), str(self._write_config())]
        spawn(command, self.log_file, self.pid_file, dict(os.environ))

    def stop(self) -> None:
        terminate_group(self.pid_file)

    def is_running(self) -> bool:
        return read_pid(self.pid_file) is not None

    def is_up(self) -> bool:
        if not self.is_running():
            return False
        try:
            # The password in the environment, not in argv, where `ps` shows it to everyone.
            result = subprocess.run(
                [_binary("redis-cli"), "-h", HOST, "-p", str(self.port), "ping"],
                capture_output=True,
                text=True,
                check=False,
                timeout=5,
                env={**os.environ, "REDISCLI_AUTH": self.password},
            )
        except subprocess.TimeoutExpired:
            # Something else holds the port and never answers the Redis protocol.
            return False
        return result.stdout.strip() == "PONG"

    def env(self) -> dict[str, str]:
        return {CELERY_BROKER_VARIABLE: self.url}
