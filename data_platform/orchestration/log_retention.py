"""Captured logs that Dagster keeps for ever, and the automation's evaluations it keeps a month:
swept here, nothing else of the instance touched.

Dagster's LocalComputeLogManager writes, under its `base_dir` (DAGSTER_HOME/storage):
- `<run id>/compute_logs/<step>.{out,err,complete}`: a run's steps' stdout and stderr. Dagster
  never deletes them; the run's structured events (materializations, check evaluations, what
  the platform and the UI read back) are in the event log, not here.
- `<repository>/<sensor or schedule>/<tick id>.{out,err,complete}`: a tick's captured log,
  made at every tick whose code touches `context.log`, empty or not. The sensors that do tick
  every 30 s, 2,880 files a day each, and `retention.sensor.purge_after_days` deletes the
  skipped ticks' rows but never their files: one folder gained some 2 M a year, read by nobody
  (the UI finds a tick's log through the tick's row).

And in the schedule storage (`schedules.db`, or PostgreSQL), every automation tick that changed
an asset's evaluation stores that asset's whole condition tree: 0.1-0.5 MB each here (a
partitioned fact's tree holds ~360 subsets), ~67 MB for the runs one landed day starts. Dagster
deletes them after 30 days (`EVALUATIONS_TTL_DAYS`, not configurable): ~2 GB per daily landing
held at once, several times that with files landing through the day. Only the UI's Automation
tab reads them (and the daemon, its current tick's, when it retries that tick).

`sweep` removes the files of ticks whose row Dagster purged, the compute logs of runs that
ended more than `compute_log_days` ago (or whose run was deleted), and the evaluations older
than `evaluation_days`. The sensor also caps the logs of the local services (`services/logs.py`),
which `services-up` alone did: a server running for weeks between two `up`s grew meanwhile.
A live run, a run not yet ended, and a tick still stored are never
touched; runs and their events (materializations, check results) are never deleted.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import dagster as dg
import sqlalchemy as db
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager
from dagster._core.storage.schedules.schema import AssetDaemonAssetEvaluationsTable
from dagster._time import datetime_from_timestamp

from data_platform.services.logs import cap_every_service_log

T = TypeVar("T")

# Dagster's folder of a run's step logs, inside the run's own folder.
RUN_LOGS_FOLDER = "compute_logs"
# What the manager names a captured file (`<tick id>.err`, `.out`, `.complete`, and `.partial`
# after one while written): anything else in that folder (an IO manager's pickle of an asset's
# partition `7`, say) is not a log and stays.
TICK_LOG_FILE = re.compile(r"(\d+)\.(?:out|err|complete)(?:\.partial)?")
# A run's folder is named by its run id.
RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Ids looked up per query: SQLite's default limit on bound parameters is far above it.
CHUNK = 500
# A file this recent is left alone: a tick's row is written before its log file, but a clock
# step or a slow write should never race the sweep.
GRACE_SECONDS = 600.0


@dataclass(frozen=True)
class Swept:
    tick_files: int = 0
    run_folders: int = 0
    bytes_freed: int = 0
    evaluations: int = 0

    def summary(self) -> str:
        return (
            f"removed {self.tick_files} log files of purged ticks and the compute logs of "
            f"{self.run_folders} ended runs ({self.bytes_freed} bytes freed), and "
            f"{self.evaluations} automation evaluations"
        )


def logs_folder(instance: dg.DagsterInstance) -> Path | None:
    """The folder of the instance's captured logs, or None when they are not local files (a
    cloud compute log manager: its bucket's own lifecycle rules are the place for retention)."""
    manager = instance.compute_log_manager
    if isinstance(manager, LocalComputeLogManager):
        return Path(manager._base_dir)  # no public accessor in Dagster 1.13
    return None


def sweep(
    instance: dg.DagsterInstance,
    compute_log_days: int,
    evaluation_days: int,
    now: float | None = None,
) -> Swept:
    """Remove what nobody needs any more (see the module's docstring). `compute_log_days` 0
    keeps every run's compute logs."""
    now = time.time() if now is None else now
    evaluations = purge_evaluations(instance, now - evaluation_days * 86400)
    base = logs_folder(instance)
    if base is None or not base.is_dir():
        return Swept(evaluations=evaluations)
    runs, repositories = [], []
    for entry in _folders(base):
        if (entry / RUN_LOGS_FOLDER).is_dir():
            if RUN_ID.fullmatch(entry.name):
                runs.append(entry)
        else:
            repositories.append(entry)
    tick_files, tick_bytes = _sweep_tick_logs(instance, repositories, now)
    run_folders = run_bytes = 0
    if compute_log_days > 0:
        run_folders, run_bytes = _sweep_run_logs(instance, runs, now - compute_log_days * 86400)
    return Swept(tick_files, run_folders, tick_bytes + run_bytes, evaluations)


def purge_evaluations(instance: dg.DagsterInstance, before: float) -> int:
    """Delete the automation's stored evaluations made before `before`; how many there were.
    Dagster's own purge (the same statement, at every automation tick) keeps 30 days."""
    storage = instance.schedule_storage
    if storage is None or not storage.supports_auto_materialize_asset_evaluations:
        return 0
    table = AssetDaemonAssetEvaluationsTable
    old = table.c.create_timestamp < datetime_from_timestamp(before)
    with storage.connect() as conn:  # type: ignore[attr-defined]
        count = conn.execute(db.select(db.func.count()).select_from(table).where(old)).scalar()
    storage.purge_asset_evaluations(before=before)
    return int(count or 0)


def _folders(path: Path) -> Iterator[Path]:
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield Path(entry.path)


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _sweep_tick_logs(
    instance: dg.DagsterInstance, repositories: list[Path], now: float
) -> tuple[int, int]:
    """Files named `<tick id>.<ext>` in `<repository>/<instigator>/` whose tick is gone."""
    by_tick: dict[int, list[Path]] = {}
    for repository in repositories:
        for instigator in _folders(repository):
            with os.scandir(instigator) as entries:
                for entry in entries:
                    match = TICK_LOG_FILE.fullmatch(entry.name)
                    if match and entry.is_file(follow_symlinks=False):
                        by_tick.setdefault(int(match[1]), []).append(Path(entry.path))
    ids = sorted(by_tick)
    stored: set[int] = set()
    for chunk in _chunks(ids):
        ticks = instance.schedule_storage.get_ticks_by_ids(list(chunk))  # type: ignore[union-attr]
        stored.update(tick.tick_id for tick in ticks)
    removed = freed = 0
    for tick_id in ids:
        if tick_id in stored:
            continue
        for path in by_tick[tick_id]:
            try:
                stat = path.stat()
                if now - stat.st_mtime < GRACE_SECONDS:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue
            removed += 1
            freed += stat.st_size
    return removed, freed


def _sweep_run_logs(
    instance: dg.DagsterInstance, folders: list[Path], ended_before: float
) -> tuple[int, int]:
    """Run folders whose run ended before `ended_before`, or whose run no longer exists."""
    by_id = {folder.name: folder for folder in folders}
    removed = freed = 0
    for chunk in _chunks(sorted(by_id)):
        records = {
            record.dagster_run.run_id: record
            for record in instance.get_run_records(dg.RunsFilter(run_ids=list(chunk)))
        }
        for run_id in chunk:
            record = records.get(run_id)
            if record is not None and (record.end_time is None or record.end_time >= ended_before):
                continue
            files = _file_stats(by_id[run_id])
            # The newest file's time, or the folder's (which changes when a file is removed).
            newest = max((f.st_mtime for f in files), default=by_id[run_id].stat().st_mtime)
            if record is None and newest >= ended_before:
                continue  # a run being created (its folder before its row) or just deleted
            shutil.rmtree(by_id[run_id], ignore_errors=True)
            removed += 1
            freed += sum(f.st_size for f in files)
    return removed, freed


def _file_stats(folder: Path) -> list[os.stat_result]:
    return [p.stat() for p in folder.rglob("*") if p.is_file()]


# An hour between sweeps: a day of 30-s ticks leaves ~120 files per sensor to remove each time.
SWEEP_INTERVAL_SECONDS = 3600
# The sensor itself ticks more often: `DataPlatformSensorStalled` pages for a sensor silent 10
# minutes (deploy/prometheus/alerts.yml), so an hourly tick would page every hour. The time of
# the last sweep is its cursor.
TICK_SECONDS = 300


def build_log_retention_sensor(compute_log_days: int, evaluation_days: int) -> dg.SensorDefinition:
    """The daemon's hourly sweep. It never touches `context.log`: that alone would make each of
    its own ticks a log file."""

    @dg.sensor(
        name="log_retention",
        minimum_interval_seconds=TICK_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Hourly: removes the captured-log files of sensor ticks Dagster purged, the step "
            f"stdout/stderr of runs ended over {compute_log_days} days ago "
            "(DATA_PLATFORM_COMPUTE_LOG_DAYS; 0 keeps them), and the automation's evaluations "
            f"older than {evaluation_days} days (DATA_PLATFORM_AUTOMATION_EVALUATION_DAYS). "
            "Runs and their events are kept. Caps the local services' logs as `services-up` "
            "does."
        ),
    )
    def log_retention(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        now = time.time()
        last = float(context.cursor) if context.cursor else 0.0
        if now - last < SWEEP_INTERVAL_SECONDS:
            return dg.SkipReason(f"next sweep in {SWEEP_INTERVAL_SECONDS - (now - last):.0f} s")
        swept = sweep(context.instance, compute_log_days, evaluation_days, now)
        capped = cap_every_service_log(os.environ)
        context.update_cursor(str(now))
        return dg.SkipReason(f"{swept.summary()}; capped {capped} local service logs")

    return log_retention
