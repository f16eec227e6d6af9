"""Writing run history into a real Dagster instance, as runs would: for the exporter's tests.

Every event goes through `instance.handle_new_event`, so run records, step stats, check
execution rows and asset records are the instance's own, computed by Dagster.
"""

from __future__ import annotations

import time
import uuid

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationPlanned,
)
from dagster._core.events import (
    AssetMaterializationPlannedData,
    DagsterEvent,
    DagsterEventType,
    StepMaterializationData,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.execution.plan.objects import StepSuccessData
from dagster._core.remote_origin import (
    RegisteredCodeLocationOrigin,
    RemoteInstigatorOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    SensorInstigatorData,
    TickData,
    TickStatus,
)

# Where the runs and sensors below say they come from: a code location `test`.
REPOSITORY = RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("test"), "__repository__")


def emit(instance, run: dg.DagsterRun, kind: DagsterEventType, at: float, step=None, data=None):
    event = DagsterEvent(kind.value, job_name=run.job_name, step_key=step, event_specific_data=data)
    entry = EventLogEntry(
        error_info=None,
        level="DEBUG",
        user_message="",
        run_id=run.run_id,
        timestamp=at,
        step_key=step,
        job_name=run.job_name,
        dagster_event=event,
    )
    instance.handle_new_event(entry)


def add_run(instance, job: str, status: dg.DagsterRunStatus) -> dg.DagsterRun:
    """A run never started (NOT_STARTED), or queued by the event the run coordinator emits."""
    origin = RemoteJobOrigin(REPOSITORY, job)
    run = dg.DagsterRun(job_name=job, run_id=str(uuid.uuid4()), remote_job_origin=origin)
    instance.add_run(run)
    if status == dg.DagsterRunStatus.QUEUED:
        emit(instance, run, DagsterEventType.RUN_ENQUEUED, time.time())
    return run


def finished_run(
    instance, job: str, start: float, seconds: float, steps: dict[str, float], ok: bool = True
) -> dg.DagsterRun:
    """A run that started at `start`, ran `steps` ({step_key: seconds}) one after another, and
    ended `seconds` after its start, in SUCCESS or FAILURE."""
    run = add_run(instance, job, dg.DagsterRunStatus.NOT_STARTED)
    emit(instance, run, DagsterEventType.RUN_START, start)
    at = start
    for step, duration in steps.items():
        emit(instance, run, DagsterEventType.STEP_START, at, step)
        done = StepSuccessData(duration_ms=float(duration * 1000))
        emit(instance, run, DagsterEventType.STEP_SUCCESS, at + duration, step, done)
        at += duration
    end_kind = DagsterEventType.RUN_SUCCESS if ok else DagsterEventType.RUN_FAILURE
    emit(instance, run, end_kind, start + seconds)
    return run


def check_evaluation(instance, run, at: float, key: dg.AssetKey, check: str, passed: bool, sev):
    """A check planned then evaluated by the run, as a step with checks reports it."""
    evaluation = dg.AssetCheckEvaluation(
        asset_key=key, check_name=check, passed=passed, severity=sev
    )
    emit(
        instance,
        run,
        DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
        at,
        data=AssetCheckEvaluationPlanned(asset_key=key, check_name=check),
    )
    emit(instance, run, DagsterEventType.ASSET_CHECK_EVALUATION, at, data=evaluation)


def materialization(
    instance, run, at: float, key: dg.AssetKey, partition: str | None = None
) -> None:
    emit(
        instance,
        run,
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        at,
        data=AssetMaterializationPlannedData(key, partition=partition),
    )
    emit(
        instance,
        run,
        DagsterEventType.ASSET_MATERIALIZATION,
        at,
        data=StepMaterializationData(dg.AssetMaterialization(key, partition=partition)),
    )


def sensor_tick(instance, name: str, at: float, cursor: str | None = None) -> None:
    """A running sensor of a code location `test`, with one tick at `at` and, as the daemon
    stores it after an evaluation, its `cursor`."""
    origin = RemoteInstigatorOrigin(REPOSITORY, name)
    data = SensorInstigatorData(last_tick_timestamp=at, cursor=cursor)
    state = InstigatorState(origin, InstigatorType.SENSOR, InstigatorStatus.RUNNING, data)
    instance.add_instigator_state(state)
    tick = TickData(
        instigator_origin_id=origin.get_id(),
        instigator_name=name,
        instigator_type=InstigatorType.SENSOR,
        status=TickStatus.SKIPPED,
        timestamp=at,
        selector_id=state.selector_id,
    )
    instance.create_tick(tick)
