"""Headless materialization of a selection over a date range, on the configured instance.

The whole window goes into one run (partition-range tags), which the single-run backfill
policies turn into one set-based pass per asset instead of one run per day.

Before it starts, it fails runs whose process died and frees the pool slots they held (what
the monitoring daemon does under `dagster dev`), so an earlier crash never makes it wait
forever. While a step waits for a `duckdb` slot it says behind which run; Ctrl-C, SIGTERM and
`--timeout` stop it cleanly (the run is marked failed, its pending claims released).
"""

from __future__ import annotations

import errno
import math
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Set
from datetime import date
from pathlib import Path
from typing import NamedTuple

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.storage.tags import MAX_RETRIES_TAG
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._utils.error import SerializableErrorInfo
from dagster._utils.interrupts import capture_interrupts

from data_platform.assets.dbt_project import require_manifest, stale_manifest
from data_platform.operations.snapshot import instance_errors
from data_platform.orchestration.instance import platform_instance
from data_platform.orchestration.pool_wait import report_waits
from data_platform.orchestration.run_health import (
    CREATOR_PID_TAG,
    WORKER_HOST_TAG,
    release_dead_runs,
    this_host,
)
from data_platform.partitions import DAILY_PARTITIONS, RANGE_END_TAG, RANGE_START_TAG
from data_platform.resources.landing import LandingZone
from data_platform.services.celery_workers import check_broker_answers
from data_platform.settings import (
    CELERY_BROKER_VARIABLE,
    Settings,
    SettingsError,
    UsageError,
    load_settings,
    require_writable_warehouse,
)

# The code location `make run` (`dagster dev -w workspace.yaml`) serves the Definitions from.
WORKSPACE_YAML = Path(__file__).resolve().parents[1] / "workspace.yaml"
DEFINITIONS_MODULE = "data_platform.definitions"
ASSET_JOB = "__ASSET_JOB"
# The resources through which a step writes the DuckDB warehouse.
WAREHOUSE_WRITERS = frozenset({"warehouse", "warehouse_io_manager", "dbt"})
# Finds this invocation's run, whose id Dagster picks, to report what it waits for.
INVOCATION_TAG = "data_platform/invocation"
LOG_INFO = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
EXIT_TIMED_OUT = 3
EXIT_INTERRUPTED = 130
# How often the progress says what a waiting step waits for.
WAIT_REPORT_SECONDS = 10.0


def partition_window(start: date | None, end: date | None) -> list[str]:
    """The daily partition keys from start to end inclusive (defaults: all existing ones)."""
    keys = DAILY_PARTITIONS.get_partition_keys()
    if not keys:  # a start date in the future: every default below would index nothing
        raise UsageError(
            f"no daily partition yet: DATA_PLATFORM_START_DATE={load_settings().start_date} is "
            "after today: set it to the first day of data, e.g. 2026-01-01"
        )
    lo = start.isoformat() if start else keys[0]
    hi = end.isoformat() if end else keys[-1]
    if lo > hi:
        raise UsageError(f"--start {lo} is after --end {hi}: the range is inclusive, start <= end")
    window = [k for k in keys if lo <= k <= hi]
    if not window:
        raise UsageError(
            f"no daily partition between {lo} and {hi}: partitions run from {keys[0]} to "
            f"{keys[-1]} (DATA_PLATFORM_START_DATE to today)"
        )
    return window


def range_tags(keys: list[str]) -> dict[str, str]:
    if not keys:
        return {}
    return {RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[-1]}


def summarize(result: dg.ExecutionResult) -> tuple[Counter, list[str]]:
    """Partitions materialized per asset key, and one line per failed step (or the run's
    cause, when none failed). A partition counts once: raw/dead_letter's day is reported by
    each file source that writes to it."""
    materialized = Counter(
        key
        for key, _ in {
            (e.asset_key.to_user_string(), e.partition)
            for e in result.get_asset_materialization_events()
        }
    )
    failures = [
        f"{e.step_key}: {_cause(e.step_failure_data.error)}"
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    # A run that failed with no step failing (its executor's broker down): it said only "see
    # the run in the UI".
    failures = failures or [
        f"run: {_cause(e.event_specific_data.error)}"
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.RUN_FAILURE and e.event_specific_data.error
    ]
    return materialized, failures


def _cause(error: SerializableErrorInfo | None) -> str:
    """The first line of the error that started it all: the step's own error is Dagster's
    wrapper ("Error occurred while executing op ..."), which named no cause (no bucket, no
    credentials, a source column renamed)."""
    if error is None:
        return "failed"
    root = error
    while root.cause is not None:
        root = root.cause
    message = root.message.strip().splitlines()
    first = message[0] if message else root.cls_name
    reason = _disk_reason(error)
    return f"{first} (cause: {reason})" if reason and reason not in first else first


# What a full or unusable disk says, in Python's errors ([Errno 28] ...) and DuckDB's ("Could
# not write file ...: No space left on device"), which have no errno.
DISK_REASONS = tuple(
    os.strerror(code) for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO)
)
ANSI_COLOR = re.compile(r"\x1b\[[0-9;]*m")


def _disk_reason(error: SerializableErrorInfo) -> str | None:
    """The innermost line of `error`'s chain, through its causes and the errors it was raised
    while handling, that says a disk is full or unusable. That is rarely the first line: a full
    disk under DuckDB surfaced as "database has been invalidated because of a previous fatal
    error" (the ENOSPC in the error being handled), under dbt as "The dbt CLI process with
    command" (its ENOSPC 12 lines down the message)."""
    chain, pending = [], [(0, error)]
    while pending:
        depth, current = pending.pop()
        chain.append((depth, current))
        pending.extend((depth + 1, e) for e in (current.cause, current.context) if e is not None)
    for _, current in sorted(chain, key=lambda pair: -pair[0]):
        for line in reversed(current.message.splitlines()):
            line = ANSI_COLOR.sub("", line).strip()
            if any(reason in line for reason in DISK_REASONS):
                return line
    return None


def was_interrupted(result: dg.ExecutionResult) -> bool:
    """Did the run stop on SIGINT/SIGTERM (or `--timeout`) rather than fail on its own?"""
    return any(
        e.event_type == dg.DagsterEventType.RUN_FAILURE
        and e.event_specific_data.error is not None
        and e.event_specific_data.error.cls_name == "DagsterExecutionInterruptedError"
        for e in result.all_events
    )


def _interrupt_process() -> None:
    os.kill(os.getpid(), signal.SIGINT)


class Deadline:
    """`--timeout`: a timer thread interrupting the run, and the main thread ending it, agree
    under a lock on which came first. The timer once read only an Event the main thread set
    after execute_run returned: in between, it could SIGINT a run that had finished, which then
    reported "timed out" (exit 3) or a traceback.

    The timer interrupts only while the run is not `finish`ed; `finish` says whether it did.
    An interrupt sent just before `finish` may still be delivered after execute_run returned:
    `materialize_range` captures interrupts around the run (see there), so it changes nothing.
    """

    def __init__(self, seconds: float, interrupt: Callable[[], None] = _interrupt_process):
        self.seconds = seconds
        self._interrupt = interrupt
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._expired = False

    @property
    def expired(self) -> bool:
        with self._lock:
            return self._expired

    def wait_then_expire(self) -> None:
        """The timer thread: interrupt the run after `seconds`, unless it finished first."""
        if not self._finished.wait(self.seconds):
            self.expire()

    def expire(self) -> None:
        with self._lock:
            if self._finished.is_set():
                return
            self._expired = True
            self._interrupt()

    def finish(self) -> bool:
        """The run is over; no interrupt follows. True when the deadline interrupted it first."""
        with self._lock:
            self._finished.set()
            return self._expired


class SelectedJob(NamedTuple):
    """The Definitions' asset job and the asset keys a run of it materializes."""

    job: ReconstructableJob
    assets: frozenset[dg.AssetKey]
    origin: RemoteJobOrigin


def selected_job(select: str) -> SelectedJob:
    """The Definitions' whole asset job, in a form an executor can rebuild elsewhere (with
    DATA_PLATFORM_EXECUTOR=celery the steps run on the Celery workers), and the selection the
    run records: the run cuts the job to it when it executes, as a run launched from the UI."""
    from data_platform.definitions import defs

    try:
        keys = dg.AssetSelection.from_string(select).resolve(defs.resolve_asset_graph())
    except dg.DagsterError as err:
        raise UsageError(f"--select {select!r} is not an asset selection: {err}") from None
    if not keys:
        # An empty set means "no subset" to get_subset: the whole graph, over the whole range.
        raise UsageError(
            f"--select {select!r} matches no asset: name one as the UI shows it, e.g. "
            "key:raw/events, group:raw or tag:partitioned"
        )
    repository = ReconstructableRepository.for_module(DEFINITIONS_MODULE, "defs")
    job = repository.get_reconstructable_job(ASSET_JOB)
    origin = workspace_job_origin(defs.get_repository_def().name, ASSET_JOB)
    return SelectedJob(job, frozenset(keys), origin)


def workspace_job_origin(repository: str, job: str) -> RemoteJobOrigin:
    """The job as the UI's workspace knows it: workspace.yaml's code location, read the way
    `dagster dev -w workspace.yaml` reads it (the same origin, id for id, as its code server
    reports). A run created with it is one the UI can re-execute and shows in its Overview;
    one without (`dg.execute_job`) showed a CheckError traceback on "Re-execute". Read from the
    file rather than asked of a code server: 7 ms, against 3.6 s to start one and load the
    Definitions again in it."""
    origins = WorkspaceFileTarget([str(WORKSPACE_YAML)]).create_origins()
    for location in origins:
        target = getattr(location, "loadable_target_origin", None)
        if target is not None and target.module_name == DEFINITIONS_MODULE:
            return RemoteJobOrigin(RemoteRepositoryOrigin(location, repository), job)
    raise SettingsError(f"{WORKSPACE_YAML} loads no code location from {DEFINITIONS_MODULE}")


def _create_run(
    instance: dg.DagsterInstance, selected: SelectedJob, tags: dict[str, str]
) -> dg.DagsterRun:
    """The run as `dg.execute_job` creates it, plus what the UI needs of it: the job's origin in
    the workspace (to re-execute it) and the asset selection (the Runs list's "what it built";
    a re-execution builds the same)."""
    return instance.create_run_for_job(
        job_def=selected.job.get_definition(),
        run_config=LOG_INFO,
        tags=tags,
        asset_selection=selected.assets,
        remote_job_origin=selected.origin,
        job_code_origin=selected.job.get_python_origin(),
        # What dg.execute_job passes: the Definitions' load data, computed once per process.
        repository_load_data=selected.job.repository.get_definition().repository_load_data,
    )


def preflight(required: Set[str], settings: Settings) -> None:
    """What the run's steps need (`required`: their resources), asked before it starts. Each of
    these failed every step it concerns with Dagster's step log, tens to hundreds of lines and
    exit 1: a dbt manifest older than its sources (a KeyError once the raw steps had run), S3
    refusing the landing zone (no bucket, no credentials: 135-273 lines per file step), a
    warehouse folder DuckDB cannot write. Asked first, each is the CLI's one line, exit 2."""
    if "dbt" in required and (stale := stale_manifest()):
        raise SettingsError(f"{stale}: run `make install`, which builds it again")
    if "landing" in required:
        LandingZone(url=settings.landing).check_reachable()
    if settings.engine == "duckdb" and required & WAREHOUSE_WRITERS:
        require_writable_warehouse(settings.warehouse)
    if settings.executor == "celery":
        check_broker_answers(os.environ[CELERY_BROKER_VARIABLE].strip())


def materialize_range(
    select: str, start: date | None, end: date | None, timeout: float | None = None
) -> int:
    keys = partition_window(start, end)
    require_manifest()
    selected = selected_job(select)
    settings = load_settings()
    subset = selected.job.get_subset(asset_selection=selected.assets)
    preflight(subset.get_definition().required_resource_keys, settings)
    invocation = str(uuid.uuid4())
    tags = {
        **range_tags(keys),
        INVOCATION_TAG: invocation,
        WORKER_HOST_TAG: this_host(),
        CREATOR_PID_TAG: str(os.getpid()),
        # Not retried by the daemon: whoever runs the command gets the run's outcome, and its
        # Ctrl-C or --timeout is not undone behind their back. The UI's "Re-execute" can.
        MAX_RETRIES_TAG: "0",
    }
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stop = threading.Event()
    deadline = Deadline(timeout if timeout is not None else math.inf)
    began = time.monotonic()
    # The instance's errors while the run writes (a DAGSTER_HOME whose disk filled up) are its
    # one line too, not the source database's, which the CLI's catch-all blamed.
    config = settings.dagster_home / "dagster.yaml"
    with platform_instance(settings) as instance, instance_errors(config):
        for line in release_dead_runs(instance):
            print(line, file=sys.stderr)
        print(
            f"materializing {select!r} for {keys[0]}..{keys[-1]} ({len(keys)} days)",
            file=sys.stderr,
        )
        threading.Thread(
            target=report_waits,
            args=(instance, (INVOCATION_TAG, invocation), stop, WAIT_REPORT_SECONDS),
            daemon=True,
        ).start()
        if timeout is not None:
            threading.Thread(target=deadline.wait_then_expire, daemon=True).start()
        # SIGINT and SIGTERM (Ctrl-C, the deadline) are only recorded in here, never raised at
        # an arbitrary point: the run's execution acts on one at its checkpoints (on one
        # recorded before it started, at the first), marking the run failed. One that lands
        # after the run ended is dropped with the capture: the run finished, and its result is
        # what this reports. It once raised after execute_run returned (entering the result
        # re-initialized every resource, where Dagster raises a pending interrupt): a run that
        # had succeeded reported "timed out", exit 3, or a traceback. The result is not entered:
        # its events and status need no resources.
        with capture_interrupts():
            try:
                result = execute_run(selected.job, _create_run(instance, selected, tags), instance)
            except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError):
                result = None
            finally:
                timed_out = deadline.finish()  # no interrupt from the deadline after this
                stop.set()
    interrupted = result is None or was_interrupted(result)
    if interrupted:
        reason = f"timed out after {timeout:g}s" if timed_out else "interrupted"
        print(f"run {reason}: stopped and marked failed", file=sys.stderr)
        return EXIT_TIMED_OUT if timed_out else EXIT_INTERRUPTED
    materialized, failures = summarize(result)
    print(f"\nrun {result.run_id} in {time.monotonic() - began:.1f}s", file=sys.stderr)
    for key, count in sorted(materialized.items()):
        print(
            f"  materialized {key}: {count} partition(s)" if count > 1 else f"  materialized {key}"
        )
    for line in failures:
        print(f"  FAILED {line}")
    print("success" if result.success else "FAILED: see the run in the UI for details")
    return 0 if result.success else 1
