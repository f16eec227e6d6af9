"""Taking a consistent copy of the platform's state into a local folder, while runs write.

Order matters. The Dagster instance (run history, asset records, sensor cursors) is copied
first and the warehouse second: a cursor older than the warehouse only makes a sensor ask for
a day again, and re-materializing a partition replaces it exactly (no day twice); the other
order could restore a cursor that has seen a file the warehouse never loaded (a day lost).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import sqlalchemy as sa
import yaml

from data_platform.operations.backup_store import BackupError
from data_platform.operations.instance_storage import (
    NAMES,
    PER_STORAGE,
    check_sqlite_inside,
    instance_storage,
)
from data_platform.operations.spark_snapshot import SPARK_WAREHOUSE
from data_platform.orchestration.instance import postgres_database, postgres_retries
from data_platform.resources.duckdb_lock import connect_with_lock_wait, is_lock_conflict
from data_platform.resources.privacy import SALT_FILE
from data_platform.services.postgres import PASSWORD_VARIABLE, REFUSED, is_refused_password
from data_platform.settings import Settings

WAREHOUSE = "warehouse/warehouse.duckdb"
INSTANCE = "dagster_home"
INSTANCE_DUMP = "dagster_instance.pgdump"
SALT = f"settings/{SALT_FILE}"
SETTINGS_RECORD = "settings/environment.json"
# Recorded with their values; any other variable of the platform only as "set" (it may hold a
# password, a token or the salt itself).
PLAIN_VARIABLES = ("DATA_PLATFORM_LANDING", "DATA_PLATFORM_START_DATE", "DATA_PLATFORM_ENGINE")
SQLITE_HEADER = b"SQLite format 3\x00"
# SQLite's side files: their content is inside the backup API's copy of the database.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(len(SQLITE_HEADER)) == SQLITE_HEADER


# The sensor daemon writes a run into runs.db, then the cursor that saw its file into
# schedules.db. Copied in path order (runs.db, then schedules.db), a tick between the two copies
# restored a cursor past a file whose run is not in the backup: that day never loaded. So each
# database is copied before those its rows refer to, whose later copies then hold whatever the
# earlier one names: cursors, then runs, then the event logs of those runs. The event logs (one
# file per run, history/runs/<run id>.db) are listed only once runs.db is copied: listed before,
# a run started in between was in the copy of runs.db without its event log.
COPY_FIRST = ("schedules/schedules.db", "history/runs.db")


def copy_sqlite_instance(dagster_home: Path, target: Path) -> None:
    """Each SQLite database through SQLite's backup API (a consistent copy while Dagster
    writes it), every other file (dagster.yaml, compute logs) as it is: COPY_FIRST's, then the
    rest in path order."""
    for name in COPY_FIRST:
        if (dagster_home / name).is_file():
            _copy_file(dagster_home / name, target / name)
    rest = [p.relative_to(dagster_home) for p in dagster_home.rglob("*") if p.is_file()]
    for relative in sorted(r for r in rest if r.as_posix() not in COPY_FIRST):
        try:
            _copy_file(dagster_home / relative, target / relative)
        except FileNotFoundError:
            # Removed since the listing (log_retention's sweep of old ticks' and runs' logs,
            # Dagster deleting a run's): no longer the instance's, so not the backup's either.
            # It failed the whole backup, blamed on "free space, permissions".
            if (dagster_home / relative).exists():
                raise


def _copy_file(path: Path, copy: Path) -> None:
    if path.name.endswith(SQLITE_SIDE_FILES):
        return
    copy.parent.mkdir(parents=True, exist_ok=True)
    if not _is_sqlite(path):
        shutil.copy2(path, copy)
        return
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
    dest = sqlite3.connect(copy)
    try:
        source.backup(dest)
    finally:
        dest.close()
        source.close()


# For the local services; a dagster.yaml of one's own says which variables it reads.
SERVICES_ENV_HINT = 'for the local services: eval "$(make -s services-env)"'


def _causes(err: BaseException) -> Iterator[BaseException]:
    """`err` and what caused it: dagster-postgres retries a failed connection and raises its
    own exception from SQLAlchemy's, itself from the driver's."""
    cause: BaseException | None = err
    while cause is not None:
        yield cause
        cause = cause.__cause__ or cause.__context__


def _refused_login(err: BaseException) -> bool:
    """Whether a PostgreSQL login refused for its password caused `err`."""
    return any(is_refused_password(cause) for cause in _causes(err))


NOTHING_CHANGED = "nothing was changed"
# libpq's account of a connection that got no answer: where it tried, and why it failed.
_LIBPQ_TARGET = re.compile(
    r'server (?:at "([^"]+)"(?: \([^)]*\))?, port (\d+)|on socket "([^"]+)") failed: ([^\n]+)'
)


# libpq's account of a server that went away while a tool worked (killed, restarted).
_LOST_SERVER = re.compile(
    r"server closed the connection unexpectedly|terminating connection due to [a-z ]+"
)


class InstanceUnreachable(BackupError):
    """The instance's storage could not be used: its PostgreSQL did not answer, or its SQLite
    files could not be written. `problem` says where and why; `then` what became of the
    command's work (a restore's journal finishes what it began)."""

    def __init__(self, problem: str, then: str = NOTHING_CHANGED) -> None:
        self.problem = problem
        super().__init__(f"{problem}; {then}")


def _where_and_why(target: re.Match | None, otherwise: str) -> tuple[str, str]:
    """(" at host:port" or "", why) from libpq's account of a failed connection, `otherwise`
    the reason when it gave none."""
    if target is None:
        return "", otherwise
    return f" at {target[3] or f'{target[1]}:{target[2]}'}", target[4].strip()


def _unanswered(err: BaseException, config: Path) -> InstanceUnreachable | None:
    """The one line for `err` when PostgreSQL never answered (down, a wrong host or port): a
    driver error without the server's word (no SQLSTATE, no FATAL). A server that answered and
    refused (a password, a missing database) is another matter."""
    for cause in _causes(err):
        driver = getattr(cause, "orig", None)
        if not isinstance(cause, sa.exc.OperationalError) or not _from_psycopg(driver):
            continue
        said = str(driver).strip()
        code = getattr(driver, "pgcode", None) or getattr(driver, "sqlstate", None)
        if code or "FATAL" in said:
            return None
        at, why = _where_and_why(_LIBPQ_TARGET.search(said), said.splitlines()[0])
        return InstanceUnreachable(
            f"the Dagster instance's PostgreSQL{at} does not answer ({why}): start it (the local "
            f"one: make services-up), or point {config} at the server that runs "
            f"({SERVICES_ENV_HINT})"
        )
    return None


def _from_psycopg(driver: object) -> bool:
    """Whether a driver error is PostgreSQL's (psycopg 3 or 2): an SQLite one has no SQLSTATE
    either, and a read-only DAGSTER_HOME was told as a PostgreSQL that does not answer."""
    return type(driver).__module__.split(".")[0] in ("psycopg", "psycopg2")


def _unwritable(err: BaseException, config: Path) -> InstanceUnreachable | None:
    """The one line for `err` when the instance's SQLite files could not be opened or written
    (a full disk, a read-only folder): it was blamed on the source database, or on a
    PostgreSQL the instance does not use. Dagster's storage reaches SQLite through SQLAlchemy;
    a backup's own copies call sqlite3 directly, and their errors are the destination's."""
    for cause in _causes(err):
        driver = getattr(cause, "orig", None)
        if isinstance(cause, sa.exc.OperationalError) and isinstance(driver, sqlite3.Error):
            return InstanceUnreachable(
                f"the Dagster instance's storage under {config.parent} cannot be used "
                f"({str(driver).splitlines()[0]}): free space on its disk and make it "
                "writable (DAGSTER_HOME), then run again"
            )
    return None


@contextlib.contextmanager
def open_instance(dagster_home: Path, config: Path | None = None) -> Iterator[dg.DagsterInstance]:
    """The instance of `dagster_home`, used inside `instance_errors` (a backup's and restore's
    queries in the block too). `config`: the dagster.yaml the lines name, when
    `dagster_home`'s is a staged copy (a restore's, removed once done)."""
    config = config or dagster_home / "dagster.yaml"
    with instance_errors(config), dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        yield instance


@contextlib.contextmanager
def instance_errors(config: Path) -> Iterator[None]:
    """A dagster.yaml that is not YAML or not an instance's, a variable it reads unset or of
    the wrong type, a PostgreSQL that refuses its password or does not answer: one BackupError
    saying what to fix, instead of Dagster's retries and traceback."""
    try:
        # A refused password is the same at every try: not retried. A server that does not
        # answer is (it may be restarting).
        with postgres_retries(gives_up=is_refused_password):
            yield
    except dg.DagsterInvalidConfigError as err:
        raise BackupError(_config_error_line(err, config)) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise BackupError(f"{config} is not valid YAML ({problem}{where}): fix it") from None
    except Exception as err:
        # A password refused first: libpq's "no password supplied" (an empty variable) comes
        # without the server's word, and was told as a server that does not answer.
        if _refused_login(err):
            raise BackupError(
                "the Dagster instance's PostgreSQL refused the password of its user: set "
                f"{PASSWORD_VARIABLE} to that user's password ({SERVICES_ENV_HINT})"
            ) from None
        unusable = _unanswered(err, config) or _unwritable(err, config)
        if unusable is not None:
            raise unusable from None
        raise


def _config_error_line(err: dg.DagsterInvalidConfigError, config: Path) -> str:
    """One line for a dagster.yaml Dagster refused: a variable it reads unset or of the wrong
    type (DAGSTER_PG_PORT=abc), a key it does not know (with the nearest it knows there), or
    else Dagster's first error."""
    said = str(err)
    if unset := re.search(r'environment variable "([^"]+)" which is not set', said):
        return f"{config} reads {unset[1]}, which is not set: set it ({SERVICES_ENV_HINT})"
    if wrong := re.search(r'env variable "([^"]+)" cannot be coerced into an? (\w+)', said):
        value = os.environ.get(wrong[1], "")
        return (
            f"{config} reads {wrong[1]}={value!r}, which is not of type {wrong[2]}: set it "
            f"({SERVICES_ENV_HINT})"
        )
    if unknown := re.search(
        r'unexpected config entry "([^"]+)" at (the root|path [^.]+)\. Expected: "(.*)"', said
    ):
        # Dagster's line goes on with the whole schema expected there (4,000 characters at the
        # root): the keys it knows at that level are what helps.
        key, where, expected = unknown.groups()
        known = schema_keys(expected)
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"the keys there: {', '.join(known)}"
        where = where.removeprefix("path ")
        return (
            f"{config} has a key Dagster does not know, {key!r} at {where}: rename or remove "
            f"it ({hint})"
        )
    first = re.search(r"Error 1: ([^\n]+)", said)
    return (
        f"{config} is not a Dagster instance's configuration "
        f"({first[1] if first else said.splitlines()[0]}): fix it"
    )


def schema_keys(expected: str) -> list[str]:
    """The field names at the top level of a config schema as Dagster prints it
    (`{ auto_materialize?: { enabled?: Bool ... } backfills?: ... }`)."""
    keys, depth = [], 0
    for token in re.finditer(r"[{}()\[\]]|(\w+)\??:", expected):
        if token[1] is None:
            depth += 1 if token[0] in "{([" else -1
        elif depth == 1:
            keys.append(token[1])
    return keys


def libpq_target(postgres_url: str) -> tuple[str, dict[str, str]]:
    """The `--dbname` and environment of pg_dump / pg_restore for the instance's SQLAlchemy URL.

    libpq knows no SQLAlchemy driver (`postgresql+psycopg2://`), and a password on a command
    line is visible to every user of the machine (`ps`): it goes in PGPASSWORD instead.
    """
    url = sa.engine.make_url(postgres_url)
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    # The session's settings (`-c timezone=UTC`, services/instance.py) in PGOPTIONS: rendered
    # into the URL, SQLAlchemy spells their space `+`, which libpq reads as it is.
    if options := url.query.get("options"):
        env["PGOPTIONS"] = str(options)
    # Built anew: URL.set(password=None) keeps the password (None there means "unchanged"), and
    # it reached pg_dump's command line.
    bare = sa.engine.URL.create(
        "postgresql",
        username=url.username,
        host=url.host,
        port=url.port,
        database=url.database,
        query={k: v for k, v in url.query.items() if k != "options"},
    )
    return bare.render_as_string(hide_password=False), env


def run_pg_tool(tool: str, postgres_url: str, *args: str) -> None:
    """Run pg_dump or pg_restore on the instance's database; any failure is a BackupError
    saying what the tool said (a server it cannot reach, a version it refuses, ...)."""
    if shutil.which(tool) is None:
        raise BackupError(
            f"the Dagster instance is on PostgreSQL and {tool} is missing: "
            "install the apt package postgresql-client"
        )
    dbname, env = libpq_target(postgres_url)
    done = subprocess.run(
        [tool, *args, f"--dbname={dbname}"], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode == 0:
        return
    lost = _LOST_SERVER.search(done.stderr)
    target = _LIBPQ_TARGET.search(done.stderr)
    if (target or lost) and not any(phrase in done.stderr for phrase in REFUSED):
        # The server down or gone mid-dump: the instance's own line, and what became of the
        # command's work (a backup changed nothing; a restore's journal finishes it later).
        at, why = _where_and_why(target, lost[0] if lost else "")
        raise InstanceUnreachable(
            f"the Dagster instance's PostgreSQL{at} stopped answering {tool} ({why}): start it "
            "(the local one: make services-up), then run the command again"
        )
    said = " / ".join(done.stderr.strip().splitlines()[:4]) or "no message"
    hint = (
        f": use the {tool} of the server's major version or newer (apt postgresql-client-<major>)"
        if "version mismatch" in done.stderr
        else ""
    )
    raise BackupError(f"{tool} failed (exit status {done.returncode}): {said}{hint}")


def instance_database(instance: dg.DagsterInstance, config: Path) -> str:
    """The URL of the one PostgreSQL database that holds the instance's three storages (`config`
    names its dagster.yaml in a refusal). pg_dump and pg_restore take one database: with the
    event log or the cursors in another (each storage's section naming its own database or
    server), a backup held the runs alone, and a restore replaced them beside another
    history's event log."""
    # DagsterInstance names its storages as dagster.yaml's sections do.
    urls = {name: getattr(instance, name).postgres_url for name in PER_STORAGE}
    if len({same_database_key(url) for url in urls.values()}) > 1:
        split = ", ".join(
            f"its {NAMES[name]} in {postgres_database(url)}" for name, url in urls.items()
        )
        raise BackupError(
            f"{config} puts {split}: backup and restore take an instance whose storages are all "
            "in one database (storage: postgres)"
        )
    return urls["run_storage"]


# Names of this machine's own server. No host at all is libpq's local socket: the same server.
_THIS_MACHINE = {None, "localhost", "127.0.0.1", "::1"}
_DEFAULT_PORT = 5432


def same_database_key(postgres_url: str) -> tuple[str | None, str, int]:
    """(database, server, port) of a URL, equal for two URLs that reach the same database: one
    storage's section written `localhost` and another's `127.0.0.1:5432` were refused as two
    databases, whoever logs in."""
    url = sa.engine.make_url(postgres_url)
    host = "localhost" if url.host in _THIS_MACHINE else str(url.host).lower()
    return url.database, host, url.port or _DEFAULT_PORT


def dump_postgres_instance(postgres_url: str, target: Path) -> None:
    """The instance's PostgreSQL database as one pg_dump (one transaction: consistent). Owners
    and grants are left to pg_restore to skip: the archive keeps them, the target may lack the
    roles."""
    run_pg_tool(
        "pg_dump",
        postgres_url,
        "--format=custom",
        f"--file={target}",
    )


def copy_instance(settings: Settings, staging: Path) -> str:
    """The instance's state into staging; returns its storage kind (sqlite or postgres).

    On PostgreSQL the database is one dump, and the instance's folder (dagster.yaml, the
    compute logs of the runs) is copied beside it as on SQLite.
    """
    home = settings.dagster_home
    if not home.is_dir():
        refuse_a_missing_instance(settings)
    storage = instance_storage(home) or "sqlite"
    if storage == "postgres":
        with open_instance(home) as instance:
            database = instance_database(instance, home / "dagster.yaml")
            dump_postgres_instance(database, staging / INSTANCE_DUMP)
    else:
        check_sqlite_inside(
            home,
            home,
            str(home / "dagster.yaml"),
            "a backup copies DAGSTER_HOME only; with the platform stopped, move those files to "
            "Dagster's default place in it (history/, schedules/) and remove base_dir",
        )
    copy_sqlite_instance(home, staging / INSTANCE)
    return storage


def copy_warehouse(settings: Settings, staging: Path, timeout: float) -> None:
    """Wait for the writer, then copy the file whole while holding its lock.

    Holding the lock, nobody else writes; CHECKPOINT moves the write-ahead log into the file,
    so the file alone is the warehouse as of one moment: the state before or after a run's
    transaction, never half of it. Copying the file (not COPY FROM DATABASE) keeps every
    object as it is: tables, dbt's views, sequences, macros.
    """
    if not settings.warehouse.exists():
        refuse_a_missing_warehouse(settings)
        return
    try:
        conn = connect_with_lock_wait(str(settings.warehouse), timeout=timeout)
    except duckdb.Error as error:
        if is_lock_conflict(error):
            raise BackupError(
                f"the warehouse stayed locked by a writer for {timeout:g} s ({error}): take "
                "the backup once that run is done, with a longer --timeout, or from the "
                "daily_backup schedule, which queues behind writing runs"
            ) from None
        raise _unreadable(settings, error) from None
    try:
        conn.execute("CHECKPOINT")
        target = staging / WAREHOUSE
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(settings.warehouse, target)
    except duckdb.Error as error:
        raise _unreadable(settings, error) from None
    finally:
        conn.close()


def _unreadable(settings: Settings, error: duckdb.Error) -> BackupError:
    """Not a lock: a file that is not a warehouse, or a damaged one. Waiting will not help."""
    said = " / ".join(str(error).strip().splitlines()[:2])
    return BackupError(
        f"the warehouse {settings.warehouse} cannot be read ({said}): check that "
        "DATA_PLATFORM_WAREHOUSE names the warehouse file; a damaged one is restored from a backup"
    )


def refuse_a_missing_warehouse(settings: Settings) -> None:
    """A home without a warehouse file is only whole when nothing was ever materialized (a new
    platform). Otherwise the file is elsewhere, most often DATA_PLATFORM_WAREHOUSE unset in
    this shell: a backup without it would restore runs and cursors that have seen days no
    warehouse holds, beside no warehouse at all."""
    if not has_materializations(settings.dagster_home):
        return
    raise BackupError(
        f"the Dagster instance has materializations but the warehouse {settings.warehouse} "
        "does not exist: set DATA_PLATFORM_WAREHOUSE to the warehouse file this platform "
        "writes (unset, it is $DATA_PLATFORM_HOME/warehouse.duckdb)"
    )


def refuse_a_missing_instance(settings: Settings) -> None:
    """The converse of refuse_a_missing_warehouse: a warehouse beside no instance folder is
    most often a mistyped DAGSTER_HOME, and the backup held the warehouse alone, "verified"; a
    restore of it would bring back tables no run, cursor or check result describes."""
    if settings.engine == "duckdb" and settings.warehouse.exists():
        raise BackupError(
            f"DAGSTER_HOME={str(settings.dagster_home)!r} does not exist, but the warehouse "
            f"{settings.warehouse} does: set DAGSTER_HOME to the folder of the Dagster instance "
            "this platform runs on (unset, it is $DATA_PLATFORM_HOME/dagster_home)"
        )


def has_materializations(dagster_home: Path) -> bool:
    if not any(p.is_file() for p in dagster_home.rglob("*")):
        return False  # nothing to open, and opening would create an instance here
    with open_instance(dagster_home) as instance:
        return any(
            record.asset_entry.last_materialization_record is not None
            for record in instance.get_asset_records()
        )


def staged_parts(staging: Path) -> list[str]:
    """The home's parts a staged backup holds, for its manifest: a restore removes from the
    home any part the backup lacks, so that no part of another platform stays beside it."""
    held = {
        "instance": (staging / INSTANCE).exists(),
        "salt": (staging / SALT).exists(),
        "warehouse": (staging / WAREHOUSE).exists() or (staging / SPARK_WAREHOUSE).exists(),
    }
    return sorted(part for part, present in held.items() if present)


def copy_settings(settings: Settings, staging: Path) -> None:
    """The PII salt (without it every e-mail hash changes) and which variables were set."""
    (staging / "settings").mkdir(parents=True, exist_ok=True)
    salt = settings.home / SALT_FILE
    if salt.exists():
        shutil.copy2(salt, staging / SALT)
    names = sorted(
        n
        for n in os.environ
        if n.startswith("DATA_PLATFORM_") or n in ("DAGSTER_HOME", "AWS_ENDPOINT_URL")
    )
    record = {n: os.environ[n] if n in PLAIN_VARIABLES else "set" for n in names}
    (staging / SETTINGS_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
