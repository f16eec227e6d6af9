"""The captured-log sweep (orchestration/log_retention.py) on a real SQLite instance in a temp
DAGSTER_HOME: real runs' compute logs, real tick rows purged by Dagster's own purge."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.remote_origin import (
    GrpcServerCodeLocationOrigin,
    RemoteInstigatorOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.scheduler.instigation import TickData, TickStatus
from dagster._core.storage.compute_log_manager import ComputeIOType
from dagster._core.storage.schedules.schema import AssetDaemonAssetEvaluationsTable
from dagster._core.utils import make_new_run_id
from dagster._time import datetime_from_timestamp

from data_platform.orchestration.log_retention import (
    GRACE_SECONDS,
    RUN_ID,
    build_log_retention_sensor,
    logs_folder,
    sweep,
)
from data_platform.services import logs as service_logs
from data_platform.services.config import load_services_config
from data_platform.services.redis_server import Redis
from data_platform.services.spark_cluster import SparkCluster
from data_platform.settings import load_settings

DAY = 86400.0
REPO = Path(__file__).resolve().parent.parent


@dg.asset
def chatty() -> int:
    print("a line on the step's stdout")  # captured into the run's compute logs
    return 1


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        yield instance


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _backdate(paths: list[Path], seconds: float) -> None:
    for path in paths:
        stamp = time.time() - seconds
        os.utime(path, (stamp, stamp))


def test_compute_logs_of_runs_ended_past_the_retention_are_removed_and_their_events_kept(instance):
    runs = [dg.materialize([chatty], instance=instance).run_id for _ in range(3)]
    base = logs_folder(instance)
    assert base is not None
    for run_id in runs:
        out = _files(base / run_id)
        assert any(p.read_text().startswith("a line on the step's stdout") for p in out), out
    # A run not ended (its process writing) and the folder of a run since deleted.
    live = instance.add_run(
        dg.DagsterRun(job_name="j", run_id=make_new_run_id(), status=dg.DagsterRunStatus.STARTED)
    )
    with instance.compute_log_manager.open_log_stream(
        [live.run_id, "compute_logs", "step"], ComputeIOType.STDOUT
    ) as stream:
        stream.write("still running\n")
    instance.delete_run(runs[2])
    events_before = len(instance.get_records_for_run(runs[0], limit=10_000).records)
    materializations = instance.fetch_materializations(dg.AssetKey("chatty"), limit=10).records

    # 29 days later nothing is old enough but the deleted run's folder, once it is that old.
    assert sweep(instance, 30, 3, now=time.time() + 29 * DAY).run_folders == 0
    _backdate(_files(base / runs[2]), 31 * DAY)
    swept = sweep(instance, 30, 3, now=time.time() + 29 * DAY)
    assert (swept.run_folders, (base / runs[2]).exists()) == (1, False)

    size = sum(p.stat().st_size for r in runs[:2] for p in _files(base / r))
    swept = sweep(instance, 30, 3, now=time.time() + 31 * DAY)
    assert (swept.run_folders, swept.bytes_freed) == (2, size)
    assert not any((base / r).exists() for r in runs)
    assert [p.read_text() for p in _files(base / live.run_id)] == ["still running\n"]
    # What the platform reads back (materializations, the run's event log) is untouched.
    assert len(instance.get_records_for_run(runs[0], limit=10_000).records) == events_before
    assert (
        len(instance.fetch_materializations(dg.AssetKey("chatty"), limit=10).records)
        == len(materializations)
        == 2
    )
    # 0 keeps every run's logs.
    dg.materialize([chatty], instance=instance)
    assert sweep(instance, 0, 3, now=time.time() + 365 * DAY).run_folders == 0


def _tick(instance, origin: RemoteInstigatorOrigin, status: TickStatus, at: float) -> int:
    tick = instance.create_tick(
        TickData(
            instigator_origin_id=origin.get_id(),
            instigator_name="source_database_changes",
            instigator_type=InstigatorType.SENSOR,
            status=status,
            timestamp=at,
            selector_id="selector",
            run_ids=[make_new_run_id()] if status == TickStatus.SUCCESS else [],
        )
    )
    return tick.tick_id


def test_log_files_of_ticks_dagster_purged_are_removed_those_of_kept_ticks_stay(instance):
    # The sensor of a code location; the daemon names its log folder after the repository.
    origin = RemoteInstigatorOrigin(
        RemoteRepositoryOrigin(GrpcServerCodeLocationOrigin("localhost", 4000), "__repository__"),
        "source_database_changes",
    )
    day_ago = time.time() - 2 * DAY
    skipped = [_tick(instance, origin, TickStatus.SKIPPED, day_ago) for _ in range(5)]
    succeeded = _tick(instance, origin, TickStatus.SUCCESS, day_ago)
    recent = _tick(instance, origin, TickStatus.SKIPPED, time.time())
    base = logs_folder(instance)
    assert base is not None
    for tick_id in [*skipped, succeeded, recent]:
        # The daemon's log key for a tick; an empty .err is what a quiet tick leaves.
        key = ["__repository__", "source_database_changes", str(tick_id)]
        with instance.compute_log_manager.open_log_stream(key, ComputeIOType.STDERR):
            pass
    folder = base / "__repository__" / "source_database_changes"
    _backdate(_files(folder), 2 * DAY)
    # Dagster's retention (dagster.yaml: skipped ticks after 1 day) deletes the rows only.
    instance.purge_ticks(origin.get_id(), "selector", time.time() - DAY, [TickStatus.SKIPPED])
    assert {t.tick_id for t in instance.get_ticks(origin.get_id(), "selector")} == {
        succeeded,
        recent,
    }
    assert len(_files(folder)) == 7

    swept = sweep(instance, 30, 3)
    assert (swept.tick_files, swept.run_folders) == (5, 0)
    assert [p.name for p in _files(folder)] == sorted(f"{t}.err" for t in (succeeded, recent))

    # A purged tick's file younger than the grace period is left for the next sweep.
    fresh = _tick(instance, origin, TickStatus.SKIPPED, day_ago)
    with instance.compute_log_manager.open_log_stream(
        ["__repository__", "source_database_changes", str(fresh)], ComputeIOType.STDERR
    ):
        pass
    instance.purge_ticks(origin.get_id(), "selector", time.time() - DAY, [TickStatus.SKIPPED])
    assert sweep(instance, 30, 3).tick_files == 0
    assert sweep(instance, 30, 3, now=time.time() + GRACE_SECONDS + 1).tick_files == 1


def test_compute_log_days_setting():
    # A wrong value's one line: test_settings_lines.py.
    assert load_settings({}).compute_log_days == 30
    assert load_settings({"DATA_PLATFORM_COMPUTE_LOG_DAYS": "0"}).compute_log_days == 0
    assert load_settings({}).automation_evaluation_days == 3


@dg.asset(automation_condition=dg.AutomationCondition.eager())
def downstream(chatty: int) -> int:
    return chatty


def test_automation_evaluations_older_than_the_setting_are_deleted(instance):
    """Evaluations made by Dagster's own evaluator, stored as its daemon stores them."""
    defs = dg.Definitions(
        assets=[
            chatty.with_attributes(automation_condition=dg.AutomationCondition.eager()),
            downstream,
        ]
    )
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    evaluations = [r.serializable_evaluation.with_run_ids(set()) for r in result.results]
    assert len(evaluations) == 2
    storage = instance.schedule_storage
    for evaluation_id in (1, 2, 3):
        storage.add_auto_materialize_asset_evaluations(evaluation_id, evaluations)
    table = AssetDaemonAssetEvaluationsTable
    with storage.connect() as conn:
        for evaluation_id, days in ((1, 4), (2, 2.9)):
            conn.execute(
                table.update()
                .where(table.c.evaluation_id == evaluation_id)
                .values(create_timestamp=datetime_from_timestamp(time.time() - days * DAY))
            )

    assert sweep(instance, 30, 3).evaluations == 2
    kept = storage.get_auto_materialize_asset_evaluations(dg.AssetKey("downstream"), limit=10)
    assert sorted(r.evaluation_id for r in kept) == [2, 3]
    assert sweep(instance, 30, 3).evaluations == 0
    assert sweep(instance, 30, 1).evaluations == 2  # the one 2.9 days old, both assets


def test_the_sensor_sweeps_hourly_and_ticks_within_the_stalled_sensor_alert(
    instance, tmp_path, monkeypatch
):
    """It ticks every 5 minutes (DataPlatformSensorStalled pages after 600 s without a tick) and
    sweeps at most once an hour, its cursor the time of the last sweep. Each sweep also caps
    the home's service logs, as `services-up` does: a Redis log past the limit keeps its last
    lines in redis.log.1, a Spark log within it is left alone."""
    home = tmp_path / "platform"
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(home))
    monkeypatch.setattr(service_logs, "LIMIT_BYTES", 1_000)
    monkeypatch.setattr(service_logs, "KEPT_BYTES", 100)
    config = load_services_config({"DATA_PLATFORM_HOME": str(home)})
    redis_log, spark_log = Redis(config).log_file, SparkCluster(config).log_files[-1]
    for log_file, lines in ((redis_log, 200), (spark_log, 10)):
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_file.write_text("".join(f"line {n:05d}\n" for n in range(lines)))  # 11 B each
    sensor = build_log_retention_sensor(30, 3)
    alert = (REPO / "deploy/prometheus/alerts.yml").read_text()
    assert 'data_platform_sensor_last_tick_age_seconds{state!="stopped"} > 600' in alert
    assert sensor.minimum_interval_seconds == 300
    dg.materialize([chatty], instance=instance)
    base = logs_folder(instance)
    assert base is not None
    _backdate(_files(base), 40 * DAY)  # the folder of a run deleted 40 days ago
    instance.wipe()  # every run gone, their compute logs left

    first = dg.build_sensor_context(instance=instance)
    result = sensor(first)
    assert result.skip_message.startswith(
        "removed 0 log files of purged ticks and the compute logs of 1 ended runs"
    )
    assert result.skip_message.endswith("; capped 1 local service logs")
    assert not any((base / p).is_dir() for p in os.listdir(base) if RUN_ID.fullmatch(p))
    assert redis_log.stat().st_size == 0
    assert redis_log.with_name("redis.log.1").read_text().splitlines()[0] == "line 00191"
    assert spark_log.stat().st_size == 110
    second = dg.build_sensor_context(instance=instance, cursor=first.cursor)
    assert sensor(second).skip_message.startswith("next sweep in ")
    an_hour_later = dg.build_sensor_context(instance=instance, cursor=str(time.time() - 3601))
    assert sensor(an_hour_later).skip_message.startswith("removed 0 log files")
