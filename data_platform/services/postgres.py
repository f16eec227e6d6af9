"""PostgreSQL from the apt package, run as a user process with its data under the services folder.

initdb and postgres refuse to run as root: as root, every server command runs as the `postgres`
system user that the apt package creates, in a state folder that user owns.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from data_platform.services.config import ServicesConfig
from data_platform.services.process import ServiceError, read_pid

HOST = "127.0.0.1"
# The role initdb creates, and the database of the Dagster instance.
SUPERUSER = "data_platform"
INSTANCE_DB = "dagster"
SYSTEM_USER = "postgres"


def _binary(name: str) -> str:
    """A PostgreSQL server program: Debian keeps them in /usr/lib/postgresql/<major>/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not candidates:
        raise ServiceError(
            f"postgres: {name} not found: install the apt package postgresql (make test does)"
        )
    return str(candidates[-1])


def _make_traversable(folder: Path) -> None:
    """Let the postgres user reach its folder: add o+x (search, not read) where a parent lacks it."""
    for parent in [folder, *folder.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


@dataclass(frozen=True)
class Postgres:
    config: ServicesConfig
    name: str = "postgres"

    @property
    def folder(self) -> Path:
        return self.config.state_dir(self.name)

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def log_file(self) -> Path:
        return self.folder / "postgres.log"

    @property
    def port(self) -> int:
        return self.config.postgres_port

    def _as_owner(self, *args: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", SYSTEM_USER, "--", *args]
        return list(args)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._as_owner(*args), capture_output=True, text=True, check=False, cwd="/"
        )

    def _prepare_folder(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            _make_traversable(self.folder.parent)
            shutil.chown(self.folder, SYSTEM_USER, SYSTEM_USER)
        if (self.data_dir / "PG_VERSION").exists():
            return
        # Trust on 127.0.0.1 only: a developer's local instance. Production uses a managed
        # server and DAGSTER_PG_PASSWORD (see the README).
        result = self._run(
            _binary("initdb"),
            "--pgdata",
            str(self.data_dir),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-sync",
        )
        if result.returncode != 0:
            self.log_file.write_text(result.stdout + result.stderr)
            raise ServiceError(f"postgres: initdb failed: see {self.log_file}")

    def launch(self) -> None:
        self._prepare_folder()
        if not self._answers():
            self._start_server()
        self._create_instance_db()

    def _start_server(self) -> None:
        # Settings on the command line, not in postgresql.conf, so a changed port applies at
        # the next start. No Unix socket: its default folder belongs to the system's cluster.
        options = f"-p {self.port} -c listen_addresses={HOST} -c unix_socket_directories=''"
        result = self._run(
            _binary("pg_ctl"),
            "start",
            "--pgdata",
            str(self.data_dir),
            "--log",
            str(self.log_file),
            "--options",
            options,
            "--wait",
            "--timeout",
            "60",
        )
        if result.returncode != 0:
            raise ServiceError(f"postgres did not start: see {self.log_file}")

    def _create_instance_db(self) -> None:
        from sqlalchemy import text

        with admin_engine(self.port).connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :db"), {"db": INSTANCE_DB}
            ).scalar()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{INSTANCE_DB}"'))

    def stop(self) -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        result = self._run(
            _binary("pg_ctl"), "stop", "--pgdata", str(self.data_dir), "--mode", "fast", "--wait"
        )
        if result.returncode != 0 and (self.data_dir / "postmaster.pid").exists():
            raise ServiceError(f"postgres did not stop: see {self.log_file}")

    def is_running(self) -> bool:
        return read_pid(self.data_dir / "postmaster.pid") is not None

    def is_up(self) -> bool:
        return self._answers() and self._instance_db_exists()

    def _answers(self) -> bool:
        result = subprocess.run(
            [_binary("pg_isready"), "--host", HOST, "--port", str(self.port), "--timeout", "2"],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def _instance_db_exists(self) -> bool:
        # Up means ready for Dagster: the server answers and the instance's database exists.
        from sqlalchemy import text
        from sqlalchemy.exc import OperationalError

        try:
            with admin_engine(self.port).connect() as conn:
                return bool(
                    conn.execute(
                        text("SELECT 1 FROM pg_database WHERE datname = :db"), {"db": INSTANCE_DB}
                    ).scalar()
                )
        except OperationalError:
            return False

    def env(self) -> dict[str, str]:
        # Read by the generated dagster.yaml through `env:` entries, never written into it.
        return {
            "DAGSTER_PG_HOST": HOST,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": SUPERUSER,
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": INSTANCE_DB,
        }


def database_url(port: int, database: str) -> str:
    """A SQLAlchemy URL of a database on the local server (trust authentication, no password)."""
    return f"postgresql://{SUPERUSER}@{HOST}:{port}/{database}"


def admin_engine(port: int):
    """An autocommit engine on the maintenance database: CREATE/DROP DATABASE need autocommit."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine(
        database_url(port, "postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
