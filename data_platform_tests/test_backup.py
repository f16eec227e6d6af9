"""`data-platform backup` / `restore`: consistent while a writer runs, restorable elsewhere,
resumable with no day lost or loaded twice, and refused when corrupt or partial."""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import logging
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar

import boto3
import dagster as dg
import duckdb
import pytest
import sqlalchemy as sa
from dagster._core.events import EngineEventData
from dagster._core.storage.tags import RETRY_STRATEGY_TAG
from dagster._daemon.types import DaemonHeartbeat

from data_platform.assets.raw import RAW_FILE_ASSETS, RAW_SOURCE_TABLE_ASSETS
from data_platform.cli import main as cli_main
from data_platform.operations import backup_schedule, backup_store
from data_platform.operations.backup import run_backup, store_backup, take_backup
from data_platform.operations.backup_schedule import DEST_VARIABLE, backup_job, daily_backup
from data_platform.operations.backup_store import (
    SSE_KMS_KEY_VARIABLE,
    SSE_VARIABLE,
    BackupError,
    BackupStore,
)
from data_platform.operations.durations import STATE_KEY as DURATIONS_KEY
from data_platform.operations.restore import restore, running_runs, stale_salt_line, state_held
from data_platform.operations.restore_journal import finish_interrupted_restores
from data_platform.operations.snapshot import (
    InstanceUnreachable,
    libpq_target,
    open_instance,
    run_pg_tool,
    same_database_key,
)
from data_platform.operations.staging import JOURNAL, open_staging, sweep
from data_platform.orchestration import pool_wait
from data_platform.orchestration.run_health import (
    CREATOR_PID_TAG,
    WORKER_HOST_TAG,
    announce_run_process,
    this_host,
)
from data_platform.partitions import WAREHOUSE_POOL
from data_platform.resources.build import build_resources
from data_platform.resources.duckdb_lock import LOCK_WAIT_SECONDS, connect_with_lock_wait
from data_platform.services.config import load_services_config
from data_platform.services.instance import write_instance_yaml
from data_platform.settings import Settings, SettingsError, load_settings
from data_platform.simulator import SimulationConfig, simulate
from data_platform_tests import instance_history as history
from data_platform_tests.helpers import (
    dagster_postgres_url,
    distributed_home,
    environ_without_settings,
    free_port,
    write_postgres_instance,
)

CLI = str(Path(sys.executable).with_name("data-platform"))
DAYS = [date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)]
# Inserts into two tables in one transaction, holding the lock until stdin closes, then commits.
WRITER = """
import sys, duckdb
conn = duckdb.connect(sys.argv[1])
conn.execute("BEGIN")
conn.execute("INSERT INTO main.t SELECT range, 'during' FROM range(1000, 1500)")
conn.execute("INSERT INTO main.u SELECT range FROM range(500)")
print("inserted", flush=True)
sys.stdin.read()
conn.execute("COMMIT")
conn.close()
"""


def home_settings(home: Path, **env: str) -> Settings:
    return load_settings({"DATA_PLATFORM_HOME": str(home), **env})


def table_rows(warehouse: Path, exclude: tuple[str, ...] = ()) -> dict[str, list[tuple]]:
    """Every table's rows, sorted: the whole warehouse, for a row-for-row comparison."""
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE'"
        ).fetchall()
        rows = {}
        for schema, table in tables:
            columns = [
                c
                for (c,) in conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                    [schema, table],
                ).fetchall()
                if c not in exclude
            ]
            select = ", ".join(f'"{c}"::VARCHAR' for c in columns)
            rows[f"{schema}.{table}"] = sorted(
                conn.execute(f"SELECT {select} FROM {schema}.{table}").fetchall(),
                key=lambda r: tuple("" if v is None else v for v in r),
            )
    return rows


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A home built once per module: a warehouse, an instance with two runs, a PII salt; and
    its backup next to it. Tests work on copies (`copy_home`)."""
    root = tmp_path_factory.mktemp("pristine")
    settings = home_settings(root / "home")
    settings.dagster_home.mkdir(parents=True)
    with duckdb.connect(str(settings.warehouse)) as conn:
        conn.execute("CREATE TABLE t AS SELECT range AS id, 'before' AS note FROM range(1000)")
        conn.execute("CREATE TABLE u (id BIGINT)")
        conn.execute("CREATE VIEW v AS SELECT count(*) AS n FROM t")
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        for job in ("raw_job", "marts_job"):
            history.finished_run(instance, job, time.time() - 60, 5, {"step": 2})
    (settings.home / "pii_salt").write_text("a-salt")
    take_backup(settings, BackupStore(str(root / "backup")))
    return root


def copy_home(pristine: Path, to: Path, what: str = "home") -> Path:
    shutil.copytree(pristine / what, to)
    return to


def run_ids(settings: Settings) -> set[str]:
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        return {r.run_id for r in instance.get_runs()}


def cli_env(home: Path, **settings: str) -> dict[str, str]:
    return environ_without_settings(**{"DATA_PLATFORM_HOME": str(home), **settings})


def cli(home: Path, *args: str, **settings: str) -> subprocess.Popen:
    return subprocess.Popen(
        [CLI, *args],
        env=cli_env(home, **settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_writer(warehouse: Path) -> subprocess.Popen:
    """WRITER on `warehouse`, once it holds the lock mid-transaction; close its stdin to commit."""
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(warehouse)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert writer.stdout.readline() == b"inserted\n"
    return writer


def test_a_backup_during_a_write_waits_and_holds_the_whole_transaction(pristine, tmp_path):
    source = home_settings(copy_home(pristine, tmp_path / "a"))
    writer = start_writer(source.warehouse)
    backup = cli(source.home, "backup", str(tmp_path / "backup"))
    # The instance is copied first, then the warehouse is opened: once the instance's copy has
    # settled, the backup is at the warehouse, where the writer's lock holds it.
    [folder] = wait_for(
        lambda: [p for p in source.home.glob(".backup-*") if (p / "dagster_home").is_dir()],
        backup,
        timeout=120,
    )
    wait_for(lambda: copy_settled(folder), backup, timeout=120)
    assert backup.poll() is None, backup.communicate()  # waiting for the writer, not failing
    writer.stdin.close()
    assert writer.wait(timeout=30) == 0
    _, err = backup.communicate(timeout=120)
    assert backup.returncode == 0, err

    restored = cli(tmp_path / "b", "restore", str(tmp_path / "backup"))
    _, err = restored.communicate(timeout=120)
    assert restored.returncode == 0, err
    target = home_settings(tmp_path / "b")
    rows = table_rows(target.warehouse)
    # The state after the writer's transaction, whole: both of its inserts, nothing less.
    assert len(rows["main.t"]) == 1500 and len(rows["main.u"]) == 500
    assert rows == table_rows(source.warehouse)
    with duckdb.connect(str(target.warehouse), read_only=True) as conn:
        assert conn.execute("SELECT n FROM v").fetchone() == (1500,)
    assert run_ids(target) == run_ids(source) and len(run_ids(target)) == 2
    assert (target.home / "pii_salt").read_text() == "a-salt"
    # The salt and raw personal data: only their owner reads the backup and what it restores.
    backup_files = [p for p in (tmp_path / "backup").rglob("*") if p.is_file()]
    assert backup_files and all(p.stat().st_mode & 0o077 == 0 for p in backup_files)
    # Its folders too, the top one made by the backup included (it was 0755).
    folders = [tmp_path / "backup", *(p for p in (tmp_path / "backup").rglob("*") if p.is_dir())]
    assert all(p.stat().st_mode & 0o777 == 0o700 for p in folders), folders
    assert (target.home / "pii_salt").stat().st_mode & 0o777 == 0o600


def materialize_day(settings: Settings, instance: dg.DagsterInstance, day: date) -> None:
    resources = build_resources(settings)
    assert dg.materialize(
        RAW_FILE_ASSETS, resources=resources, instance=instance, partition_key=day.isoformat()
    ).success
    assert dg.materialize(RAW_SOURCE_TABLE_ASSETS, resources=resources, instance=instance).success


def test_a_writer_holding_the_warehouse_past_the_wait_is_one_line(pristine, tmp_path):
    """`--timeout` (default 120 s) bounds the wait: a backfill may hold the lock longer."""
    source = home_settings(copy_home(pristine, tmp_path / "a"))
    writer = start_writer(source.warehouse)
    try:
        backup = cli(source.home, "backup", str(tmp_path / "backup"), "--timeout", "1.5")
        _, err = backup.communicate(timeout=120)
    finally:
        writer.stdin.close()
        assert writer.wait(timeout=30) == 0
    assert backup.returncode == 1
    [line] = err.strip().splitlines()
    assert "stayed locked by a writer for 1.5 s" in line and "--timeout" in line
    assert not (tmp_path / "backup" / "manifest.json").exists()


def test_a_destination_that_cannot_be_written_is_one_line_before_the_snapshot(pristine, tmp_path):
    """A folder under a file failed the first file's copy, once the instance was dumped and the
    warehouse copied under its lock: here a writer holds that lock, and the line comes at
    once, without waiting for it."""
    source = home_settings(copy_home(pristine, tmp_path / "a"))
    (tmp_path / "a-file").write_text("not a folder")
    writer = start_writer(source.warehouse)
    try:
        backup = cli(source.home, "backup", str(tmp_path / "a-file" / "backup"), "--timeout", "60")
        _, err = backup.communicate(timeout=30)
    finally:
        writer.stdin.close()
        assert writer.wait(timeout=30) == 0
    assert backup.returncode == 1, err
    assert err == (
        f"data-platform backup: {tmp_path / 'a-file' / 'backup'} cannot be written (Not a "
        f"directory: {tmp_path / 'a-file'}): choose a folder this user can create and write\n"
    )
    assert (tmp_path / "a-file").read_text() == "not a folder"


def test_a_backup_into_dagster_home_is_refused_before_the_snapshot(pristine, tmp_path, monkeypatch):
    """A backup kept in DAGSTER_HOME was copied by the next one as the instance's, and a forced
    restore replaced that folder: every backup there was deleted, newer ones too."""
    home = copy_home(pristine, tmp_path / "home")
    dest = home / "dagster_home" / "backups"
    backup = cli(home, "backup", str(dest / "one"))
    _, err = backup.communicate(timeout=120)
    assert backup.returncode == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "is inside DAGSTER_HOME" in err
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    monkeypatch.setenv(DEST_VARIABLE, str(dest))
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        run = backup_job.execute_in_process(instance=instance, raise_on_error=False)
    [failure] = [e for e in run.all_events if e.is_step_failure]
    assert failure.step_key == "snapshot_platform"
    assert "is inside DAGSTER_HOME" in failure.step_failure_data.error.message
    assert not dest.exists()
    assert not list(home.glob(".backup-*"))


def test_a_scheduled_backup_to_a_destination_that_cannot_be_written_stops_before_the_snapshot(
    pristine, tmp_path, monkeypatch
):
    """The schedule took the whole snapshot, then its upload failed with a bare
    NotADirectoryError naming no setting."""
    home = copy_home(pristine, tmp_path / "home")
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(home))
    monkeypatch.setenv(DEST_VARIABLE, str(tmp_path / "a-file" / "backups"))
    with dg.instance_for_test() as instance:
        run = backup_job.execute_in_process(instance=instance, raise_on_error=False)
    [failure] = [e for e in run.all_events if e.is_step_failure]
    assert failure.step_key == "snapshot_platform"
    assert (
        f"{DEST_VARIABLE}: {tmp_path / 'a-file' / 'backups'} cannot be written (Not a directory"
        in failure.step_failure_data.error.message
    )
    assert not list(home.glob(".backup-*"))


def test_restore_then_continue_matches_a_platform_that_never_stopped(tmp_path):
    sources = {
        "DATA_PLATFORM_LANDING": str(tmp_path / "landing"),
        "DATA_PLATFORM_SOURCE_DB_URL": f"sqlite:///{tmp_path / 'app.db'}",
    }
    a, c = home_settings(tmp_path / "a", **sources), home_settings(tmp_path / "c", **sources)
    config = SimulationConfig(seed=5, days=3, end_date=DAYS[-1], users=40, events_per_day=300)
    simulate(config, build_resources(a)["landing"], a.source_db_url)
    a.dagster_home.mkdir(parents=True)
    with dg.DagsterInstance.from_config(str(a.dagster_home)) as instance:
        for day in DAYS[:2]:
            materialize_day(a, instance, day)
    salt = build_resources(a)["privacy"].salt()  # what the first dbt run creates
    take_backup(a, BackupStore(str(tmp_path / "backup")))
    restore(c, BackupStore(str(tmp_path / "backup")))
    for settings in (a, c):
        with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
            materialize_day(settings, instance, DAYS[2])
            events = instance.get_materialized_partitions(dg.AssetKey(["raw", "events"]))
            assert events == {d.isoformat() for d in DAYS}

    load_times = ("_loaded_at", "_extracted_at", "rejected_at")
    restored, never_stopped = (
        table_rows(c.warehouse, load_times),
        table_rows(a.warehouse, load_times),
    )
    assert restored == never_stopped
    with duckdb.connect(str(c.warehouse), read_only=True) as conn:
        per_day = dict(conn.execute("SELECT dt, count(*) FROM raw.events GROUP BY dt").fetchall())
        twice = conn.execute(
            "SELECT count(*) FROM (SELECT _source_file, _line_number FROM raw.events "
            "GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()[0]
    assert set(per_day) == set(DAYS) and twice == 0
    assert build_resources(c)["privacy"].salt() == salt


def snapshot_of(home: Path) -> dict[str, bytes]:
    return {str(p.relative_to(home)): p.read_bytes() for p in home.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("flip", "does not match its checksum in the manifest (corrupt)"),
        ("delete", "lacks dagster_home/history/runs.db, listed in its manifest"),
        ("no_manifest", "has no manifest.json: not a complete backup"),
        ("cut_manifest", "manifest.json is cut short or not a manifest: use another backup"),
    ],
)
def test_a_damaged_backup_is_refused_and_nothing_is_overwritten(
    pristine, tmp_path, damage, message
):
    backup = copy_home(pristine, tmp_path / "backup", "backup")
    if damage == "flip":
        target = backup / "warehouse" / "warehouse.duckdb"
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "delete":
        (backup / "dagster_home" / "history" / "runs.db").unlink()
    elif damage == "cut_manifest":  # a traceback (JSONDecodeError) before
        manifest = backup / "manifest.json"
        manifest.write_bytes(manifest.read_bytes()[:100])
    else:
        (backup / "manifest.json").unlink()
    other = home_settings(copy_home(pristine, tmp_path / "other"))
    with duckdb.connect(str(other.warehouse)) as conn:
        conn.execute("INSERT INTO u VALUES (42)")  # not the backed-up state
    before = snapshot_of(other.home)
    with pytest.raises(BackupError, match=message.replace("(", r"\(").replace(")", r"\)")):
        restore(other, BackupStore(str(backup)), force=True)
    assert snapshot_of(other.home) == before


def test_a_backup_that_does_not_read_back_is_never_sealed(pristine, tmp_path, monkeypatch):
    """The manifest was stored before the files were read back: a backup whose warehouse was
    stored corrupt was sealed, and the schedule's pruning counted it as good."""
    home = home_settings(copy_home(pristine, tmp_path / "home"))
    put = BackupStore.put

    def stored_corrupt(self, local: Path, name: str) -> None:
        put(self, local, name)
        if name.endswith(".duckdb"):
            (Path(self.url) / name).write_bytes(b"not the file that was sent")

    monkeypatch.setattr(BackupStore, "put", stored_corrupt)
    dest = tmp_path / "backup"
    with pytest.raises(BackupError, match="differs from what was written"):
        take_backup(home, BackupStore(str(dest)))
    assert not (dest / "manifest.json").exists()


def test_a_run_in_progress_at_backup_time_is_restored_failed_and_frees_its_slot(pristine, tmp_path):
    """The scheduled backup's own run holds the `duckdb` slot while it copies the instance; on
    another machine nothing could tell that run is dead, and every warehouse step would wait.
    The metrics exporter's saved run durations are cleared too: they count the instance as it
    was at the backup, and an exporter going on from them would show its counters dropping."""
    source = home_settings(copy_home(pristine, tmp_path / "source"))
    with dg.DagsterInstance.from_config(str(source.dagster_home)) as instance:
        instance.run_storage.set_cursor_values({DURATIONS_KEY: '{"saved": "by an exporter"}'})
        running = history.add_run(instance, "backup_job", dg.DagsterRunStatus.NOT_STARTED)
        history.emit(instance, running, dg.DagsterEventType.RUN_START, time.time())
        instance.add_run_tags(running.run_id, {WORKER_HOST_TAG: "another-machine"})
        # A `materialize` whose run was made but not yet started (audit_concurrent D1): no
        # process there would start it, and the never-started sweep looks at this host's only.
        unstarted = history.add_run(instance, "raw_job", dg.DagsterRunStatus.NOT_STARTED)
        instance.add_run_tags(unstarted.run_id, {WORKER_HOST_TAG: "another-machine"})
        instance.event_log_storage.set_concurrency_slots(WAREHOUSE_POOL, 1)
        instance.event_log_storage.claim_concurrency_slot(
            WAREHOUSE_POOL, running.run_id, "backup_platform"
        )
        finished = {r.run_id: r.status for r in instance.get_runs() if r.is_finished}
    take_backup(source, BackupStore(str(tmp_path / "backup")))

    restored = home_settings(tmp_path / "restored")
    restore(restored, BackupStore(str(tmp_path / "backup")))
    with dg.DagsterInstance.from_config(str(restored.dagster_home)) as instance:
        for run in (running, unstarted):
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        ended = {running.run_id, unstarted.run_id}
        assert {r.run_id: r.status for r in instance.get_runs() if r.run_id not in ended} == (
            finished
        )
        pool = instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL)
        assert (pool.slot_count, pool.claimed_slots) == (1, [])
        assert instance.run_storage.get_cursor_values({DURATIONS_KEY}) == {DURATIONS_KEY: ""}


def test_a_home_with_state_is_refused_without_force(pristine, tmp_path):
    # A copy: were the refusal broken, the restore would overwrite the module's pristine home.
    home = copy_home(pristine, tmp_path / "home")
    result = cli(home, "restore", str(pristine / "backup"))
    _, err = result.communicate(timeout=120)
    assert result.returncode == 1
    assert err.strip().count("\n") == 0
    assert f"{home / 'warehouse.duckdb'} already holds a platform's state" in err
    # A DAGSTER_HOME left set for another home: the line names it, not the empty home.
    (home / "warehouse.duckdb").unlink()
    result = cli(
        tmp_path / "empty",
        "restore",
        str(pristine / "backup"),
        DAGSTER_HOME=str(home / "dagster_home"),
    )
    _, err = result.communicate(timeout=120)
    assert result.returncode == 1
    assert f"{home / 'dagster_home'} already holds a platform's state" in err, err
    assert "--force" in err


def test_a_refused_restore_into_a_new_home_leaves_no_home(pristine, tmp_path):
    """A restore refused before anything was put in place (here, a backup without its
    manifest) left an empty DATA_PLATFORM_HOME, made for its staging folder."""
    backup = copy_home(pristine, tmp_path / "backup", "backup")
    (backup / "manifest.json").unlink()
    home = tmp_path / "new" / "home"
    result = cli(home, "restore", str(backup))
    _, err = result.communicate(timeout=120)
    assert result.returncode == 1 and "has no manifest.json" in err, err
    assert not home.exists()


def test_a_new_home_with_only_the_salt_services_env_made_takes_a_restore(pristine, tmp_path):
    """`make -s services-env` makes a salt in a new home (the shared instance needs it
    exported): the restore counted it as state and was refused, unless --force (which also
    drops the real protection). The backup's salt replaces it, and a shell still exporting the
    old one is told, once: it wins over the file, so new rows would be hashed otherwise."""
    home = tmp_path / "new"
    home.mkdir()
    (home / "pii_salt").write_text("made-by-services-env")
    result = cli(
        home, "restore", str(pristine / "backup"), DATA_PLATFORM_PII_SALT="made-by-services-env"
    )
    _, err = result.communicate(timeout=120)
    assert result.returncode == 0, err
    assert (home / "pii_salt").read_text() == "a-salt"
    [warning] = [line for line in err.splitlines() if line.startswith("warning:")]
    assert "DATA_PLATFORM_PII_SALT is not the restored salt" in warning, err
    # A shell exporting the restored salt, or none, is not warned.
    settings = home_settings(home)
    assert stale_salt_line(settings, {"DATA_PLATFORM_PII_SALT": "a-salt"}) is None
    assert stale_salt_line(settings, {}) is None


def test_backup_to_s3_and_restore_from_it(pristine, s3_landing, s3_endpoint, tmp_path):
    source = home_settings(copy_home(pristine, tmp_path / "home"))
    bucket = s3_landing.url.split("/")[2]
    url = f"s3://{bucket}/backups/first"
    manifest = take_backup(source, BackupStore(url))
    keys = {
        o["Key"]
        for o in boto3.client("s3", endpoint_url=s3_endpoint)
        .list_objects_v2(Bucket=bucket, Prefix="backups/first/")
        .get("Contents", [])
    }
    assert keys == {f"backups/first/{f['path']}" for f in manifest["files"]} | {
        "backups/first/manifest.json"
    }
    with pytest.raises(BackupError, match=r"is not empty: it holds a backup \(manifest.json\)"):
        take_backup(source, BackupStore(url))
    # A backup killed before its manifest: said so, where "not empty" alone left it a riddle.
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(
        Bucket=bucket, Key="backups/killed/instance.tar", Body=b"part"
    )
    with pytest.raises(BackupError, match=r"holds no manifest\.json: an interrupted backup"):
        take_backup(source, BackupStore(url.replace("/first", "/killed")))
    target = home_settings(tmp_path / "b")
    restore(target, BackupStore(url))
    assert table_rows(target.warehouse) == table_rows(source.warehouse)
    assert run_ids(target) == run_ids(source)


# `data-platform backup DEST` in a process that SIGKILLs itself once it has put two files (its
# in-progress marker and a first file of the backup) into DEST.
KILLED_BACKUP = """
import os, signal, sys
from data_platform.cli import main
from data_platform.operations.backup_store import BackupStore

put, puts = BackupStore.put, []

def put_or_die(store, local, name):
    put(store, local, name)
    puts.append(name)
    if len(puts) == 2:
        os.kill(os.getpid(), signal.SIGKILL)

BackupStore.put = put_or_die
sys.exit(main(["backup", sys.argv[1]]))
"""


def test_a_backup_killed_while_uploading_is_cleared_by_the_same_command_run_again(
    pristine, tmp_path
):
    """Killed mid-upload, a backup left files (no manifest: never restored) that made the same
    command refuse ("not empty ... an interrupted backup?") until removed by hand. Its marker
    names its staging folder, no longer held: the re-run removes them and backs up. A live
    backup's files are refused, not removed."""
    home = copy_home(pristine, tmp_path / "home")
    dest = tmp_path / "backups" / "one"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_BACKUP, str(dest)],
        env=cli_env(home),
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = sorted(p.name for p in dest.iterdir())
    assert "backup-in-progress.json" in left and "manifest.json" not in left, left

    again = cli(home, "backup", str(dest))
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert f"backup {dest}: removing the files of a backup interrupted there" in err
    assert (dest / "manifest.json").exists() and not (dest / "backup-in-progress.json").exists()
    restored = home_settings(tmp_path / "restored")
    restore(restored, BackupStore(str(dest)))
    assert platform_state(restored) == platform_state(home_settings(home))

    live = tmp_path / "backups" / "live"
    live.mkdir()
    settings = home_settings(home)
    with open_staging(settings.home, "backup", report=print) as staging:
        marker = {"host": socket.gethostname(), "staging": str(staging)}
        (live / "backup-in-progress.json").write_text(json.dumps(marker))
        with pytest.raises(BackupError, match=r"a backup into .* is running \(pid "):
            take_backup(settings, BackupStore(str(live)))
    assert [p.name for p in live.iterdir()] == ["backup-in-progress.json"]


def set_encryption(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """DATA_PLATFORM_BACKUP_SSE and its key id as `env` says, whatever the shell running the
    tests holds."""
    for name in (SSE_VARIABLE, SSE_KMS_KEY_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def encryption_of(endpoint: str, bucket: str, key: str) -> dict[str, str]:
    """The server-side encryption S3 reports of an object (head_object), absent when none."""
    head = boto3.client("s3", endpoint_url=endpoint).head_object(Bucket=bucket, Key=key)
    return {k: head[k] for k in ("ServerSideEncryption", "SSEKMSKeyId") if k in head}


@pytest.mark.parametrize(
    ("env", "reported"),
    [
        ({}, {}),
        ({SSE_VARIABLE: "AES256"}, {"ServerSideEncryption": "AES256"}),
        (
            {SSE_VARIABLE: "aws:kms", SSE_KMS_KEY_VARIABLE: "alias/backups"},
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/backups"},
        ),
    ],
)
def test_an_s3_backup_object_is_encrypted_as_asked_and_unasked_sends_no_header(
    env, reported, s3_landing, s3_endpoint, tmp_path, monkeypatch
):
    """A backup holds the PII salt and raw e-mails, and was put with no server-side encryption.
    Unset, still no header (a MinIO without KMS refuses it): moto keeps what a put sends."""
    set_encryption(monkeypatch, **env)
    bucket = s3_landing.url.split("/")[2]
    (tmp_path / "pii_salt").write_text("a-salt")
    store = BackupStore(f"s3://{bucket}/backups/one")
    store.put(tmp_path / "pii_salt", "pii_salt")
    assert encryption_of(s3_endpoint, bucket, "backups/one/pii_salt") == reported
    store.get("pii_salt", tmp_path / "restored")
    assert (tmp_path / "restored").read_text() == "a-salt"


def test_every_object_of_an_s3_backup_is_encrypted_its_manifest_too(
    pristine, s3_landing, s3_endpoint, tmp_path, monkeypatch
):
    set_encryption(monkeypatch, **{SSE_VARIABLE: "AES256"})
    bucket = s3_landing.url.split("/")[2]
    store = BackupStore(f"s3://{bucket}/backups/first")
    take_backup(home_settings(copy_home(pristine, tmp_path / "home")), store)
    names = store.names()
    assert "manifest.json" in names and "settings/pii_salt" in names
    for name in names:
        assert encryption_of(s3_endpoint, bucket, f"backups/first/{name}") == {
            "ServerSideEncryption": "AES256"
        }, name


WRONG_ENCRYPTION = [
    (
        {SSE_VARIABLE: "aes256"},
        "DATA_PLATFORM_BACKUP_SSE='aes256' is not a server-side encryption: set AES256 or "
        "aws:kms (optionally with DATA_PLATFORM_BACKUP_SSE_KMS_KEY_ID), or unset it for none",
    ),
    (
        {SSE_VARIABLE: "AES256", SSE_KMS_KEY_VARIABLE: "alias/backups"},
        "DATA_PLATFORM_BACKUP_SSE_KMS_KEY_ID is set but DATA_PLATFORM_BACKUP_SSE is AES256, not "
        "aws:kms (the only encryption with a KMS key): set DATA_PLATFORM_BACKUP_SSE=aws:kms, or "
        "unset DATA_PLATFORM_BACKUP_SSE_KMS_KEY_ID",
    ),
    (
        {SSE_KMS_KEY_VARIABLE: "alias/backups"},
        "DATA_PLATFORM_BACKUP_SSE_KMS_KEY_ID is set but DATA_PLATFORM_BACKUP_SSE is unset, not "
        "aws:kms (the only encryption with a KMS key): set DATA_PLATFORM_BACKUP_SSE=aws:kms, or "
        "unset DATA_PLATFORM_BACKUP_SSE_KMS_KEY_ID",
    ),
]


@pytest.mark.parametrize(("env", "line"), WRONG_ENCRYPTION)
def test_a_wrong_backup_encryption_is_one_line_before_the_snapshot(
    env, line, pristine, tmp_path, monkeypatch
):
    """A key id without aws:kms is one too: with the SSE unset, the backup went unencrypted while
    its setter believed otherwise; with AES256, S3 refused the first put, after the snapshot."""
    set_encryption(monkeypatch, **env)
    home = copy_home(pristine, tmp_path / "home")
    with pytest.raises(SettingsError) as raised:
        take_backup(home_settings(home), BackupStore(str(tmp_path / "backup")))
    assert str(raised.value) == line
    assert not (tmp_path / "backup").exists() and not list(home.glob(".backup-*"))


def test_a_wrong_backup_encryption_is_the_same_line_in_the_cli_and_the_schedule(
    pristine, tmp_path, monkeypatch
):
    [(env, line), *_] = WRONG_ENCRYPTION
    home = copy_home(pristine, tmp_path / "home")
    backup = cli(home, "backup", str(tmp_path / "backup"), **env)
    _, err = backup.communicate(timeout=120)
    assert backup.returncode == 2  # a wrong setting's status, as every other one's
    assert err.strip().splitlines() == [f"data-platform: {line}"]
    assert not (tmp_path / "backup").exists()

    set_encryption(monkeypatch, **env)
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(home))
    monkeypatch.setenv(DEST_VARIABLE, str(tmp_path / "backups"))
    with dg.instance_for_test() as instance:
        run = backup_job.execute_in_process(instance=instance, raise_on_error=False)
    [failure] = [e for e in run.all_events if e.is_step_failure]
    assert failure.step_key == "snapshot_platform"
    assert line in failure.step_failure_data.error.message
    assert not list(home.glob(".backup-*")) and not (tmp_path / "backups").exists()


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_restored_file_is_its_owners_only_from_its_first_byte(s3_landing, tmp_path, monkeypatch):
    """A download (download_file) was written at the umask's mode (0644) and chmodded 0600 once
    whole, and a local copy over a file that was there wrote into it at that file's mode. The
    moment in between cannot be caught from outside without a race, so chmod is taken away:
    what is left is the mode the file was written with, 0600, new or there before at 0644."""
    bucket = s3_landing.url.split("/")[2]
    (tmp_path / "pii_salt").write_text("a-salt")
    stores = [BackupStore(f"s3://{bucket}/backups/one"), BackupStore(str(tmp_path / "local"))]
    for store in stores:
        store.put(tmp_path / "pii_salt", "pii_salt")
    restored = tmp_path / "restored"
    restored.mkdir()
    for there in ("s3-there", "local-there"):
        (restored / there).write_text("an older file")
        (restored / there).chmod(0o644)
    monkeypatch.setattr(os, "chmod", lambda *args, **kwargs: None)  # Path.chmod's too
    with umask(0o022):
        for store, kind in zip(stores, ("s3", "local"), strict=True):
            store.get("pii_salt", restored / f"{kind}-new")
            store.get("pii_salt", restored / f"{kind}-there")
    for path in restored.iterdir():
        assert (path.stat().st_mode & 0o777, path.read_text()) == (0o600, "a-salt"), path.name


def test_the_daily_backup_is_off_by_default_and_keeps_the_last_n(pristine, tmp_path, monkeypatch):
    assert daily_backup.default_status == dg.DefaultScheduleStatus.STOPPED
    monkeypatch.delenv(DEST_VARIABLE, raising=False)
    assert isinstance(daily_backup(dg.build_schedule_context()), dg.SkipReason)

    root = tmp_path / "backups"
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(copy_home(pristine, tmp_path / "home")))
    # Launched by hand without a destination: one line, before any copy is made.
    with dg.instance_for_test() as instance:
        unset = backup_job.execute_in_process(instance=instance, raise_on_error=False)
    [failure] = [e for e in unset.all_events if e.is_step_failure]
    assert failure.step_key == "snapshot_platform"
    assert f"{DEST_VARIABLE} is not set" in failure.step_failure_data.error.message
    assert not list((tmp_path / "home").glob(".backup-*"))
    monkeypatch.setenv(DEST_VARIABLE, str(root))
    assert isinstance(daily_backup(dg.build_schedule_context()), dg.RunRequest)
    # Older backups, named as the op names them: two sealed, one interrupted (no manifest).
    for name in ("20260101T030000Z", "20260102T030000Z", "20260103T030000Z"):
        shutil.copytree(pristine / "backup", root / name)
    (root / "20260102T030000Z" / "manifest.json").unlink()
    # Not the schedule's: a backup taken by hand under its own name, and a folder of notes.
    shutil.copytree(pristine / "backup", root / "before-upgrade")
    (root / "notes").mkdir()
    (root / "notes" / "why.txt").write_text("taken before the upgrade")
    monkeypatch.setenv("DATA_PLATFORM_BACKUP_KEEP", "2")
    with dg.instance_for_test() as instance:
        assert backup_job.execute_in_process(instance=instance).success
    kept = sorted(p.name for p in root.iterdir())
    assert len(kept) == 4 and kept[0] == "20260103T030000Z"
    assert kept[1] > "2026"  # today's, sealed and verified: it restores
    assert kept[2:] == ["before-upgrade", "notes"]
    restore(home_settings(tmp_path / "restored"), BackupStore(str(root / kept[1])))
    assert table_rows(tmp_path / "restored" / "warehouse.duckdb") == table_rows(
        pristine / "home" / "warehouse.duckdb"
    )


def scheduled_backup(root: Path, ago: timedelta, sealed: bool = True, files: bool = True) -> str:
    """A folder as the schedule names a backup taken `ago`: its files, sealed or not."""
    name = (datetime.now(UTC) - ago).strftime(backup_schedule.STAMP)
    (root / name / "warehouse").mkdir(parents=True)
    if files:
        (root / name / "warehouse" / "warehouse.duckdb").write_bytes(b"x" * 64)
    if sealed:
        (root / name / "manifest.json").write_text("{}")
    return name


@contextlib.contextmanager
def undeletable(folder: Path) -> Iterator[None]:
    """`folder` as nobody can delete it: one of its files in a read-only folder or, for root
    (whom permissions do not stop), immutable."""
    pinned = next(p for p in folder.rglob("*") if p.is_file())
    if os.geteuid() != 0:
        pinned.parent.chmod(0o500)
        try:
            yield
        finally:
            pinned.parent.chmod(0o700)
        return
    if subprocess.run(["chattr", "+i", str(pinned)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is refused here: no way to make a folder undeletable for root")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(pinned)], check=True)


def test_an_old_backup_that_cannot_be_deleted_is_a_warning_not_a_deletion(tmp_path):
    """The local delete ignored every error: the schedule's log said "deleted the old backup"
    of a backup that was still there, filling the disk."""
    root = tmp_path / "backups"
    oldest, *_ = [scheduled_backup(root, timedelta(days=days)) for days in (3, 2, 1)]
    warnings: list[str] = []
    with undeletable(root / oldest):
        deleted = backup_schedule.prune(BackupStore(str(root)), 2, warnings.append)
    assert deleted == [] and (root / oldest).is_dir()
    [warning] = warnings
    assert warning.startswith(f"the backup {root / oldest} could not be deleted (")


def test_prune_leaves_a_backup_still_uploading_and_a_manifest_alone_seals_nothing(tmp_path):
    """Two backup runs upload at once (only the snapshot is in the pool): the later one's prune
    deleted the earlier one's folder as an interrupted leftover while it was uploading, and the
    manifest it put after was a folder counted as sealed (an older good backup deleted for it)
    that no restore takes."""
    root = tmp_path / "backups"
    leftover = scheduled_backup(root, timedelta(days=3), sealed=False)
    older = scheduled_backup(root, timedelta(days=2))
    uploading = scheduled_backup(root, timedelta(hours=1), sealed=False)
    emptied = scheduled_backup(root, timedelta(minutes=30), files=False)
    newest = scheduled_backup(root, timedelta(minutes=10))
    assert backup_schedule.prune(BackupStore(str(root)), 2, pytest.fail) == [leftover]
    assert sorted(p.name for p in root.iterdir()) == [older, uploading, emptied, newest]


def test_prune_aborts_the_uploads_a_killed_s3_backup_left(s3_landing):
    """A backup killed mid-upload leaves an incomplete multipart upload: no object, so neither
    listed nor deleted by a prune, its parts (the whole warehouse) billed for good. Killed in
    its first upload, the backup had no object at all to be found by."""
    import boto3

    bucket = s3_landing.url.split("/")[2]
    s3 = boto3.client("s3")
    root = BackupStore(f"s3://{bucket}/backups")
    names = [
        (datetime.now(UTC) - timedelta(days=days)).strftime(backup_schedule.STAMP)
        for days in (4, 3, 2, 1)
    ]
    killed_first, sealed_old, killed_later, newest = names
    for name in (sealed_old, newest):
        for file in ("warehouse/warehouse.duckdb", "manifest.json"):
            s3.put_object(Bucket=bucket, Key=f"backups/{name}/{file}", Body=b"x")
    s3.put_object(Bucket=bucket, Key=f"backups/{killed_later}/instance/runs.db", Body=b"x")
    for name in (killed_first, killed_later):
        key = f"backups/{name}/warehouse/warehouse.duckdb"
        upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"x" * 1024)
    deleted = backup_schedule.prune(root, 1, pytest.fail)
    assert deleted == [killed_first, sealed_old, killed_later]
    assert s3.list_multipart_uploads(Bucket=bucket, Prefix="backups/").get("Uploads", []) == []
    assert root.names() == [f"{newest}/manifest.json", f"{newest}/warehouse/warehouse.duckdb"]


DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01")
SENSOR, CURSOR = "landing_zone_files", '{"events": "events/dt=2026-01-06/b.jsonl"}'


@dg.asset(partitions_def=DAILY)
def daily_orders() -> None:
    """A partitioned asset: its materializations are per-day asset history."""


@dg.asset(deps=[daily_orders])
def order_summary() -> None:
    """An unpartitioned asset downstream of it."""


@pytest.fixture
def empty_database(postgres_server) -> Iterator[str]:
    """A second fresh database on the session's server, beside `postgres_url`'s."""
    name = f"restore_{uuid.uuid4().hex[:16]}"
    engine = postgres_server.admin_engine()
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield postgres_server.database_url(name)
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))


def instance_state(env: dict[str, str], monkeypatch) -> dict[str, object]:
    """What the instance of `env` holds: run ids, materializations per asset, the cursor."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        sensors = {s.instigator_name: s for s in instance.all_instigator_state()}
        return {
            "runs": {r.run_id for r in instance.get_runs()},
            "materializations": {
                key.to_user_string(): sorted(
                    (r.run_id, r.partition_key or "")
                    for r in instance.fetch_materializations(key, limit=100).records
                )
                for key in (daily_orders.key, order_summary.key)
            },
            "cursor": sensors[SENSOR].instigator_data.cursor if SENSOR in sensors else None,
        }


def test_a_postgres_instance_is_restored_into_an_empty_database(
    tmp_path, postgres_url, empty_database, monkeypatch
):
    source = distributed_home(tmp_path / "a", postgres_url)
    write_instance_yaml(load_services_config(source))
    for name, value in source.items():
        monkeypatch.setenv(name, value)
    # A materialized platform has a warehouse: a backup without one is refused.
    duckdb.connect(str(tmp_path / "a" / "warehouse.duckdb")).close()
    expected: dict[str, set[tuple[str, str]]] = {"daily_orders": set(), "order_summary": set()}
    with dg.DagsterInstance.get() as instance:
        for day in ("2026-01-05", "2026-01-06"):
            result = dg.materialize([daily_orders], instance=instance, partition_key=day)
            expected["daily_orders"].add((result.run_id, day))
        result = dg.materialize(
            [daily_orders, order_summary], selection=[order_summary], instance=instance
        )
        expected["order_summary"].add((result.run_id, ""))
        history.sensor_tick(instance, SENSOR, time.time(), cursor=CURSOR)
    runs = {run_id for pairs in expected.values() for run_id, _ in pairs}
    assert len(runs) == 3

    backup = cli(tmp_path / "a", "backup", str(tmp_path / "backup"), **source)
    _, err = backup.communicate(timeout=120)
    assert backup.returncode == 0, err
    # In an empty home whose variables name another, empty database: the backed-up dagster.yaml
    # is put in place and reads them.
    target = distributed_home(tmp_path / "b", empty_database)
    for name, value in target.items():
        monkeypatch.setenv(name, value)
    restore(load_settings(target), BackupStore(str(tmp_path / "backup")))

    state = instance_state(target, monkeypatch)
    assert state["runs"] == runs
    assert state["materializations"] == {k: sorted(v) for k, v in expected.items()}
    assert state["cursor"] == CURSOR
    # Counted in the restored database itself, not through Dagster.
    engine = sa.create_engine(empty_database)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM runs")).scalar() == 3
    engine.dispose()
    assert state == instance_state(source, monkeypatch)

    # A database that holds runs is refused, then replaced whole with --force (no run twice).
    other_env = distributed_home(tmp_path / "c", empty_database)
    for name, value in other_env.items():
        monkeypatch.setenv(name, value)
    other = load_settings(other_env)
    with pytest.raises(BackupError, match="already holds 3 runs"):
        restore(other, BackupStore(str(tmp_path / "backup")))
    restore(other, BackupStore(str(tmp_path / "backup")), force=True)
    assert instance_state(target, monkeypatch) == state


# "": set but empty, libpq's "no password supplied", which was told as a server down.
@pytest.mark.parametrize("password", ["wrong", None, ""])
def test_a_wrong_or_missing_postgres_password_is_one_line_naming_the_variable(
    tmp_path, postgres_url, password
):
    home = distributed_home(tmp_path / "home", postgres_url)
    write_instance_yaml(load_services_config(home))
    home.pop("DAGSTER_PG_PASSWORD")
    if password is not None:
        home["DAGSTER_PG_PASSWORD"] = password
    backup = cli(tmp_path / "home", "backup", str(tmp_path / "backup"), **home)
    _, err = backup.communicate(timeout=120)
    assert backup.returncode == 1
    # The traceback dagster-postgres's retries end in is not shown.
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("data-platform backup: ") and "DAGSTER_PG_PASSWORD" in last
    assert "make -s services-env" in last
    assert not (tmp_path / "backup").exists()


def test_a_refused_password_is_not_retried(tmp_path, postgres_url, monkeypatch):
    """dagster-postgres retried a refused login five times, backing off (~11 s before the
    line): the password does not change between tries. A server that does not answer still
    is retried (the test above)."""
    import dagster_postgres.utils

    home = distributed_home(tmp_path / "home", postgres_url)
    write_instance_yaml(load_services_config(home))
    for name, value in {**home, "DAGSTER_PG_PASSWORD": "wrong"}.items():
        monkeypatch.setenv(name, value)
    waits: list[float] = []
    monkeypatch.setattr(dagster_postgres.utils, "time", SimpleNamespace(sleep=waits.append))
    with (
        pytest.raises(BackupError, match="refused the password") as refused,
        open_instance(Path(home["DAGSTER_HOME"])),
    ):
        pass
    assert "DAGSTER_PG_PASSWORD" in str(refused.value)
    assert waits == []


def test_pg_dump_on_a_server_gone_is_the_instances_one_line(tmp_path):
    """pg_dump and pg_restore's own failure was shown raw ("pg_dump failed ... Connection
    refused"), saying neither to start PostgreSQL nor what became of the command's work."""
    url = f"postgresql+psycopg2://user:secret@127.0.0.1:{free_port()}/instance"
    with pytest.raises(InstanceUnreachable) as gone:
        run_pg_tool("pg_dump", url, f"--file={tmp_path / 'dump'}")
    message = str(gone.value)
    assert message.startswith("the Dagster instance's PostgreSQL at 127.0.0.1:"), message
    assert "stopped answering pg_dump (Connection refused): start it" in message
    assert message.endswith("; nothing was changed") and "secret" not in message


class UploadGate:
    """A TCP proxy in front of the S3 server that holds every PUT (an upload) until `open()`:
    a slow store, for real, to boto3 and the server alike."""

    def __init__(self, upstream: str) -> None:
        self.upstream = (upstream.split("//")[1].split(":")[0], int(upstream.rsplit(":", 1)[1]))
        self.upload_started = threading.Event()
        self._open = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def open(self) -> None:
        self._open.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(1 << 16):
                if requests and data.startswith(b"PUT "):
                    self.upload_started.set()
                    self._open.wait()
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.open()
        self._server.close()


@dg.op(pool=WAREHOUSE_POOL)
def write_the_warehouse() -> None:
    """A run's warehouse step: the pool slot, then DuckDB's lock (a short wait), then a write."""
    settings = load_settings()
    with connect_with_lock_wait(str(settings.warehouse), timeout=5) as conn:
        conn.execute("INSERT INTO u VALUES (42)")


@dg.job
def writer_job() -> None:
    write_the_warehouse()


def test_the_scheduled_backup_lets_writers_run_while_it_uploads(
    pristine, s3_landing, s3_endpoint, tmp_path, monkeypatch
):
    """The schedule's one op held the `duckdb` slot (and so every warehouse step) through the
    upload and its verification: a slow store stopped the platform. Now only the snapshot holds
    it; with the upload held at the S3 server's door, a writer's step claims the slot, takes
    DuckDB's lock and commits, and the backup then completes, verified and restorable."""
    pool_wait.install()  # the platform's wait for a slot (it sleeps between checks)
    home = copy_home(pristine, tmp_path / "home")
    bucket = s3_landing.url.split("/")[2]
    gate = UploadGate(s3_endpoint)
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(home))
    monkeypatch.setenv(DEST_VARIABLE, f"s3://{bucket}/daily")
    monkeypatch.setenv("AWS_ENDPOINT_URL", gate.url)
    overrides = {"concurrency": {"pools": {"default_limit": 1}}}
    with (
        dg.instance_for_test(overrides=overrides) as instance,
        ThreadPoolExecutor(2) as threads,
    ):
        backup = threads.submit(backup_job.execute_in_process, instance=instance)
        try:
            assert gate.upload_started.wait(timeout=120), backup.result() if backup.done() else ""
            writer = threads.submit(writer_job.execute_in_process, instance=instance)
            assert writer.result(timeout=30).success  # while the upload is still held
            assert not backup.done()
        finally:
            gate.open()
        assert backup.result(timeout=120).success
    gate.close()
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM u WHERE id = 42").fetchone() == (1,)
    root = BackupStore(f"s3://{bucket}/daily")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    [name] = {n.split("/", 1)[0] for n in root.names()}
    assert not list(home.glob(".backup-*"))  # the snapshot's folder is gone
    restored = home_settings(tmp_path / "restored")
    restore(restored, root.child(name))
    assert table_rows(restored.warehouse) == table_rows(pristine / "home" / "warehouse.duckdb")


Found = TypeVar("Found")


def wait_for(found: Callable[[], Found], process: subprocess.Popen, timeout: float = 60.0) -> Found:
    """`found()` once it is truthy, polled while `process` runs."""
    deadline = time.monotonic() + timeout
    while not (result := found()):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"not found within {timeout} s"
        time.sleep(0.05)
    return result


def files_under(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def copy_settled(folder: Path) -> bool:
    """Whether nothing was written into `folder` for half a second: the instance is copied."""
    before = files_under(folder)
    time.sleep(0.5)
    return files_under(folder) == before


def killed_while_staging(home: Path, dest: Path) -> tuple[Path, int]:
    """The staging folder a CLI backup leaves when SIGKILLed halfway through its snapshot, and
    that backup's pid. A writer holds the warehouse, so the backup, once it has copied the
    instance into its folder, waits there for the warehouse's lock: it is killed waiting."""
    writer = start_writer(home / "warehouse.duckdb")
    backup = cli(home, "backup", str(dest))
    try:
        [folder] = wait_for(
            lambda: [p for p in home.glob(".backup-*") if (p / "dagster_home").is_dir()], backup
        )
        wait_for(lambda: copy_settled(folder), backup)
    finally:
        backup.kill()
        backup.communicate()
        writer.stdin.close()
        assert writer.wait(timeout=30) == 0
    return folder, backup.pid


def test_a_backup_killed_while_staging_is_swept_by_the_next_one(pristine, tmp_path, monkeypatch):
    """kill -9 runs no cleanup: the killed backup's copy of the platform stayed in the home for
    good, one more per crash until the disk filled. The next backup (here the schedule's)
    deletes it, says so in its run's log, and completes; nothing else of the home is touched."""
    home = copy_home(pristine, tmp_path / "home")
    stale, pid = killed_while_staging(home, tmp_path / "killed")
    size = files_under(stale)
    others = {p for p in home.rglob("*") if stale not in (p, *p.parents)}

    monkeypatch.setenv("DATA_PLATFORM_HOME", str(home))
    monkeypatch.setenv(DEST_VARIABLE, str(tmp_path / "backups"))
    with dg.instance_for_test() as instance:
        result = backup_job.execute_in_process(instance=instance)
        logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert result.success
    assert not stale.exists() and not list(home.glob(".backup-*"))
    assert others <= set(home.rglob("*"))
    [swept] = [line for line in logs if line.startswith(f"removed {stale}")]
    assert f"a backup or restore that died (pid {pid} on " in swept
    assert swept.endswith(f": {size} bytes freed")

    [name] = [p.name for p in (tmp_path / "backups").iterdir()]
    restored = home_settings(tmp_path / "restored")
    restore(restored, BackupStore(str(tmp_path / "backups" / name)))
    rows = table_rows(restored.warehouse)
    assert rows == table_rows(home / "warehouse.duckdb") and len(rows["main.t"]) == 1500


def unclaimed_folder(path: Path, idle_hours: float) -> Path:
    """A staging folder as a version before the lock made it, untouched for `idle_hours`."""
    (path / "warehouse").mkdir(parents=True)
    (path / "warehouse" / "warehouse.duckdb").write_bytes(b"x" * 4096)
    then = time.time() - idle_hours * 3600
    for p in [*path.rglob("*"), path]:  # the folder after its files: writing them touched it
        os.utime(p, (then, then))
    return path


def test_a_backup_in_progress_keeps_its_folder_while_another_sweeps(
    pristine, tmp_path, monkeypatch
):
    """The scheduled run holds its snapshot from one op to the next. A CLI backup started in
    another process meanwhile sweeps a dead folder beside it and leaves the run's alone: the
    run's upload then completes."""
    home = copy_home(pristine, tmp_path / "home")
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(home))
    monkeypatch.setenv(DEST_VARIABLE, str(tmp_path / "backups"))
    uploading, go_on = threading.Event(), threading.Event()

    def held_upload(*args: object) -> dict:
        uploading.set()
        assert go_on.wait(timeout=120)
        return store_backup(*args)

    monkeypatch.setattr(backup_schedule, "store_backup", held_upload)
    with dg.instance_for_test() as instance, ThreadPoolExecutor(1) as thread:
        job = thread.submit(backup_job.execute_in_process, instance=instance)
        try:
            assert uploading.wait(timeout=120), job.result() if job.done() else ""
            [live] = home.glob(".backup-*")
            dead = unclaimed_folder(home / ".backup-left-by-an-older-version", idle_hours=25)
            by_hand = cli(home, "backup", str(tmp_path / "by-hand"))
            _, err = by_hand.communicate(timeout=120)
            assert by_hand.returncode == 0, err
            assert live.is_dir() and not dead.exists()
            assert f"removed {dead}, a staging folder without an owner" in err
            assert str(live) not in err
        finally:
            go_on.set()
        assert job.result(timeout=120).success
    assert not list(home.glob(".backup-*"))
    assert len(list((tmp_path / "backups").iterdir())) == 1


def test_a_restore_sweeps_too_and_an_unclaimed_folder_waits_a_day(pristine, tmp_path, capsys):
    """A folder without a lock (an older version's) has no owner to ask: it is swept once
    untouched for a day, longer than any backup or restore takes."""
    target = home_settings(tmp_path / "target")
    old = unclaimed_folder(target.home / ".restore-old", idle_hours=25)
    young = unclaimed_folder(target.home / ".backup-young", idle_hours=23)
    restore(target, BackupStore(str(pristine / "backup")))
    err = capsys.readouterr().err
    assert not old.exists() and young.is_dir()
    assert (
        f"removed {old}, a staging folder without an owner, untouched for 25 h: 4096 bytes" in err
    )
    assert table_rows(target.warehouse) == table_rows(pristine / "home" / "warehouse.duckdb")
    assert sorted(p.name for p in target.home.iterdir() if p.name.startswith(".")) == [
        ".backup-young"
    ]


def test_a_retried_backup_run_takes_its_snapshot_again(pristine, tmp_path, monkeypatch):
    """The daemon retries a run whose process died; from its failed step (Dagster's default),
    a run killed while uploading would upload alone, in a process holding no snapshot."""
    assert backup_job.tags[RETRY_STRATEGY_TAG] == "ALL_STEPS"
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(copy_home(pristine, tmp_path / "home")))
    monkeypatch.setenv(DEST_VARIABLE, str(tmp_path / "backups"))
    with dg.instance_for_test() as instance:
        result = backup_job.execute_in_process(
            instance=instance, op_selection=["upload_backup"], raise_on_error=False
        )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "took no snapshot in this process" in failure.step_failure_data.error.message
    assert not (tmp_path / "backups").exists()


# `data-platform restore --force SRC` in a process that SIGKILLs itself just before its
# KILL_AT-th change of a file or folder while putting the backup in place (a rename or a
# removal of something that exists), as kill -9 or the OOM killer would at that instant.
KILLED_RESTORE = """
import os, signal, sys
from data_platform.cli import main
from data_platform.operations import restore_journal

kill_at, changes = int(sys.argv[1]), 0

def killing(change):
    def change_or_die(path, *rest):
        global changes
        changes += os.path.lexists(path)
        if changes == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return change(path, *rest)
    return change_or_die

restore_journal._rename = killing(restore_journal._rename)
restore_journal._remove = killing(restore_journal._remove)
sys.exit(main(["restore", "--force", sys.argv[2]]))
"""


def platform_state(settings: Settings) -> tuple[dict, str, set[str]]:
    return (
        table_rows(settings.warehouse),
        (settings.home / "pii_salt").read_text(),
        run_ids(settings),
    )


def diverged_home(pristine: Path, home: Path, warehouse: Path) -> Settings:
    """A copy of the backed-up home that went on (a row, a run and a salt the backup lacks),
    its warehouse at `warehouse`."""
    settings = home_settings(copy_home(pristine, home), DATA_PLATFORM_WAREHOUSE=str(warehouse))
    shutil.move(home / "warehouse.duckdb", warehouse)
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("INSERT INTO u VALUES (42)")
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        history.finished_run(instance, "raw_job", time.time(), 5, {"step": 2})
    (settings.home / "pii_salt").write_text("another-salt")
    return settings


def test_a_restore_that_fails_half_way_keeps_its_journal_for_the_next_command(
    pristine, tmp_path, monkeypatch
):
    """A restore that raised after its journal (here: the disk full at its third change; also a
    cluster down, Ctrl-C) left its staging folder to `with`, which deleted it, journal and
    backup with it: the home stayed half replaced and nothing could finish it."""
    from data_platform.operations import restore_journal

    backup = pristine / "backup"
    expected = home_settings(tmp_path / "clean")
    restore(expected, BackupStore(str(backup)))
    settings = diverged_home(pristine, tmp_path / "home", tmp_path / "warehouse.duckdb")
    rename, changes = restore_journal._rename, []

    def full_disk_at_the_third(source: Path, target: Path) -> None:
        changes.append(source)
        if len(changes) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        rename(source, target)

    monkeypatch.setattr(restore_journal, "_rename", full_disk_at_the_third)
    with pytest.raises(OSError, match="No space left"):
        restore(settings, BackupStore(str(backup)), force=True)
    monkeypatch.undo()
    [kept] = settings.home.glob(".restore-*")
    assert (kept / JOURNAL).exists()
    sweep(settings.home)  # the journal pins it
    lines: list[str] = []
    finish_interrupted_restores(settings, lines.append)
    assert f"finishing the restore of {backup} (taken " in lines[0]
    assert platform_state(settings) == platform_state(expected)
    assert not [*settings.home.glob(".restore-*"), *settings.home.glob("*.restoring")]


def test_a_file_missing_while_finishing_a_restore_fails_the_command(tmp_path, monkeypatch):
    """The finisher's look for journals ignored a FileNotFoundError (a home not made yet), but
    it also covered the finishing: a part gone missing half way was swallowed, the journal
    kept, and the command went on with a half-restored home."""
    from data_platform.operations import restore_journal
    from data_platform.operations.restore_journal import Replacement, begin
    from data_platform.operations.staging import LOCK_FILE

    settings = home_settings(tmp_path / "home")
    finish_interrupted_restores(settings)  # no home yet: nothing to finish
    staging = settings.home / ".restore-interrupted"
    staging.mkdir(parents=True)
    (staging / LOCK_FILE).touch()
    (staging / "pii_salt").write_text("the backup's salt")
    begin(
        staging,
        "a backup",
        settings.dagster_home,
        [Replacement("pii_salt", str(settings.home / "pii_salt"))],
    )

    def gone(source: Path, target: Path) -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(source))

    monkeypatch.setattr(restore_journal, "_rename", gone)
    with pytest.raises(FileNotFoundError):
        finish_interrupted_restores(settings, [].append)
    assert (staging / JOURNAL).exists()


def test_a_restore_killed_anywhere_while_putting_in_place_is_finished_by_the_next_command(
    pristine, tmp_path
):
    """Killed between two of its replacements, a restore left a home no platform ever had (the
    backup's instance beside the old warehouse, the old salt beside restored hashes), and its
    staging folder, the only copy of the rest, was swept. Killed before each change in turn,
    its folder survives a sweep, and the restore is finished by the next command (`sql` at
    every fourth point, the same `restore` at every fourth from the third, else the call made
    in-process): the home is the backup's, nothing else is left. The warehouse is on another
    file system (tmpfs), so its file is copied where the instance's folder is renamed."""
    backup = pristine / "backup"
    expected = home_settings(tmp_path / "clean")
    restore(expected, BackupStore(str(backup)))
    elsewhere = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        for kill_at in itertools.count(1):
            warehouse = elsewhere / f"warehouse-{kill_at}.duckdb"
            settings = diverged_home(pristine, tmp_path / f"home-{kill_at}", warehouse)
            env = cli_env(settings.home, DATA_PLATFORM_WAREHOUSE=str(warehouse))
            killed = subprocess.run(
                [sys.executable, "-c", KILLED_RESTORE, str(kill_at), str(backup)],
                env=env,
                capture_output=True,
                text=True,
            )
            if killed.returncode == 0:
                break  # no change left to be killed before
            assert killed.returncode == -signal.SIGKILL, killed.stderr
            sweep(settings.home)  # a backup's, in a process that started before the kill
            if kill_at % 4 == 1:
                finisher = cli(settings.home, "sql", "--format", "csv", "SELECT 1", **env)
                err = finisher.communicate(timeout=120)[1]
                assert finisher.returncode == 0, err
            elif kill_at % 4 == 3:
                # The same restore run again is done once it finished the interrupted one: it
                # refused the home that one had filled, exit 1.
                finisher = cli(settings.home, "restore", str(backup), **env)
                err = finisher.communicate(timeout=120)[1]
                assert finisher.returncode == 0, err
                assert err.splitlines()[-1].startswith(f"restored {backup} (taken "), err
            else:
                lines = []
                finish_interrupted_restores(settings, lines.append)
                err = "\n".join(lines)
            assert f"finishing the restore of {backup} (taken " in err, kill_at
            assert platform_state(settings) == platform_state(expected), kill_at
            leftovers = [*settings.home.glob(".restore-*"), *settings.home.glob("*.restoring")]
            assert leftovers == [] and not list(elsewhere.glob("*.restoring")), kill_at
        assert platform_state(settings) == platform_state(expected)
        assert kill_at > 10  # each replacement's steps were kill points
    finally:
        shutil.rmtree(elsewhere)


# `data-platform restore --force SRC` in a process that SIGKILLs itself as soon as pg_restore
# has committed the backup's instance into the database.
KILLED_AFTER_PG_RESTORE = """
import os, signal, sys
from data_platform.cli import main
from data_platform.operations import restore

run_pg_tool = restore.run_pg_tool

def then_die(tool, *args):
    run_pg_tool(tool, *args)
    if tool == "pg_restore":
        os.kill(os.getpid(), signal.SIGKILL)

restore.run_pg_tool = then_die
sys.exit(main(["restore", "--force", sys.argv[1]]))
"""


def test_a_postgres_restore_killed_right_after_pg_restore_is_finished_by_the_next_command(
    tmp_path, postgres_url, monkeypatch
):
    """pg_restore ran before the journal was written: killed right after it, a restore left
    the backup's runs and cursors in the database beside the home's old warehouse and salt,
    and nothing to finish it. Now it is the journal's first step, run again by the finisher."""
    env = distributed_home(tmp_path / "home", postgres_url)
    write_instance_yaml(load_services_config(env))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(env)
    with duckdb.connect(str(settings.warehouse)) as conn:
        conn.execute("CREATE TABLE t AS SELECT range AS id FROM range(10)")
    (settings.home / "pii_salt").write_text("a-salt")
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        history.finished_run(instance, "raw_job", time.time() - 60, 5, {"step": 2})
    backed_up = platform_state(settings)
    take_backup(settings, BackupStore(str(tmp_path / "backup")))
    # The home goes on: a row, a run and a salt the backup lacks.
    with duckdb.connect(str(settings.warehouse)) as conn:
        conn.execute("INSERT INTO t VALUES (42)")
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        history.finished_run(instance, "raw_job", time.time(), 5, {"step": 2})
    (settings.home / "pii_salt").write_text("another-salt")

    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_PG_RESTORE, str(tmp_path / "backup")],
        env=cli_env(settings.home, **env),
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    sweep(settings.home)  # a backup's, in a process that started before the kill
    lines: list[str] = []
    finish_interrupted_restores(settings, lines.append)
    assert platform_state(settings) == backed_up
    assert f"finishing the restore of {tmp_path / 'backup'} (taken " in lines[0]
    assert not list(settings.home.glob(".restore-*"))


def test_a_backup_without_the_warehouse_of_a_materialized_instance_is_refused(pristine, tmp_path):
    """With DATA_PLATFORM_WAREHOUSE unset in the backup's shell, the warehouse was silently
    skipped and the backup sealed "verified": its restore brought back runs and cursors beside
    no warehouse at all."""
    home = copy_home(pristine, tmp_path / "home")
    settings = home_settings(home)
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        run = history.finished_run(instance, "raw_job", time.time(), 5, {"step": 2})
        history.materialization(instance, run, time.time(), dg.AssetKey(["raw", "events"]))
    shutil.move(home / "warehouse.duckdb", tmp_path / "elsewhere.duckdb")
    backup = cli(home, "backup", str(tmp_path / "backup"))
    _, err = backup.communicate(timeout=120)
    assert backup.returncode == 1, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "has materializations but the warehouse" in err
    assert "set DATA_PLATFORM_WAREHOUSE" in err
    assert not (tmp_path / "backup" / "manifest.json").exists()


def test_a_backup_with_a_mistyped_dagster_home_is_refused(pristine, tmp_path):
    """A DAGSTER_HOME naming no folder copied no instance: the backup held the warehouse
    alone and said "2 files, verified"."""
    home = copy_home(pristine, tmp_path / "home")
    mistyped = tmp_path / "dagster_hmoe"
    backup = cli(home, "backup", str(tmp_path / "backup"), DAGSTER_HOME=str(mistyped))
    _, err = backup.communicate(timeout=120)
    assert backup.returncode == 1, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"DAGSTER_HOME={str(mistyped)!r} does not exist, but the warehouse " in err
    assert not mistyped.exists()
    assert not (tmp_path / "backup" / "manifest.json").exists()


def test_a_forced_restore_removes_the_parts_the_backup_lacks(pristine, tmp_path):
    """A backup of a new platform (runs, nothing materialized: no warehouse, no salt) restored
    with --force kept the target's old warehouse and salt beside the backup's instance."""
    new = home_settings(tmp_path / "new")
    new.dagster_home.mkdir(parents=True)
    with dg.DagsterInstance.from_config(str(new.dagster_home)) as instance:
        history.finished_run(instance, "raw_job", time.time(), 5, {"step": 2})
    manifest = take_backup(new, BackupStore(str(tmp_path / "backup")))
    target = home_settings(copy_home(pristine, tmp_path / "target"))
    restore(target, BackupStore(str(tmp_path / "backup")), force=True)
    assert not target.warehouse.exists() and not (target.home / "pii_salt").exists()
    assert run_ids(target) == run_ids(new)
    assert manifest["parts"] == ["instance"]


def test_a_forced_restore_of_a_backup_without_an_instance_leaves_no_old_run(pristine, tmp_path):
    """A backup of a new platform before its first run (its salt alone) restored with --force
    kept the target's runs and cursors beside no warehouse: the sensors' cursors had seen files
    that no table held any more, so those days were never loaded again."""
    new = home_settings(tmp_path / "new")
    new.home.mkdir()
    (new.home / "pii_salt").write_text("a-new-salt")
    manifest = take_backup(new, BackupStore(str(tmp_path / "backup")))
    target = home_settings(copy_home(pristine, tmp_path / "target"))
    restore(target, BackupStore(str(tmp_path / "backup")), force=True)
    assert manifest["parts"] == ["salt"]
    assert not target.warehouse.exists()
    assert (target.home / "pii_salt").read_text() == "a-new-salt"
    assert run_ids(target) == set()


def test_a_sensor_tick_between_two_database_copies_never_restores_a_cursor_past_its_run(
    pristine, tmp_path, monkeypatch
):
    """The sensor daemon writes a run into runs.db, then its cursor into schedules.db. The
    databases were copied in path order, runs.db first: a tick between the two copies restored
    the new cursor without its run, and that day was never loaded. Here the tick happens just
    as the backup opens the second of the two."""
    from data_platform.operations import snapshot

    settings = home_settings(copy_home(pristine, tmp_path / "home"))
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        history.sensor_tick(instance, SENSOR, time.time(), cursor="before")
    opened: list[str] = []
    tick_run: list[str] = []

    def tick_at_the_second(database: str | Path, *args, **kwargs) -> sqlite3.Connection:
        name = str(database).removeprefix("file:").split("?")[0]
        source = str(database).endswith("?mode=ro")  # not the copy being written
        if source and name.endswith(("/history/runs.db", "/schedules/schedules.db")):
            opened.append(name)
            if len(opened) == 2:
                with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
                    run = history.finished_run(instance, "raw_job", time.time(), 1, {"step": 1})
                    [state] = [
                        s for s in instance.all_instigator_state() if s.instigator_name == SENSOR
                    ]
                    data = state.instigator_data._replace(cursor="after")
                    instance.update_instigator_state(state.with_data(data))
                tick_run.append(run.run_id)
        return sqlite3.connect(database, *args, **kwargs)

    monkeypatch.setattr(snapshot, "sqlite3", SimpleNamespace(connect=tick_at_the_second))
    take_backup(settings, BackupStore(str(tmp_path / "backup")))
    monkeypatch.undo()
    restored = home_settings(tmp_path / "restored")
    restore(restored, BackupStore(str(tmp_path / "backup")))
    with dg.DagsterInstance.from_config(str(restored.dagster_home)) as instance:
        [state] = [s for s in instance.all_instigator_state() if s.instigator_name == SENSOR]
        runs = {r.run_id for r in instance.get_runs()}
    cursor = state.instigator_data.cursor
    assert len(tick_run) == 1 and (cursor == "before" or tick_run[0] in runs), (cursor, runs)
    assert [Path(p).name for p in opened] == ["schedules.db", "runs.db"]


def test_a_run_started_while_the_instance_is_copied_keeps_its_event_log(
    pristine, tmp_path, monkeypatch
):
    """The instance's files were listed once, before the first copy: a run started during the
    copy of schedules.db was in the copy of runs.db, but its event log (history/runs/<run
    id>.db) was not copied at all, and the restored run had no events."""
    from data_platform.operations import snapshot

    settings = home_settings(copy_home(pristine, tmp_path / "home"))
    started: list[str] = []

    def run_during_the_first(database: str | Path, *args, **kwargs) -> sqlite3.Connection:
        if not started and str(database).endswith("/schedules/schedules.db?mode=ro"):
            with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
                run = history.finished_run(instance, "raw_job", time.time(), 1, {"step": 1})
            started.append(run.run_id)
        return sqlite3.connect(database, *args, **kwargs)

    monkeypatch.setattr(snapshot, "sqlite3", SimpleNamespace(connect=run_during_the_first))
    snapshot.copy_sqlite_instance(settings.dagster_home, tmp_path / "copy")
    monkeypatch.undo()
    [run_id] = started
    assert (tmp_path / "copy" / "history" / "runs" / f"{run_id}.db").is_file()
    with dg.DagsterInstance.from_config(str(tmp_path / "copy")) as instance:
        assert instance.get_run_by_id(run_id) is not None
        assert instance.all_logs(run_id)


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ('{"format": 1}', "is not a backup's manifest (files missing or wrong)"),
        ("[]", "is not a backup's manifest (format missing or wrong)"),
        ('{"format": 2, "files": []}', "is of format 2; this version reads format 1"),
        (
            '{"format": 1, "created_at": "x", "instance_storage": "sqlite", "versions": {}, '
            '"files": [{"path": "../../escaped", "sha256": "0"}]}',
            "is not a backup's manifest (files missing or wrong)",
        ),
    ],
)
def test_a_manifest_of_the_wrong_shape_or_format_is_one_line(pristine, tmp_path, manifest, message):
    """A manifest that is JSON of the wrong shape ended in a KeyError traceback, and its format
    was never read: a newer version's backup was restored as if this one had written it."""
    backup = copy_home(pristine, tmp_path / "backup", "backup")
    (backup / "manifest.json").write_text(manifest)
    home = tmp_path / "home"
    result = cli(home, "restore", str(backup))
    _, err = result.communicate(timeout=120)
    assert result.returncode == 1, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert message in err
    assert err.rstrip().endswith(("use another backup", "restore it with the version that took it"))
    assert not (tmp_path / "escaped").exists()
    assert not home.exists() or not [p for p in home.iterdir() if not p.name.startswith(".")]


def test_a_corrupt_warehouse_is_not_called_locked(pristine, tmp_path):
    """Any DuckDB IOException was reported as "stayed locked by a writer for 120 s"."""
    home = copy_home(pristine, tmp_path / "home")
    (home / "warehouse.duckdb").write_bytes(b"not a database" * 1000)
    backup = cli(home, "backup", str(tmp_path / "backup"))
    _, err = backup.communicate(timeout=120)
    assert backup.returncode == 1, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "locked" not in err and "not a valid DuckDB database file" in err
    assert "DATA_PLATFORM_WAREHOUSE" in err
    assert not (tmp_path / "backup" / "manifest.json").exists()


def refused_restore(home: Path, backup: Path, **settings: str) -> str:
    """`data-platform restore --force`'s one line, once it exited 1."""
    result = cli(home, "restore", "--force", str(backup), **settings)
    _, err = result.communicate(timeout=120)
    assert result.returncode == 1, err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_a_sqlite_backup_is_refused_in_a_home_on_postgres(pristine, tmp_path):
    """The backup's instance folder replaced the home's whole, dagster.yaml included: the home
    silently moved from its PostgreSQL database onto the backup's SQLite files."""
    env = distributed_home(tmp_path / "home", "postgresql://user:secret@127.0.0.1:1/nothing")
    config = write_instance_yaml(load_services_config(env))
    before = config.read_text()
    err = refused_restore(tmp_path / "home", pristine / "backup", **env)
    assert "this backup's Dagster instance is on SQLite" in err and "on PostgreSQL" in err
    assert config.read_text() == before
    assert not (tmp_path / "home" / "warehouse.duckdb").exists()


def test_a_duckdb_backup_is_refused_in_a_home_on_spark(pristine, tmp_path):
    """Restored with DATA_PLATFORM_ENGINE=spark, a DuckDB backup replaced the home's DuckDB
    file (not the warehouse that home uses) unchecked for a writer, whose rows were lost."""
    home = copy_home(pristine, tmp_path / "home")
    with duckdb.connect(str(home / "warehouse.duckdb")) as conn:
        conn.execute("INSERT INTO u VALUES (1)")
    spark = {"DATA_PLATFORM_ENGINE": "spark", "DATA_PLATFORM_SPARK_REMOTE": "sc://127.0.0.1:1"}
    err = refused_restore(home, pristine / "backup", **spark)
    assert "this backup's warehouse is a DuckDB file, and DATA_PLATFORM_ENGINE=spark" in err
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM u").fetchone() == (1,)


def test_a_forced_restore_is_refused_while_a_writer_holds_the_warehouse(pristine, tmp_path):
    """The warehouse was renamed under a live writer, whose commit then left a
    warehouse.duckdb.wal that made every later open fail."""
    home = copy_home(pristine, tmp_path / "home")
    writer = start_writer(home / "warehouse.duckdb")
    try:
        err = refused_restore(home, pristine / "backup")
    finally:
        writer.stdin.close()
        assert writer.wait(timeout=30) == 0
    assert "is open in a running process" in err and "stop the platform" in err
    assert len(table_rows(home / "warehouse.duckdb")["main.t"]) == 1500  # the writer's commit


def test_a_forced_restore_is_refused_while_a_backup_of_the_home_runs(pristine, tmp_path):
    """A backup copies the instance's databases one after the other, then the warehouse: a
    forced restore between two copies had it seal, verified, a backup of two platforms (the old
    runs and cursors beside the restored warehouse and salt)."""
    settings = home_settings(copy_home(pristine, tmp_path / "home"))
    with duckdb.connect(str(settings.warehouse)) as conn:
        conn.execute("INSERT INTO u VALUES (42)")
    with (
        open_staging(settings.home, "backup", report=print),  # a backup at work
        pytest.raises(BackupError, match=r"a backup of .* is running \(pid "),
    ):
        restore(settings, BackupStore(str(pristine / "backup")), force=True)
    assert table_rows(settings.warehouse)["main.u"] == [("42",)]
    assert not [*settings.home.glob(".restore-*"), *settings.home.glob("*.restoring")]


def test_a_forced_restore_is_refused_while_a_run_is_alive(pristine, tmp_path):
    """A run whose process is alive (here: this one's) would go on writing into the replaced
    instance; a run whose process is gone is no reason to refuse."""
    home = copy_home(pristine, tmp_path / "home")
    settings = home_settings(home)
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        dead = history.add_run(instance, "raw_job", dg.DagsterRunStatus.NOT_STARTED)
        history.emit(instance, dead, dg.DagsterEventType.RUN_START, time.time())
        gone = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            text=True,
            check=True,
        )
        instance.report_engine_event(
            "the run's process", dead, EngineEventData.in_process(int(gone.stdout))
        )
        alive = history.add_run(instance, "raw_job", dg.DagsterRunStatus.NOT_STARTED)
        history.emit(instance, alive, dg.DagsterEventType.RUN_START, time.time())
        announce_run_process(instance, alive.run_id)
        # Started a day ago and never announced a process: nothing runs it, and with the
        # platform stopped nothing would ever end it (the restore was refused for good).
        unannounced = history.add_run(instance, "raw_job", dg.DagsterRunStatus.NOT_STARTED)
        history.emit(instance, unannounced, dg.DagsterEventType.RUN_START, time.time() - 86400)
    err = refused_restore(home, pristine / "backup")
    assert f"is in use ({alive.run_id}: run process {os.getpid()} is alive)" in err
    assert dead.run_id not in err and unannounced.run_id not in err
    assert alive.run_id in run_ids(settings)


def test_a_forced_restore_is_refused_while_a_run_is_being_started_or_the_daemon_beats(
    pristine, tmp_path
):
    """Both write the instance at any moment, before any run announces a process: a forced
    restore began replacing it under them and failed halfway ("Directory not empty"), as did
    they ("no such table: event_logs"). A daemon stopped for long is no reason to refuse."""
    home = copy_home(pristine, tmp_path / "home")
    settings = home_settings(home)
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        # `materialize` made it and builds its plan: this process, on this host.
        starting = history.add_run(instance, "raw_job", dg.DagsterRunStatus.NOT_STARTED)
        tags = {WORKER_HOST_TAG: this_host(), CREATOR_PID_TAG: str(os.getpid())}
        instance.add_run_tags(starting.run_id, tags)
        instance.add_daemon_heartbeat(DaemonHeartbeat(time.time() - 20, "SENSOR", "d", None))
    err = refused_restore(home, pristine / "backup")
    assert f"{starting.run_id}: made by process {os.getpid()}, which is starting it" in err
    beat = re.search(r"dagster-daemon: beat (\d+) s ago", err)
    assert beat and 20 <= int(beat[1]) < 75, err  # 20 s, and the command's start-up

    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        instance.report_run_failed(instance.get_run_by_id(starting.run_id))
        instance.add_daemon_heartbeat(DaemonHeartbeat(time.time() - 600, "SENSOR", "d", None))
    assert running_runs(settings) == []


PG_DB = "postgres_db: {hostname: 127.0.0.1, username: u, password: p, db_name: d}"


def per_storage(run: str, event: str, schedule: str, config: str) -> str:
    """A dagster.yaml naming each storage's module and class (Dagster's older shape)."""
    return "".join(
        f"{name}:\n  module: {module}\n  class: {cls}\n  config: {config}\n"
        for name, (module, cls) in (
            ("run_storage", run.split(":")),
            ("event_log_storage", event.split(":")),
            ("schedule_storage", schedule.split(":")),
        )
    )


SQLITE_DIR = "{base_dir: /srv/postgres-exports/dagster}"
STORAGE_SHAPES = {
    "no storage: Dagster's SQLite default": ("telemetry: {enabled: false}\n", "sqlite"),
    "storage.sqlite under a folder named postgres": (
        f"storage:\n  sqlite: {SQLITE_DIR}\n",
        "sqlite",
    ),
    "storage.postgres, postgres_db": (f"storage:\n  postgres: {{{PG_DB}}}\n", "postgres"),
    "storage.postgres, postgres_url": (
        "storage:\n  postgres: {postgres_url: 'postgresql://u:p@127.0.0.1:1/d'}\n",
        "postgres",
    ),
    "storage.custom of dagster_postgres": (
        "storage:\n  custom:\n    module: dagster_postgres\n    class: DagsterPostgresStorage\n"
        f"    config: {{{PG_DB}}}\n",
        "postgres",
    ),
    "each storage on dagster_postgres": (
        per_storage(
            "dagster_postgres.run_storage:PostgresRunStorage",
            "dagster_postgres.event_log:PostgresEventLogStorage",
            "dagster_postgres:PostgresScheduleStorage",
            f"{{{PG_DB}}}",
        ),
        "postgres",
    ),
    "each storage on SQLite under a folder named postgres": (
        per_storage(
            "dagster._core.storage.runs:SqliteRunStorage",
            "dagster._core.storage.event_log:SqliteEventLogStorage",
            "dagster._core.storage.schedules:SqliteScheduleStorage",
            SQLITE_DIR,
        ),
        "sqlite",
    ),
    "the run storage alone on dagster_postgres": (
        "run_storage:\n  module: dagster_postgres\n  class: PostgresRunStorage\n"
        f"  config: {{{PG_DB}}}\n",
        "puts its run storage on PostgreSQL, its event log storage on SQLite, its schedule "
        "storage on SQLite: backup and restore take an instance whose storages are all on one",
    ),
    "storage.mysql": (
        "storage:\n  mysql: {mysql_url: 'mysql://u:p@127.0.0.1:1/d'}\n",
        "puts the Dagster instance's storage on mysql: backup and restore know SQLite and "
        "PostgreSQL (dagster_postgres) only",
    ),
}


def dagster_storage_packages(dagster_home: Path) -> set[str]:
    """The packages whose classes Dagster itself resolves the instance's three storages to
    (a `custom` storage wraps its class in Dagster's own for each): the test's oracle."""
    from dagster._core.instance.ref import InstanceRef

    ref = InstanceRef.from_dir(str(dagster_home))  # raises on a shape Dagster refuses
    parts = [ref.run_storage_data, ref.event_storage_data, ref.schedule_storage_data]
    if parts[0] is not None and parts[0].module_name.endswith("legacy_storage"):
        parts = [ref.storage_data]
    return {part.module_name.split(".")[0] for part in parts if part is not None}


@pytest.mark.parametrize(("shape", "expected"), STORAGE_SHAPES.values(), ids=list(STORAGE_SHAPES))
def test_one_rule_tells_the_storage_of_each_dagster_yaml_shape(tmp_path, shape, expected):
    """Backup (a class name), restore (the word postgres as a key or in a module) and the
    PostgreSQL target's check (an isinstance) each told the storage their own way, and a
    configuration where they disagreed was backed up as one kind and refused as the other.
    One rule now, over the shapes Dagster accepts, agreeing with the classes Dagster resolves;
    an instance split over both, or on neither, is refused in one line."""
    from data_platform.operations.instance_storage import instance_storage

    (tmp_path / "dagster.yaml").write_text(shape)
    packages = dagster_storage_packages(tmp_path)
    if expected in ("sqlite", "postgres"):
        assert packages == {"dagster" if expected == "sqlite" else "dagster_postgres"}
        assert instance_storage(tmp_path) == expected
    else:
        assert packages != {"dagster"} and packages != {"dagster_postgres"}
        with pytest.raises(BackupError) as refused:
            instance_storage(tmp_path)
        assert str(refused.value).startswith(f"{tmp_path / 'dagster.yaml'} {expected}")


def test_a_backup_of_an_instance_split_over_sqlite_and_postgres_is_refused(tmp_path, postgres_url):
    """Its runs on SQLite, its event log on PostgreSQL: backup read the run storage's class and
    sealed a SQLite backup without the event log's database (every materialization), which
    restore, reading the whole file, then refused into that same home."""
    home = tmp_path / "home"
    (home / "dagster_home").mkdir(parents=True)
    config = home / "dagster_home" / "dagster.yaml"
    config.write_text(
        "event_log_storage:\n  module: dagster_postgres\n  class: PostgresEventLogStorage\n"
        f"  config: {{postgres_url: '{postgres_url}'}}\n"
    )
    backup = cli(home, "backup", str(tmp_path / "backup"))
    _, err = backup.communicate(timeout=120)
    assert backup.returncode == 1, err
    assert err == (
        f"data-platform backup: {config} puts its run storage on SQLite, its event log storage "
        "on PostgreSQL, its schedule storage on SQLite: backup and restore take an instance "
        "whose storages are all on one of them (storage: postgres or sqlite)\n"
    )
    assert not (tmp_path / "backup").exists()


def test_a_postgres_that_does_not_answer_is_one_line_for_backup_and_restore(
    tmp_path, postgres_url, monkeypatch
):
    """With the home's PostgreSQL down, a backup and a forced restore's look at the runs in
    flight printed dagster-postgres's six retry warnings, then its traceback."""
    source = distributed_home(tmp_path / "source", postgres_url)
    write_instance_yaml(load_services_config(source))
    for name, value in source.items():
        monkeypatch.setenv(name, value)
    duckdb.connect(str(tmp_path / "source" / "warehouse.duckdb")).close()
    take_backup(load_settings(source), BackupStore(str(tmp_path / "backup")))

    port = free_port()  # nothing listens on it: the server is down
    down_url = sa.engine.make_url(postgres_url).set(port=port)
    env = distributed_home(tmp_path / "home", down_url.render_as_string(hide_password=False))
    config = write_instance_yaml(load_services_config(env))
    duckdb.connect(str(tmp_path / "home" / "warehouse.duckdb")).close()
    before = snapshot_of(tmp_path / "home")
    line = (
        f"the Dagster instance's PostgreSQL at 127.0.0.1:{port} does not answer (Connection "
        "refused): start it (the local one: make services-up), or point "
        f"{config} at the server that runs (for the local services: "
        'eval "$(make -s services-env)"); nothing was changed'
    )
    # Side by side: each waits through dagster-postgres's retries (seconds) before it fails.
    assert backup_and_restore_refused(tmp_path / "home", tmp_path / "backup", env) == {
        "backup": line,
        "restore": line,
    }
    assert snapshot_of(tmp_path / "home") == before
    assert not (tmp_path / "new").exists()

    # Into a new home (nothing but its dagster.yaml): the line named the restore's staged copy
    # of that file, removed when the command ends, instead of the home's own.
    empty = distributed_home(tmp_path / "empty", down_url.render_as_string(hide_password=False))
    empty_config = write_instance_yaml(load_services_config(empty))
    restore_into_empty = cli(tmp_path / "empty", "restore", str(tmp_path / "backup"), **empty)
    _, err = restore_into_empty.communicate(timeout=180)
    assert restore_into_empty.returncode == 1, err
    assert err == f"data-platform restore: {line.replace(str(config), str(empty_config))}\n"


def backup_and_restore_refused(home: Path, backup: Path, env: dict[str, str]) -> dict[str, str]:
    """`data-platform backup` into `home`'s sibling `new` and `restore --force backup`, side by
    side in `home`: each one's line once both exited 1 with that line alone."""
    commands = {
        "backup": cli(home, "backup", str(home.with_name("new")), **env),
        "restore": cli(home, "restore", "--force", str(backup), **env),
    }
    said = {command: process.communicate(timeout=180)[1] for command, process in commands.items()}
    assert [process.returncode for process in commands.values()] == [1, 1], said
    prefixes = {command: f"data-platform {command}: " for command in commands}
    assert all(said[c].startswith(prefixes[c]) and said[c].count("\n") == 1 for c in said), said
    return {command: said[command][len(prefixes[command]) : -1] for command in commands}


# `data-platform restore --force SRC` in which a writer (WRITER, argv[2]) takes the warehouse's
# lock right after the first check that the platform is stopped: it started during the restore.
WRITER_DURING_RESTORE = """
import subprocess, sys
from data_platform.cli import main
from data_platform.operations import restore

check_stopped, writers = restore.check_stopped, []

def then_a_writer_starts(settings):
    check_stopped(settings)
    if not writers:
        writer = subprocess.Popen(
            [sys.executable, "-c", sys.argv[2], str(settings.warehouse)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert writer.stdout.readline() == b"inserted\\n"
        writers.append(writer)

restore.check_stopped = then_a_writer_starts
try:
    code = main(["restore", "--force", sys.argv[1]])
finally:
    for writer in writers:
        writer.stdin.close()  # it commits
        writer.wait()
sys.exit(code)
"""


def test_a_writer_that_starts_during_a_forced_restore_is_refused_before_the_home_changes(
    pristine, tmp_path
):
    """The platform was checked stopped once, before the download: a writer that started
    after it had the warehouse renamed under it. Checked again at the point of no return."""
    home = copy_home(pristine, tmp_path / "home")
    settings = home_settings(home)
    runs = run_ids(settings)
    restoring = subprocess.run(
        [sys.executable, "-c", WRITER_DURING_RESTORE, str(pristine / "backup"), WRITER],
        env=cli_env(home),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert restoring.returncode == 1, restoring.stderr
    err = restoring.stderr
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"data-platform restore: the warehouse {settings.warehouse} is open")
    assert "stop the platform" in err
    # The writer's commit is in the home's warehouse, which was left in place, with its runs.
    assert len(table_rows(settings.warehouse)["main.t"]) == 1500
    assert run_ids(settings) == runs
    assert not [*home.glob(".restore-*"), *home.glob("*.restoring")]


def test_a_platform_started_during_a_restore_into_an_empty_home_is_refused(
    pristine, tmp_path, monkeypatch
):
    """The home was checked empty once, before the download: a platform started meanwhile
    (make run, a materialize) had its runs replaced without --force. Checked again at the point
    of no return, as a forced restore checks for a writer."""
    from data_platform.operations import restore as restoring

    settings = home_settings(tmp_path / "home")
    fetch = restoring.fetch_verified

    def then_a_run(*args) -> None:
        fetch(*args)
        settings.dagster_home.mkdir(parents=True, exist_ok=True)
        with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
            history.finished_run(instance, "raw_job", time.time(), 5, {"step": 2})

    monkeypatch.setattr(restoring, "fetch_verified", then_a_run)
    with pytest.raises(BackupError, match="already holds a platform's state"):
        restore(settings, BackupStore(str(pristine / "backup")))
    assert len(run_ids(settings)) == 1  # the new platform's run, left in place
    assert not (settings.home / "pii_salt").exists()
    assert not [*settings.home.glob(".restore-*"), *settings.home.glob("*.restoring")]


# Each SQLite shape that puts the instance's files outside DAGSTER_HOME, and which storage the
# refusal names.
OUTSIDE_SHAPES = {
    "storage.sqlite": ("storage:\n  sqlite:\n    base_dir: {outside}\n", "storage"),
    "the event log storage from an env: variable": (
        "event_log_storage:\n  module: dagster._core.storage.event_log\n"
        "  class: SqliteEventLogStorage\n  config:\n    base_dir: {env: DAGSTER_EVENTS_DIR}\n",
        "event log storage",
    ),
}


@pytest.mark.parametrize(("shape", "storage"), OUTSIDE_SHAPES.values(), ids=list(OUTSIDE_SHAPES))
def test_a_sqlite_instance_with_files_outside_dagster_home_is_refused_by_backup(
    tmp_path, monkeypatch, shape, storage
):
    """A base_dir outside DAGSTER_HOME holds the instance's runs, event logs or cursors, and the
    backup, copying DAGSTER_HOME only, was sealed without them (exit 0)."""
    outside = tmp_path / "srv" / "dagster"
    monkeypatch.setenv("DAGSTER_EVENTS_DIR", str(outside))
    settings = home_settings(tmp_path / "home")
    settings.dagster_home.mkdir(parents=True)
    config = settings.dagster_home / "dagster.yaml"
    config.write_text(shape.replace("{outside}", str(outside)))
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        history.finished_run(instance, "raw_job", time.time() - 60, 5, {"step": 2})
    assert any(outside.rglob("*.db"))  # Dagster did write there

    backup = cli(settings.home, "backup", str(tmp_path / "backup"), DAGSTER_EVENTS_DIR=str(outside))
    _, err = backup.communicate(timeout=120)
    assert backup.returncode == 1, err
    assert err == (
        f"data-platform backup: {config} puts its {storage} in {outside.resolve()}, outside "
        f"DAGSTER_HOME ({settings.dagster_home}): a backup copies DAGSTER_HOME only; with the "
        "platform stopped, move those files to Dagster's default place in it (history/, "
        "schedules/) and remove base_dir\n"
    )
    assert not (tmp_path / "backup").exists()


def test_a_sqlite_backup_whose_base_dir_names_its_home_is_restored_only_there(tmp_path):
    """A dagster.yaml naming its DAGSTER_HOME as base_dir (a common way to write it) is restored
    with it: restored into another home, that instance went on reading and writing the files of
    the home it was taken from, not the backup's."""
    source = home_settings(tmp_path / "a")
    source.dagster_home.mkdir(parents=True)
    (source.dagster_home / "dagster.yaml").write_text(
        f"storage:\n  sqlite:\n    base_dir: {source.dagster_home}\n"
    )
    with dg.DagsterInstance.from_config(str(source.dagster_home)) as instance:
        history.finished_run(instance, "raw_job", time.time() - 60, 5, {"step": 2})
    runs = run_ids(source)
    take_backup(source, BackupStore(str(tmp_path / "backup")))

    other = home_settings(tmp_path / "b")
    err = refused_restore(other.home, tmp_path / "backup")
    assert err == (
        f"data-platform restore: this backup's dagster.yaml puts its storage in "
        f"{source.dagster_home.resolve()}, outside DAGSTER_HOME ({other.dagster_home}): "
        "restored here, the instance would read that folder instead of the backup's copy; "
        "restore it into the DAGSTER_HOME it was taken from\n"
    )
    assert not any(other.home.rglob("*"))  # nothing was changed
    # Into the home it was taken from, lost: the backup held its files.
    shutil.rmtree(source.dagster_home)
    restore(source, BackupStore(str(tmp_path / "backup")))
    assert run_ids(source) == runs


def test_postgres_storages_in_different_databases_are_refused_by_backup_and_restore(
    tmp_path, postgres_url, empty_database
):
    """Each storage's own section can name its own database: pg_dump took the run storage's
    alone (a backup without the event log: every materialization), and pg_restore replaced the
    runs beside the other database's event log."""
    run_db, event_db = (dagster_postgres_url(url) for url in (postgres_url, empty_database))
    source = tmp_path / "source"
    (source / "dagster_home").mkdir(parents=True)
    write_postgres_instance(source / "dagster_home", postgres_url)
    duckdb.connect(str(source / "warehouse.duckdb")).close()
    take_backup(home_settings(source), BackupStore(str(tmp_path / "backup")))

    databases = {"run": run_db, "event_log": event_db, "schedule": run_db}
    home = tmp_path / "home"
    (home / "dagster_home").mkdir(parents=True)
    config = home / "dagster_home" / "dagster.yaml"
    config.write_text(
        "".join(
            f"{storage}_storage:\n  module: dagster_postgres\n"
            f"  class: {cls}\n  config: {{postgres_url: '{databases[storage]}'}}\n"
            for storage, cls in (
                ("run", "PostgresRunStorage"),
                ("event_log", "PostgresEventLogStorage"),
                ("schedule", "PostgresScheduleStorage"),
            )
        )
    )
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        history.finished_run(instance, "raw_job", time.time() - 60, 5, {"step": 2})
    before = snapshot_of(home)

    def where(url: str) -> str:
        parts = sa.engine.make_url(url)
        return f"database {parts.database} at {parts.host}:{parts.port}"

    line = (
        f"{config} puts its run storage in {where(postgres_url)}, its event log storage in "
        f"{where(empty_database)}, its schedule storage in {where(postgres_url)}: backup and "
        "restore take an instance whose storages are all in one database (storage: postgres)"
    )
    assert backup_and_restore_refused(home, tmp_path / "backup", {}) == {
        "backup": line,
        "restore": line,
    }
    assert snapshot_of(home) == before
    assert not (tmp_path / "new").exists()


def test_urls_that_reach_one_database_by_other_names_are_the_same_database():
    one = same_database_key("postgresql+psycopg2://dagster:secret@localhost/platform")
    assert one == same_database_key("postgresql://other@127.0.0.1:5432/platform")
    assert one == same_database_key("postgresql://dagster@/platform")  # libpq's local socket
    assert one != same_database_key("postgresql://dagster@localhost:5433/platform")
    assert one != same_database_key("postgresql://dagster@localhost/platform_events")
    assert one != same_database_key("postgresql://dagster@db.internal/platform")


@pytest.mark.parametrize("inside", [False, True])
def test_a_backup_says_when_runs_compute_logs_are_outside_dagster_home(
    tmp_path, capsys, monkeypatch, inside
):
    """A backup copies DAGSTER_HOME: compute logs that dagster.yaml keeps elsewhere are not in
    it, and the command and the scheduled job's log say so (not refused: logs are keyed by run
    and only appended to)."""
    settings = home_settings(tmp_path / "home")
    settings.dagster_home.mkdir(parents=True)
    logs = settings.dagster_home / "logs" if inside else tmp_path / "run-logs"
    (settings.dagster_home / "dagster.yaml").write_text(
        "compute_logs:\n  module: dagster._core.storage.local_compute_log_manager\n"
        f"  class: LocalComputeLogManager\n  config:\n    base_dir: {logs}\n"
    )
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        assert Path(instance.compute_log_manager._base_dir) == logs  # as Dagster reads it
    duckdb.connect(str(settings.warehouse)).close()

    assert run_backup(settings, str(tmp_path / "backup"), LOCK_WAIT_SECONDS) == 0

    said = [line for line in capsys.readouterr().err.splitlines() if "compute logs" in line]
    expected = (
        f"backup {tmp_path / 'backup'}: runs' compute logs in {logs} (dagster.yaml compute_logs "
        "base_dir, outside DAGSTER_HOME) are not in it: restored on another machine, those runs "
        "show no logs; keep them under DAGSTER_HOME to back them up"
    )
    assert said == ([] if inside else [expected])

    # The scheduled job backs up the instance it runs in.
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(settings.home))
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))
    monkeypatch.setenv(DEST_VARIABLE, str(tmp_path / "scheduled"))
    with dg.DagsterInstance.get() as instance:
        result = backup_job.execute_in_process(instance=instance)
        warned = [
            e.message
            for e in instance.all_logs(result.run_id)
            if e.level == logging.WARNING and "compute logs" in e.message
        ]
    assert len(warned) == (0 if inside else 1)
    assert all(f"runs' compute logs in {logs} (dagster.yaml" in m for m in warned)


@pytest.mark.parametrize("dest_existed", [False, True], ids=["new-folder", "empty-folder"])
def test_a_backup_that_fills_its_destination_leaves_nothing_there_and_names_the_file(
    pristine, tmp_path, monkeypatch, capsys, dest_existed
):
    """A backup that filled its destination left its partial copy there: the disk stayed 100%
    full, the line ("[Errno 28] No space left on device") named no path, and the same command
    run again, once space was freed, was refused as "not empty"."""
    home = copy_home(pristine, tmp_path / "home")
    disk = tmp_path / "disk"  # stands for the full file system the backup goes to
    dest = disk / "b1"
    if dest_existed:  # an empty folder the user made (a mount point, say): it stays
        dest.mkdir(parents=True)
    copy = backup_store._private_copy

    def fills_the_disk(source: Path, target: Path) -> None:
        with source.open("rb") as read, target.open("wb") as write:
            write.write(read.read(100))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a write's: no file named

    monkeypatch.setattr(backup_store, "_private_copy", fills_the_disk)
    for variable in [v for v in os.environ if v.startswith(("DATA_PLATFORM_", "DAGSTER_"))]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(home))
    assert cli_main(["backup", str(dest)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(
        f"data-platform backup: [Errno 28] No space left on device: '{dest}/"
    ) and line.endswith("': fix it (free space, permissions), then run it again"), line
    if dest_existed:
        assert list(dest.iterdir()) == []
    else:
        assert not disk.exists()  # every folder the backup made, not just its last
    assert not list(home.glob(".backup-*"))

    monkeypatch.setattr(backup_store, "_private_copy", copy)  # space freed
    assert cli_main(["backup", str(dest)]) == 0, capsys.readouterr().err
    assert (dest / "manifest.json").exists()


def test_pg_dump_gets_the_password_and_session_options_out_of_its_command_line():
    """URL.set(password=None) kept the password, so it stood on pg_dump's command line (any
    local user's `ps`); the instance's session options (`-c timezone=UTC`), rendered into the
    URL, reached libpq with `+` for their space and failed every backup."""
    target, env = libpq_target(
        "postgresql+psycopg2://dp:s%40cret@127.0.0.1:5432/dagster"
        "?options=-c%20timezone%3DUTC&sslmode=disable"
    )
    assert target == "postgresql://dp@127.0.0.1:5432/dagster?sslmode=disable"
    assert (env["PGPASSWORD"], env["PGOPTIONS"]) == ("s@cret", "-c timezone=UTC")


def test_a_home_holding_only_its_instance_yaml_holds_no_state(tmp_path):
    """The dagster.yaml a first command writes (`create_once`) is no state a restore would
    replace, nor is the temp file of one killed before its link; a run's file is."""
    settings = load_settings({"DATA_PLATFORM_HOME": str(tmp_path)})
    settings.dagster_home.mkdir(parents=True)
    (settings.dagster_home / "dagster.yaml").write_text("{}")
    (settings.dagster_home / ".dagster.yaml-k2v9x1").write_text("")
    assert state_held(settings) is None
    (settings.dagster_home / "history").mkdir()
    (settings.dagster_home / "history" / "runs.db").write_text("")
    assert state_held(settings) == settings.dagster_home


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, size: int | None = None) -> Iterator[None]:
    """A tmpfs (of `size` bytes) mounted on `folder` (a volume of its own), its files kept."""
    kept = folder.with_name(folder.name + ".before-mount")
    shutil.move(folder, kept)
    folder.mkdir()
    options = ["-o", f"size={size}"] if size else []
    mount = ["mount", "-t", "tmpfs", *options, "tmpfs", str(folder)]
    if subprocess.run(mount, capture_output=True).returncode:
        folder.rmdir()
        shutil.move(kept, folder)
        pytest.skip("mounting a tmpfs needs root")
    try:
        shutil.copytree(kept, folder, dirs_exist_ok=True)
        shutil.rmtree(kept)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_restore_into_a_dagster_home_that_is_a_mount_point_killed_anywhere_is_finished(
    pristine, tmp_path
):
    """A DAGSTER_HOME on its own volume (a container's, a disk's) is a mount point, which no
    rename replaces and no rmdir removes (EBUSY): the restore emptied it, then failed, and
    every later command failed the same way ("Device or resource busy"), the instance gone.
    Killed before each change in turn, the restore is finished by the next command and the
    home equals a clean restore of the backup."""
    backup = pristine / "backup"
    expected = home_settings(tmp_path / "clean")
    restore(expected, BackupStore(str(backup)))
    for kill_at in itertools.count(1):
        warehouse = tmp_path / f"warehouse-{kill_at}.duckdb"
        settings = diverged_home(pristine, tmp_path / f"home-{kill_at}", warehouse)
        env = cli_env(settings.home, DATA_PLATFORM_WAREHOUSE=str(warehouse))
        with mounted_tmpfs(settings.dagster_home):
            killed = subprocess.run(
                [sys.executable, "-c", KILLED_RESTORE, str(kill_at), str(backup)],
                env=env,
                capture_output=True,
                text=True,
            )
            if killed.returncode != 0:
                assert killed.returncode == -signal.SIGKILL, killed.stderr
                finisher = cli(settings.home, "sql", "--format", "csv", "SELECT 1", **env)
                err = finisher.communicate(timeout=120)[1]
                assert finisher.returncode == 0, err
            assert platform_state(settings) == platform_state(expected), kill_at
            leftovers = [*settings.home.glob(".restore-*"), *settings.home.glob("*.restoring")]
            assert leftovers == [] and not list(settings.dagster_home.glob(".restoring")), kill_at
        if killed.returncode == 0:
            break
    assert kill_at > 5


def test_a_forced_restore_onto_a_disk_with_room_for_one_warehouse_finishes(pristine, tmp_path):
    """A warehouse on another file system is copied there. Copied beside the old one, which it
    replaces, it needed room for both: on a disk with room for one, the restore failed with
    ENOSPC after its journal, and so did every later command finishing it, for good (freeing
    space meant deleting the warehouse by hand)."""
    backup = pristine / "backup"
    expected = home_settings(tmp_path / "clean")
    restore(expected, BackupStore(str(backup)))
    disk = tmp_path / "disk"
    disk.mkdir()
    warehouse = disk / "warehouse.duckdb"
    settings = diverged_home(pristine, tmp_path / "home", warehouse)
    with mounted_tmpfs(disk, size=warehouse.stat().st_size * 3 // 2):
        restore(settings, BackupStore(str(backup)), force=True)
        assert platform_state(settings) == platform_state(expected)
        assert sorted(p.name for p in disk.iterdir()) == ["warehouse.duckdb"]


def test_a_log_file_removed_while_the_instance_is_copied_fails_no_backup(
    pristine, tmp_path, monkeypatch
):
    """DAGSTER_HOME is listed once, then copied file by file, for as long as its GBs take:
    a file removed meanwhile (log_retention's hourly sweep of old ticks' and runs' logs)
    failed the whole backup, "[Errno 2] No such file or directory ... fix it (free space,
    permissions)". Removed, it is no longer the instance's: the backup goes on without it."""
    from data_platform.operations import snapshot

    settings = home_settings(copy_home(pristine, tmp_path / "home"))
    ticks = settings.dagster_home / "storage" / "__repository__" / "landing_zone_files"
    ticks.mkdir(parents=True)
    swept, kept = ticks / "1.err", ticks / "2.err"
    swept.write_text("an old tick's log")
    kept.write_text("a recent tick's log")
    copy = snapshot._copy_file

    def sweep_meanwhile(path: Path, target: Path) -> None:
        if path.relative_to(settings.dagster_home).as_posix() not in snapshot.COPY_FIRST:
            swept.unlink(missing_ok=True)  # after the listing, before its copy
        copy(path, target)

    monkeypatch.setattr(snapshot, "_copy_file", sweep_meanwhile)
    manifest = take_backup(settings, BackupStore(str(tmp_path / "backup")))
    names = {entry["path"] for entry in manifest["files"]}
    assert "dagster_home/storage/__repository__/landing_zone_files/2.err" in names
    assert "dagster_home/storage/__repository__/landing_zone_files/1.err" not in names
    restored = home_settings(tmp_path / "restored")
    restore(restored, BackupStore(str(tmp_path / "backup")))
    assert platform_state(restored)[0] == platform_state(settings)[0]


def test_a_restore_onto_a_full_disk_names_the_file_and_leaves_nothing(pristine, tmp_path):
    """The download into the staging folder on a full disk was "[Errno 28] No space left on
    device" and nothing more: which disk to free was not said (a backup's put says it)."""
    home = tmp_path / "home"
    home.mkdir()
    size = (pristine / "backup" / "warehouse" / "warehouse.duckdb").stat().st_size
    with mounted_tmpfs(home, size=size // 2):
        done = cli(home, "restore", str(pristine / "backup"))
        err = done.communicate(timeout=300)[1]
        assert done.returncode == 1, err
        last = err.strip().splitlines()[-1]
        assert last.startswith("data-platform restore: [Errno 28] No space left on device: ")
        assert f"'{home}/.restore-" in last and last.endswith("then run it again")
        assert list(home.iterdir()) == []


def test_a_warehouse_placed_under_a_file_is_refused_before_anything_changes(pristine, tmp_path):
    """DATA_PLATFORM_WAREHOUSE=<a file>/x.duckdb failed while the backup was put in place,
    after its journal: the backup's instance and salt beside the old warehouse, and every later
    command failed finishing it ("Not a directory"), the setting corrected or not: the journal
    names the place."""
    (tmp_path / "a-file").write_text("")
    warehouse = tmp_path / "a-file" / "warehouse.duckdb"
    home = copy_home(pristine, tmp_path / "home")
    before = snapshot_of(home)
    done = cli(
        home, "restore", "--force", str(pristine / "backup"), DATA_PLATFORM_WAREHOUSE=str(warehouse)
    )
    err = done.communicate(timeout=300)[1]
    assert done.returncode == 1, err
    assert err.strip().splitlines()[-1] == (
        f"data-platform restore: {warehouse} cannot be written (Not a directory: "
        f"{tmp_path / 'a-file'}): correct the setting that puts it there, or make that folder "
        "one this user can write; nothing was changed"
    )
    assert snapshot_of(home) == before
    assert not list(home.glob(".restore-*"))
    finisher = cli(home, "sql", "--format", "csv", "SELECT count(*) FROM t")
    assert finisher.communicate(timeout=120)[0] == "count_star()\n1000\n"
