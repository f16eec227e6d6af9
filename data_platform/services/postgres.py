"""PostgreSQL from the apt package, run as a user process with its data under the services folder.

initdb and postgres refuse to run as root: as root, every server command runs as the `postgres`
system user that the apt package creates, in a state folder that user owns.

Every connection needs the superuser's password (scram-sha-256): on 127.0.0.1 any user of the
machine can reach the port, so a `trust` rule would let each of them in as superuser. The
password is generated at the first start into `password` (mode 0600) in the state folder, and
reaches other processes only through their environment: `env()` exports it as
DAGSTER_PG_PASSWORD, which the generated dagster.yaml reads (`env:`) and backups hand to pg_dump
as PGPASSWORD. Never on a command line, where `ps` shows it to every user.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import psutil

from data_platform.services.base import HOST, AptPackage, refuse_taken_ports
from data_platform.services.config import POSTGRES_PORT_VARIABLE, ServicesConfig
from data_platform.services.process import (
    ServiceError,
    ensure_secret,
    read_pid,
    read_secret,
    wait_until,
    write_atomically,
)

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

# The role initdb creates, and the database of the Dagster instance.
SUPERUSER = "data_platform"
INSTANCE_DB = "dagster"
SYSTEM_USER = "postgres"
PASSWORD_VARIABLE = "DAGSTER_PG_PASSWORD"
AUTH_METHOD = "scram-sha-256"
# How long `up` waits for a server of ours already running (starting, recovering) to answer.
START_WAIT_SECONDS = 60.0
# What libpq says when the server refuses a password, or asks for one the client lacks.
REFUSED = ("password authentication failed", "no password supplied")


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


def _rule(line: str) -> list[str]:
    """The fields of a pg_hba.conf line, its comment left out."""
    return line.split("#", 1)[0].split()


def _trusts(hba: str) -> bool:
    return any("trust" in _rule(line) for line in hba.splitlines())


def _without_trust(hba: str) -> str:
    """pg_hba.conf with each `trust` rule asking for the password instead; the rest as it was."""
    return "".join(
        re.sub(r"\btrust\b", AUTH_METHOD, line) if "trust" in _rule(line) else line
        for line in hba.splitlines(keepends=True)
    )


def is_refused_password(err: BaseException) -> bool:
    """Whether a failed connection failed for want of the right password."""
    return any(phrase in str(err) for phrase in REFUSED)


@dataclass(frozen=True)
class Postgres:
    config: ServicesConfig
    name: str = "postgres"
    apt_packages: ClassVar[tuple[AptPackage, ...]] = (
        AptPackage("postgresql", lambda: _binary("initdb")),
    )

    @property
    def folder(self) -> Path:
        return self.config.state_dir(self.name)

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def hba_file(self) -> Path:
        return self.data_dir / "pg_hba.conf"

    @property
    def password_file(self) -> Path:
        # Beside the data folder, not in it: pg_basebackup or a copy of data/ leaves it out.
        return self.folder / "password"

    @property
    def log_file(self) -> Path:
        return self.folder / "postgres.log"

    @property
    def port(self) -> int:
        return self.config.postgres_port

    @property
    def ports(self) -> dict[str, int]:
        return {POSTGRES_PORT_VARIABLE: self.port}

    def password(self) -> str:
        """The superuser's password, as generated at the server's first start."""
        return read_secret(self.password_file, self.name)

    def _as_owner(self, *args: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", SYSTEM_USER, "--", *args]
        return list(args)

    def _run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._as_owner(*args), input=stdin, capture_output=True, text=True, check=False, cwd="/"
        )

    def _prepare_folder(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            _make_traversable(self.folder.parent)
            shutil.chown(self.folder, SYSTEM_USER, SYSTEM_USER)
            self._own_log()  # one a failed start of the version before left to root
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        elif _trusts(self.hba_file.read_text()) or not self.password_file.exists():
            self._require_password()

    def _log_failure(self, output: str) -> None:
        """Add a failed command's output to the server's log, which stays the server's user's:
        as root, a log this process created belonged to root, `pg_ctl --log` (run as that user)
        could not open it, and every later start failed even once the cause was fixed."""
        with open(self.log_file, "a") as log:
            log.write(output)
        self._own_log()

    def _own_log(self) -> None:
        if os.geteuid() == 0 and self.log_file.exists():
            shutil.chown(self.log_file, SYSTEM_USER, SYSTEM_USER)

    def _ensure_password_file(self) -> None:
        """A new random password unless the file exists (an initdb that failed half-way made it).

        As root the file belongs to the server's user, like the rest of its folder: initdb,
        running as that user, reads it; root reads any file.
        """
        if ensure_secret(self.password_file) and os.geteuid() == 0:
            shutil.chown(self.password_file, SYSTEM_USER, SYSTEM_USER)

    def _initdb(self) -> None:
        """A new cluster, made in a folder beside the data folder and renamed to it once whole.
        initdb killed half-way (with `up`'s process group) left a data folder with PG_VERSION,
        which every later `up` took for a cluster: "did not start" or "database postgres does
        not exist", for good, until someone removed the folder."""
        self._ensure_password_file()
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            reason = f"{self.data_dir} holds files but no cluster (no PG_VERSION)"
            self._log_failure(reason + "\n")
            raise ServiceError(f"postgres: initdb failed: {reason}: move them away, then run up")
        with contextlib.suppress(FileNotFoundError):
            self.data_dir.rmdir()
        whole = self.data_dir.with_name(self.data_dir.name + ".initdb")
        shutil.rmtree(whole, ignore_errors=True)  # what an initdb killed before left
        # The Unix socket is off (_start_server), so `local` rules match nothing today; they ask
        # for the password too, so that turning the socket on opens no way in without it.
        result = self._run(
            _binary("initdb"),
            "--pgdata",
            str(whole),
            "--username",
            SUPERUSER,
            "--pwfile",
            str(self.password_file),
            f"--auth-host={AUTH_METHOD}",
            f"--auth-local={AUTH_METHOD}",
            "--encoding",
            "UTF8",
            "--no-sync",
        )
        if result.returncode != 0:
            self._log_failure(result.stdout + result.stderr)
            raise ServiceError(f"postgres: initdb failed: see {self.log_file}")
        whole.rename(self.data_dir)

    def _require_password(self) -> None:
        """Give the superuser the password file's password and turn every `trust` rule into a
        password rule: a data folder made by an older version (trust, no password) keeps its
        runs, and one whose password file was lost gets a new password.

        Done on the stopped server (single-user mode), so it never listens while it lets
        anyone in. A running server is left alone with one line saying to restart the services:
        its clients (the Celery workers) hold an environment without the new password, and
        `services-down` stops them too.
        """
        if self.is_running():
            raise ServiceError(
                f"postgres: the running server lets local users in without a password (started "
                f"by an older version) or its password file {self.password_file} is gone: run "
                "`make services-down`, then `make services-up` sets a password and keeps the data"
            )
        self._ensure_password_file()
        # Only the SCRAM hash is stored; exit_on_error makes a failed statement a failed exit,
        # and log_min_error_statement=panic keeps the statement, password included, out of any log.
        quoted = self.password().replace("'", "''")
        statement = f"ALTER ROLE \"{SUPERUSER}\" PASSWORD '{quoted}'\n"
        result = self._run(
            _binary("postgres"),
            "--single",
            "-D",
            str(self.data_dir),
            "-c",
            f"password_encryption={AUTH_METHOD}",
            "-c",
            "exit_on_error=on",
            "-c",
            "log_min_error_statement=panic",
            "postgres",
            stdin=statement,
        )
        if result.returncode != 0:
            self._log_failure(result.stderr)
            raise ServiceError(
                f"postgres: setting the superuser's password failed: see {self.log_file}"
            )
        # After the password: stopped in between, the next start sets it again. Replaced whole
        # (initdb makes it 0600): emptied by a kill mid-write, it read as trusting no one while
        # the password file existed, so nothing mended it and no start let anyone in.
        write_atomically(self.hba_file, _without_trust(self.hba_file.read_text()), 0o600)

    def launch(self) -> None:
        self._prepare_folder()
        if self.is_running():
            # Ours, still starting or in crash recovery: waited for. A second `pg_ctl start`
            # failed on the running server's lock file, and `up` with it.
            wait_until(lambda: self._answers() or not self.is_running(), START_WAIT_SECONDS)
        if not self._answers():
            if self.is_running():
                raise ServiceError(
                    f"postgres is running but does not answer: see {self.log_file}, then "
                    "`make services-down` and `make services-up`"
                )
            self._start_server()
        elif not self.is_running():
            # Another home's server (or the system's): its refused login read as our password
            # gone wrong, and the advice to reset it failed the same way every time.
            raise ServiceError(
                f"postgres: {HOST}:{self.port} is served by another server, not the one of "
                f"{self.data_dir}: stop it, or set {POSTGRES_PORT_VARIABLE} to a free port"
            )
        self._create_instance_db()

    def _start_server(self) -> None:
        # A pid file `is_running` does not take for our postmaster (killed -9, a reboot, its pid
        # since reused) is stale: a postmaster refuses to start while its pid is alive.
        self.pid_file.unlink(missing_ok=True)
        # Settings on the command line, not in postgresql.conf, so a changed port applies at
        # the next start. No Unix socket: its default folder belongs to the system's cluster.
        # Messages in English whatever the locale: a refused password is recognised by them.
        # UTC whatever the machine's zone (initdb writes the OS's into postgresql.conf): Dagster
        # stamps a run with the server's CURRENT_TIMESTAMP and reads it back as UTC.
        options = (
            f"-p {self.port} -c listen_addresses={HOST} -c unix_socket_directories='' "
            "-c lc_messages=C -c timezone=UTC"
        )
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
            refuse_taken_ports(self)
            raise ServiceError(f"postgres did not start: see {self.log_file}")

    def _create_instance_db(self) -> None:
        from sqlalchemy import text

        with self._admin_connection() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :db"), {"db": INSTANCE_DB}
            ).scalar()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{INSTANCE_DB}"'))

    def stop(self) -> None:
        # A postmaster killed (-9, a reboot) leaves its pid file: pg_ctl then fails to signal
        # it, and `down` failed with nothing running. The next start removes a stale one.
        if not self.is_running():
            return
        result = self._run(
            _binary("pg_ctl"), "stop", "--pgdata", str(self.data_dir), "--mode", "fast", "--wait"
        )
        if result.returncode != 0 and self.pid_file.exists():
            raise ServiceError(f"postgres did not stop: see {self.log_file}")

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "postmaster.pid"

    def is_running(self) -> bool:
        """Whether postmaster.pid names a live postmaster of this data folder. Its pid alone is
        not enough: after a kill -9 or a reboot the file stays, its pid may now be any
        process's, and `down` sent that stranger pg_ctl's SIGINT."""
        pid = read_pid(self.pid_file)
        return pid is not None and self._is_postmaster_of_data_dir(pid)

    def _is_postmaster_of_data_dir(self, pid: int) -> bool:
        # The postmaster's program is `postgres`, and it works in its data folder (it changes
        # into it at start).
        try:
            program = Path(os.readlink(f"/proc/{pid}/exe")).name
            folder = os.readlink(f"/proc/{pid}/cwd")
        except PermissionError:
            return self._names_data_dir(pid)
        except OSError:
            return False
        # " (deleted)": the binary was replaced (an apt upgrade) while the server runs.
        return program.split(" ")[0] == "postgres" and folder == os.path.realpath(self.data_dir)

    def _names_data_dir(self, pid: int) -> bool:
        """Root without CAP_SYS_PTRACE (a default Docker container) may not read the links of
        the server's user's process: our own server looked gone (`down` left it running, `env`
        dropped it, `up` removed its pid file). What anyone may read: its name, and the data
        folder pg_ctl named on its command line (`-D`)."""
        try:
            proc = psutil.Process(pid)
            name, args = proc.name(), proc.cmdline()
        except psutil.Error:
            return False
        ours = os.path.realpath(self.data_dir)
        named = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "-D"]
        return name == "postgres" and any(os.path.realpath(d) == ours for d in named)

    def is_up(self) -> bool:
        return (
            self.is_running()
            and self._answers()
            and self._requires_password()
            and self._instance_db_exists()
        )

    def _answers(self) -> bool:
        result = subprocess.run(
            [_binary("pg_isready"), "--host", HOST, "--port", str(self.port), "--timeout", "2"],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def _requires_password(self) -> bool:
        """Whether the data folder asks every client for the password of the password file: not
        so for an older version's (trust) or one whose file was lost, which `launch` mends."""
        try:
            return not _trusts(self.hba_file.read_text()) and self.password_file.exists()
        except FileNotFoundError:
            return False

    def _instance_db_exists(self) -> bool:
        # Up means ready for Dagster: the server answers and the instance's database exists.
        from sqlalchemy import text
        from sqlalchemy.exc import OperationalError

        try:
            with self._admin_connection() as conn:
                return bool(
                    conn.execute(
                        text("SELECT 1 FROM pg_database WHERE datname = :db"), {"db": INSTANCE_DB}
                    ).scalar()
                )
        except OperationalError:
            return False

    @contextlib.contextmanager
    def _admin_connection(self) -> Iterator[Connection]:
        """A connection to the maintenance database; a refused password is one line saying what
        to do, not a traceback, and not a wait until the start times out."""
        from sqlalchemy.exc import OperationalError

        try:
            conn = self.admin_engine().connect()
        except OperationalError as err:
            if is_refused_password(err):
                raise ServiceError(
                    f"postgres: the server on {HOST}:{self.port} refused the password in "
                    f"{self.password_file}: run `make services-down`, remove that file, then "
                    "`make services-up` sets a new one"
                ) from None
            raise
        with conn:
            yield conn

    def database_url(self, database: str) -> str:
        """A SQLAlchemy URL of a database on this server, password included: for tests and
        tools of this process, never for a command line or a file."""
        from sqlalchemy import URL

        url = URL.create(
            "postgresql",
            username=SUPERUSER,
            password=self.password(),
            host=HOST,
            port=self.port,
            database=database,
        )
        return url.render_as_string(hide_password=False)

    def admin_engine(self) -> Engine:
        """An autocommit engine on the maintenance database: CREATE/DROP DATABASE need autocommit."""
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        return create_engine(
            self.database_url("postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool
        )

    def env(self) -> dict[str, str]:
        # Read by the generated dagster.yaml through `env:` entries, never written into it.
        return {
            "DAGSTER_PG_HOST": HOST,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": SUPERUSER,
            PASSWORD_VARIABLE: self.password(),
            "DAGSTER_PG_DB": INSTANCE_DB,
        }
