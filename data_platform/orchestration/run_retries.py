"""Dagster's run retries, for a run whose code server died before it.

Dagster's event-log consumer daemon retries a failed run once, when it reads the run's failure
event: `retry_run` re-executes the run through the run's code location. When the code server
that spawned the run died first while the daemon lived on (the server killed, OOM-killed), the
monitoring daemon fails the run (run_health.py) within `poll_interval_seconds`, and the retry
asks the dead server for the job: DagsterUserCodeUnreachableError. Dagster then logs "Failed to
retry run", tags the run `dagster/will_retry=false` and moves its cursor past the failure, so the
run is never retried, although the daemon starts a new code server at its next workspace
refresh, up to 60 s later.

So a retry that cannot reach its code location reloads it (what the UI's "Reload" does: a new
code server, waited for until it serves its definitions) and is tried again, up to
`RELOADS` times. One reload is not always enough: the daemon refreshes its whole workspace every
60 s from the registry's current server, and a refresh that began before the reload (from the
dead server) can end after it and put the dead location back. Dagster's own rules are left as
they are: max_retries was counted when the run failed (`dagster/will_retry`), and a retry run
already created is submitted, not created again.
"""

from __future__ import annotations

import dagster as dg
from dagster import _check as check
from dagster._core.errors import DagsterCodeLocationLoadError, DagsterUserCodeUnreachableError
from dagster._core.workspace.context import IWorkspaceProcessContext
from dagster._daemon.auto_run_reexecution import auto_run_reexecution

# The run's code location is down (its server gone) or came back broken: a reload may mend both.
_UNREACHABLE = (DagsterUserCodeUnreachableError, DagsterCodeLocationLoadError)
# Each reload starts a code server and waits for it (seconds); three outlast a refresh's race.
RELOADS = 3


def install() -> None:
    """Make the daemon's `retry_run` reload an unreachable code location and try again.

    Dagster's loop calls `retry_run` through its module, so replacing it there is enough.
    Idempotent."""
    retry_run = auto_run_reexecution.retry_run
    if getattr(retry_run, "_data_platform_reloads", False):
        return

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

    retry_run_reloading._data_platform_reloads = True  # type: ignore[attr-defined]
    auto_run_reexecution.retry_run = retry_run_reloading
