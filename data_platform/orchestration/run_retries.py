"""Dagster's run retries, mended: two ways a crashed run was never retried, and one way a run
was retried that had been told to stop.

Dagster's event-log consumer daemon retries a failed run once, when it reads the run's failure
event: `should_retry` reads the run's `dagster/will_retry` tag, and `retry_run` re-executes the
run through the run's code location. Its cursor then moves past the event for good.

1. **The run read before it settled.** The instance stores a RUN_FAILURE event first, then
   sets the run's status, then tags it `dagster/will_retry`. A consumer reading the run in
   between saw it still STARTED, untagged, judged it not to retry, and moved on: the run stayed
   FAILURE with `dagster/will_retry=true` and no retry (seen once in CI and twice here, under
   load, in `test_self_healing.py`). A run read unfinished is read again until it has settled.
2. **The code server died first.** When the code server that spawned the run died while the
   daemon lived on (killed, OOM-killed), the monitoring daemon fails the run (run_health.py)
   and the retry asks the dead server for the job: DagsterUserCodeUnreachableError, "Failed to
   retry run", `dagster/will_retry=false`, though the daemon starts a new code server within a
   minute. A retry that cannot reach its code location reloads it (what the UI's "Reload" does)
   and is tried again, up to `RELOADS` times: a workspace refresh (every 60 s) begun from the
   dead server before a reload can end after it and put the dead location back.

3. **A canceled run retried.** A run being canceled (the UI's Terminate: CANCELING) whose
   process is then killed (a stuck step killed by hand, the OOM killer) is failed by its code
   server with `dagster/will_retry=true`, and was retried: the work someone stopped started
   again. Such a run is not retried, and its tag says so.

Dagster's own rules are left as they are: max_retries was counted when the run failed, and a
retry run already created is submitted, not created again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import dagster as dg
from dagster import _check as check
from dagster._core.errors import DagsterCodeLocationLoadError, DagsterUserCodeUnreachableError
from dagster._core.storage.tags import WILL_RETRY_TAG
from dagster._core.workspace.context import IWorkspaceProcessContext
from dagster._daemon.auto_run_reexecution import auto_run_reexecution

# The run's code location is down (its server gone) or came back broken: a reload may mend both.
_UNREACHABLE = (DagsterUserCodeUnreachableError, DagsterCodeLocationLoadError)
# Each reload starts a code server and waits for it (seconds).
RELOADS = 3
# The instance settles a run within milliseconds of its event; a run read unfinished for this
# long after its RUN_FAILURE or RUN_SUCCESS was read is judged as it then is.
SETTLE_SECONDS = 10.0


def settled(run: dg.DagsterRun, instance: dg.DagsterInstance) -> dg.DagsterRun:
    """The run as stored once it has finished, read again until it has (or SETTLE_SECONDS)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while not run.is_finished and time.monotonic() < deadline:
        time.sleep(0.1)
        run = check.not_none(instance.get_run_by_id(run.run_id))
    return run


def was_canceling(run: dg.DagsterRun, instance: dg.DagsterInstance) -> bool:
    """Whether someone asked the run to stop before it ended (its RUN_CANCELING event)."""
    canceling = dg.DagsterEventType.RUN_CANCELING
    return bool(instance.get_records_for_run(run.run_id, of_type=canceling, limit=1).records)


def not_canceled(
    runs: Sequence[dg.DagsterRun], instance: dg.DagsterInstance
) -> list[dg.DagsterRun]:
    """`runs` but those that were being canceled, which are tagged not to be retried."""
    kept = []
    for run in runs:
        if was_canceling(run, instance):
            instance.add_run_tags(run.run_id, {WILL_RETRY_TAG: "false"})
        else:
            kept.append(run)
    return kept


def install() -> None:
    """Install the mends in the daemon's retry loop, which calls `filter_runs_to_should_retry`
    and `retry_run` through their module: replacing them there is enough. Idempotent."""
    if getattr(auto_run_reexecution.retry_run, "_data_platform_mended", False):
        return
    filter_runs = auto_run_reexecution.filter_runs_to_should_retry
    retry_run = auto_run_reexecution.retry_run

    def filter_settled_runs(
        runs: Sequence[dg.DagsterRun], instance: dg.DagsterInstance
    ) -> Iterator[dg.DagsterRun]:
        return filter_runs(
            not_canceled([settled(run, instance) for run in runs], instance), instance
        )

    def retry_run_reloading(
        failed_run: dg.DagsterRun, workspace_context: IWorkspaceProcessContext
    ) -> None:
        for _ in range(RELOADS):
            try:
                return retry_run(failed_run, workspace_context)
            except _UNREACHABLE:
                # Raised only past retry_run's check that the run has an origin to retry it from.
                origin = check.not_none(failed_run.remote_job_origin)
                workspace_context.reload_code_location(origin.location_name)
        # The last failure is Dagster's to handle: "Failed to retry run", not retried.
        return retry_run(failed_run, workspace_context)

    retry_run_reloading._data_platform_mended = True  # type: ignore[attr-defined]
    # Dagster's own, for inspect.unwrap (the tests judge a stale read with Dagster's filter).
    filter_settled_runs.__wrapped__ = filter_runs  # type: ignore[attr-defined]
    retry_run_reloading.__wrapped__ = retry_run  # type: ignore[attr-defined]
    auto_run_reexecution.filter_runs_to_should_retry = filter_settled_runs
    auto_run_reexecution.retry_run = retry_run_reloading
