"""The run launcher of `dagster.yaml`: Dagster's default one, plus a run-worker health check.

With `supports_check_run_worker_health`, Dagster's monitoring daemon (`run_monitoring` in
dagster.yaml) asks every `poll_interval_seconds` whether each STARTED run's process is alive,
and fails the run when it is not; run retries (`run_retries.py`, which this launcher installs in
the daemon) and the slot release then take over.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext
from dagster._serdes import ConfigurableClassData

from data_platform.orchestration import run_retries
from data_platform.orchestration.run_health import WORKER_HOST_TAG, check_worker, this_host


def worker_host(run: dg.DagsterRun) -> str:
    """The host the run's process will run on: its code server's, until the process tags its
    own (`heartbeat.install`, as its plan starts).

    A code server the launcher spawned itself (`dagster dev`, a workspace of modules) runs here,
    its child; one reached over gRPC (`dagster code-server start` in another container) runs
    on its host, where this machine cannot see the run's pid. Tagged with this machine instead,
    a live run there was called dead (its pid is not here), failed and its pool slot freed
    while it still wrote. That holds for `localhost` too: a server there may be a container of
    its own pid namespace (this_host), so its run is judged by beats, not pids, until it says
    where it is."""
    origin = run.remote_job_origin
    host = getattr(origin.repository_origin.code_location_origin, "host", None) if origin else None
    return this_host() if host is None else host


class HealthCheckedRunLauncher(dg.DefaultRunLauncher):
    """Launches runs on the code server's host (as Dagster's default) and checks their pids."""

    def __init__(self, inst_data: ConfigurableClassData | None = None):
        super().__init__(inst_data=inst_data)
        # The daemon builds its launcher before it fails a dead run (its monitor asks the launcher
        # first), so before it retries one through a code server that may have died too.
        run_retries.install()

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        self._instance.add_run_tags(run.run_id, {WORKER_HOST_TAG: worker_host(run)})
        super().launch_run(context)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        return check_worker(self._instance, run)
