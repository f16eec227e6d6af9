"""Headless materialization of a selection over a date range, on the configured instance.

The whole window goes into one run (partition-range tags), which the single-run backfill
policies turn into one set-based pass per asset instead of one run per day.

Before it starts, it fails runs whose process died and frees the pool slots they held (what
the monitoring daemon does under `dagster dev`), so an earlier crash never makes it wait
forever. While a step waits for a `duckdb` slot it says behind which run; Ctrl-C, SIGTERM and
`--timeout` stop it cleanly (the run is marked failed, its pending claims released).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import date

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from dagster._core.storage.tags import MAX_RETRIES_TAG

from data_platform.orchestration.instance import platform_instance
from data_platform.orchestration.pool_wait import report_waits
from data_platform.orchestration.run_health import WORKER_HOST_TAG, release_dead_runs, this_host
from data_platform.partitions import DAILY_PARTITIONS, RANGE_END_TAG, RANGE_START_TAG
from data_platform.settings import UsageError, load_settings

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
    """Partitions materialized per asset key, and one line per failed step. A partition
    counts once: raw/dead_letter's day is reported by each file source that writes to it."""
    materialized = Counter(
        key
        for key, _ in {
            (e.asset_key.to_user_string(), e.partition)
            for e in result.get_asset_materialization_events()
        }
    )
    failures = [
        f"{e.step_key}: {e.step_failure_data.error.message.strip() if e.step_failure_data.error else 'failed'}"
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    return materialized, failures


def was_interrupted(result: dg.ExecutionResult) -> bool:
    """Did the run stop on SIGINT/SIGTERM (or `--timeout`) rather than fail on its own?"""
    return any(
        e.event_type == dg.DagsterEventType.RUN_FAILURE
        and e.event_specific_data.error is not None
        and e.event_specific_data.error.cls_name == "DagsterExecutionInterruptedError"
        for e in result.all_events
    )


def _interrupt_after(seconds: float, timed_out: threading.Event, stop: threading.Event) -> None:
    if not stop.wait(seconds):
        timed_out.set()
        os.kill(os.getpid(), signal.SIGINT)


def selected_job(select: str) -> ReconstructableJob:
    """The Definitions' asset job cut to the selection, in a form an executor can rebuild
    elsewhere: with DATA_PLATFORM_EXECUTOR=celery the steps run on the Celery workers."""
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
    repository = ReconstructableRepository.for_module("data_platform.definitions", "defs")
    return repository.get_reconstructable_job("__ASSET_JOB").get_subset(asset_selection=keys)


def materialize_range(
    select: str, start: date | None, end: date | None, timeout: float | None = None
) -> int:
    keys = partition_window(start, end)
    job = selected_job(select)
    invocation = str(uuid.uuid4())
    tags = {
        **range_tags(keys),
        INVOCATION_TAG: invocation,
        WORKER_HOST_TAG: this_host(),
        # Run retries relaunch a run through its code location; a headless run has none.
        MAX_RETRIES_TAG: "0",
    }
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stop, timed_out = threading.Event(), threading.Event()
    began = time.monotonic()
    with platform_instance(load_settings()) as instance:
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
            threading.Thread(
                target=_interrupt_after, args=(timeout, timed_out, stop), daemon=True
            ).start()
        try:
            with dg.execute_job(job, instance, run_config=LOG_INFO, tags=tags) as result:
                interrupted = was_interrupted(result)
                materialized, failures = summarize(result)
        except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError):
            interrupted = True
        finally:
            stop.set()
    if interrupted:
        reason = f"timed out after {timeout:g}s" if timed_out.is_set() else "interrupted"
        print(f"run {reason}: stopped and marked failed", file=sys.stderr)
        return EXIT_TIMED_OUT if timed_out.is_set() else EXIT_INTERRUPTED
    print(f"\nrun {result.run_id} in {time.monotonic() - began:.1f}s", file=sys.stderr)
    for key, count in sorted(materialized.items()):
        print(
            f"  materialized {key}: {count} partition(s)" if count > 1 else f"  materialized {key}"
        )
    for line in failures:
        print(f"  FAILED {line}")
    print("success" if result.success else "FAILED: see the run in the UI for details")
    return 0 if result.success else 1
