"""The run launcher of `dagster.yaml`: Dagster's default one, plus a run-worker health check.

With `supports_check_run_worker_health`, Dagster's monitoring daemon (`run_monitoring` in
dagster.yaml) asks every `poll_interval_seconds` whether each STARTED run's process is alive,
and fails the run when it is not; run retries and the slot release then take over.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext

from data_platform.orchestration.run_health import WORKER_HOST_TAG, check_worker, this_host


class HealthCheckedRunLauncher(dg.DefaultRunLauncher):
    """Launches runs on the code server's host (as Dagster's default) and checks their pids."""

    def launch_run(self, context: LaunchRunContext) -> None:
        self._instance.add_run_tags(context.dagster_run.run_id, {WORKER_HOST_TAG: this_host()})
        super().launch_run(context)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        return check_worker(self._instance, run)
