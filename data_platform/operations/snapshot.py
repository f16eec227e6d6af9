"""Taking a consistent copy of the platform's state into a local folder, while runs write.

Order matters. The Dagster instance (run history, asset records, sensor cursors) is copied
first and the warehouse second: a cursor older than the warehouse only makes a sensor ask for
a day again, and re-materializing a partition replaces it exactly (no day twice); the other
order could restore a cursor that has seen a file the warehouse never loaded (a day lost).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import dagster as dg

from data_platform.operations.backup_store import BackupError
from data_platform.resources.duckdb_lock import connect_with_lock_wait
from data_platform.resources.privacy import SALT_FILE
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


def copy_sqlite_instance(dagster_home: Path, target: Path) -> None:
    """Each SQLite database through SQLite's backup API (a consistent copy while Dagster
    writes it), every other file (dagster.yaml, compute logs) as it is."""
    for path in sorted(p for p in dagster_home.rglob("*") if p.is_file()):
        if path.name.endswith(SQLITE_SIDE_FILES):
            continue
        copy = target / path.relative_to(dagster_home)
        copy.parent.mkdir(parents=True, exist_ok=True)
        if not _is_sqlite(path):
            shutil.copy2(path, copy)
            continue
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
        dest = sqlite3.connect(copy)
        try:
            source.backup(dest)
        finally:
            dest.close()
            source.close()


def dump_postgres_instance(instance: dg.DagsterInstance, target: Path) -> None:
    """The instance's PostgreSQL database as one pg_dump (one transaction: consistent)."""
    if shutil.which("pg_dump") is None:
        raise BackupError(
            "the Dagster instance is on PostgreSQL and pg_dump is missing: "
            "install the apt package postgresql-client"
        )
    url = instance.run_storage.postgres_url.replace("postgresql+psycopg2://", "postgresql://")
    subprocess.run(
        ["pg_dump", "--format=custom", "--no-owner", f"--file={target}", url],
        check=True,
        capture_output=True,
    )


def copy_instance(settings: Settings, staging: Path) -> str:
    """The instance's state into staging; returns its storage kind (sqlite or postgres)."""
    config = settings.dagster_home / "dagster.yaml"
    if config.exists() and "postgres" in config.read_text():
        with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
            if type(instance.run_storage).__name__.startswith("Postgres"):
                dump_postgres_instance(instance, staging / INSTANCE_DUMP)
                (staging / INSTANCE).mkdir(parents=True, exist_ok=True)
                shutil.copy2(config, staging / INSTANCE / "dagster.yaml")
                return "postgres"
    copy_sqlite_instance(settings.dagster_home, staging / INSTANCE)
    return "sqlite"


def copy_warehouse(settings: Settings, staging: Path, timeout: float) -> None:
    """Wait for the writer, then copy the file whole while holding its lock.

    Holding the lock, nobody else writes; CHECKPOINT moves the write-ahead log into the file,
    so the file alone is the warehouse as of one moment: the state before or after a run's
    transaction, never half of it. Copying the file (not COPY FROM DATABASE) keeps every
    object as it is: tables, dbt's views, sequences, macros.
    """
    if not settings.warehouse.exists():
        return
    conn = connect_with_lock_wait(str(settings.warehouse), timeout=timeout)
    try:
        conn.execute("CHECKPOINT")
        target = staging / WAREHOUSE
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(settings.warehouse, target)
    finally:
        conn.close()


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
