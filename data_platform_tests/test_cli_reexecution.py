"""A `data-platform materialize` run, re-executed as the UI re-executes it.

The CLI runs its run in its own process. Until 2026-12-07 it made that run with
`dg.execute_job`, which records no workspace origin and no asset selection: the UI's
"Re-execute" answered with a CheckError traceback (`launch_reexecution_from_parent_run`:
`check.not_none(parent_run.remote_job_origin)`), the Overview timeline left the run out and
the Runs list did not say what it built. Here the run is made by the real command on a home of
its own, then re-executed through the UI's own GraphQL mutation against the workspace that
`make run` serves (workspace.yaml, its code server a subprocess, the repo's dagster.yaml), its
queue drained as the daemon drains it.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.plan.resume_retry import ReexecutionStrategy
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)
from dagster_graphql.client.query import LAUNCH_PIPELINE_REEXECUTION_MUTATION
from dagster_graphql.test.utils import execute_dagster_graphql

from data_platform.materialize import ASSET_JOB
from data_platform.orchestration.run_health import CREATOR_PID_TAG, release_never_started_runs
from data_platform.partitions import RANGE_END_TAG, RANGE_START_TAG
from data_platform.simulator import SimulationConfig, simulate
from data_platform_tests.helpers import query
from data_platform_tests.landed_records import read_landed
from data_platform_tests.test_cli import REPO, run_cli

FIRST = date(2026, 1, 5)
DAYS = [FIRST, FIRST + timedelta(days=1)]
EVENTS = dg.AssetKey(["raw", "events"])

# What the UI's Runs list and Overview timeline read of a run (its "Re-execute" button reads
# the same origin).
RUN_QUERY = """
query($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      status
      assetSelection { path }
      repositoryOrigin { repositoryLocationName repositoryName }
    }
  }
}
"""


def events_per_day(settings) -> dict[date, int]:
    rows = query(settings.warehouse, "SELECT dt, count(*) FROM raw.events GROUP BY dt")
    return dict(rows)


def materialized_days(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    return {
        r.event_log_entry.dagster_event.partition
        for r in records
        if r.event_log_entry.dagster_event.asset_key == EVENTS
    }


def wait_until_ended(instance: dg.DagsterInstance, run_id: str, timeout: float) -> dg.DagsterRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return run
        time.sleep(0.5)
    pytest.fail(f"run {run_id} still {instance.get_run_by_id(run_id).status} after {timeout}s")


def test_a_cli_run_is_re_executed_from_the_ui_for_the_same_assets_and_days(
    settings, resources, monkeypatch
):
    simulate(
        SimulationConfig(seed=3, days=len(DAYS), end_date=DAYS[-1], users=30, events_per_day=200),
        resources["landing"],
        settings.source_db_url,
    )
    args = ("--start", str(DAYS[0]), "--end", str(DAYS[-1]), "--select", "key:raw/events")
    done = run_cli(settings.home, "materialize", *args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-2:] == ["  materialized raw/events: 2 partition(s)", "success"]
    # Independently: the contract's events of each landed day, read from the files.
    landed = dict(read_landed(Path(settings.landing), "events").per_dt())
    assert events_per_day(settings) == landed and set(landed) == set(DAYS)

    dagster_home = settings.home / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))  # the code server's run processes
    monkeypatch.chdir(REPO)  # `dagster dev -w workspace.yaml` is started from the repo
    with (
        dg.DagsterInstance.from_config(str(dagster_home)) as instance,
        WorkspaceProcessContext(
            instance, WorkspaceFileTarget([str(REPO / "workspace.yaml")])
        ) as ui,
    ):
        [parent] = instance.get_runs()
        [location] = ui.create_request_context().code_location_names
        seen = execute_dagster_graphql(
            ui.create_request_context(), RUN_QUERY, {"runId": parent.run_id}
        ).data["runOrError"]
        assert seen["repositoryOrigin"] == {
            "repositoryLocationName": location,
            "repositoryName": "__repository__",
        }
        assert seen["assetSelection"] == [{"path": ["raw", "events"]}]

        # The re-execution as the webserver makes it, before it queues it: the CLI's tags with
        # it, its creator pid a process long gone. Not judged a run its creator never started.
        context = ui.create_request_context()
        code_location = context.get_code_location(location)
        pending = instance.create_reexecuted_run(
            parent_run=parent,
            request_context=context,
            code_location=code_location,
            remote_job=code_location.get_repository("__repository__").get_full_job(ASSET_JOB),
            strategy=ReexecutionStrategy.ALL_STEPS,
            use_parent_run_tags=True,
        )
        assert pending.tags[CREATOR_PID_TAG] == parent.tags[CREATOR_PID_TAG]
        assert release_never_started_runs(instance) == []
        instance.delete_run(pending.run_id)

        # The UI's "Re-execute all": launchPipelineReexecution with the parent's id.
        launched = execute_dagster_graphql(
            ui.create_request_context(),
            LAUNCH_PIPELINE_REEXECUTION_MUTATION,
            {"reexecutionParams": {"parentRunId": parent.run_id, "strategy": "ALL_STEPS"}},
        ).data["launchPipelineReexecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        child_id = launched["run"]["runId"]
        # Queued, as the UI queues it; the daemon's coordinator launches it through the code
        # server, which starts the run's own process.
        list(QueuedRunCoordinatorDaemon(interval_seconds=1).run_iteration(ui))
        child = wait_until_ended(instance, child_id, timeout=240)

        assert child.status == dg.DagsterRunStatus.SUCCESS, child.status
        assert child.parent_run_id == parent.run_id
        assert child.asset_selection == {EVENTS}
        # The same window, one run: the range tags are the parent's.
        for tag in (RANGE_START_TAG, RANGE_END_TAG):
            assert child.tags[tag] == parent.tags[tag]
        assert materialized_days(instance, child_id) == {str(day) for day in DAYS}
        assert materialized_days(instance, parent.run_id) == {str(day) for day in DAYS}
    # Each day replaced, not appended to.
    assert events_per_day(settings) == landed
