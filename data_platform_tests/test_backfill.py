"""A backfill of several days through Dagster's backfill daemon is one run, not one per day.

The platform's definitions are loaded as the daemon loads them; runs are recorded, not
executed (a mocked launcher), and each is then marked successful with its materializations so
the daemon moves on. What is under test is the runs the daemon asks for.
"""

import logging
import time
from collections.abc import Iterator

import dagster as dg
import pytest
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import InProcessTestWorkspaceLoadTarget
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._daemon.backfill import execute_backfill_iteration

from data_platform_tests.helpers import RANGE_TAGS

RAW_EVENTS = dg.AssetKey(["raw", "events"])
FCT_EVENTS = dg.AssetKey(["marts", "fct_events"])
STG_EVENTS = dg.AssetKey(["staging", "stg_events__events"])
DAYS = ["2026-01-03", "2026-01-04", "2026-01-05", "2026-01-06"]
MOCKED_LAUNCHER = {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"}


@pytest.fixture
def workspace(settings) -> Iterator[WorkspaceProcessContext]:
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="data_platform.definitions", attribute="defs"),
        location_name="data_platform",
    )
    with (
        dg.instance_for_test(overrides={"run_launcher": MOCKED_LAUNCHER}) as instance,
        WorkspaceProcessContext(instance, InProcessTestWorkspaceLoadTarget(origin)) as context,
    ):
        yield context


def complete(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """What the run would have done: materialize its assets for the run's days, then succeed."""
    for key in run.asset_selection:
        for day in DAYS:
            event = StepMaterializationData(dg.AssetMaterialization(key, partition=day))
            instance.report_dagster_event(
                DagsterEvent(
                    DagsterEventType.ASSET_MATERIALIZATION.value,
                    run.job_name,
                    event_specific_data=event,
                ),
                run_id=run.run_id,
            )
    instance.report_dagster_event(
        DagsterEvent(DagsterEventType.RUN_SUCCESS.value, run.job_name), run_id=run.run_id
    )


def run_daemon(workspace: WorkspaceProcessContext, backfill: PartitionBackfill) -> list:
    """Backfill daemon iterations until the backfill is done; the runs it launched."""
    instance = workspace.instance
    instance.add_backfill(backfill)
    completed: set[str] = set()
    for _ in range(6):
        list(execute_backfill_iteration(workspace, logging.getLogger("backfill")))
        for run in instance.get_runs():
            if run.run_id not in completed:
                completed.add(run.run_id)
                complete(instance, run)
        if instance.get_backfill(backfill.backfill_id).status != BulkActionStatus.REQUESTED:
            break
    assert instance.get_backfill(backfill.backfill_id).status == BulkActionStatus.COMPLETED_SUCCESS
    return instance.get_runs()


def as_range(run: dg.DagsterRun) -> tuple[set[str], tuple[str, ...]]:
    assert "dagster/partition" not in run.tags
    return {k.to_user_string() for k in run.asset_selection}, tuple(run.tags[t] for t in RANGE_TAGS)


def test_raw_and_fact_over_four_days_are_one_run(workspace):
    graph = workspace.create_request_context().asset_graph
    days = graph.get(RAW_EVENTS).partitions_def.subset_with_partition_keys(DAYS)
    subset = AssetGraphSubset(partitions_subsets_by_asset_key={RAW_EVENTS: days, FCT_EVENTS: days})
    backfill = PartitionBackfill.from_asset_graph_subset(
        backfill_id="raw-and-fact",
        backfill_timestamp=time.time(),
        tags={},
        dynamic_partitions_store=workspace.instance,
        asset_graph_subset=subset,
        title=None,
        description=None,
        run_config=None,
    )
    (run,) = run_daemon(workspace, backfill)
    assert as_range(run) == ({"raw/events", "marts/fct_events"}, (DAYS[0], DAYS[-1]))


def test_the_ui_backfill_of_a_fact_is_one_run(workspace):
    """The UI's Materialize -> partition range -> Launch backfill, on the fact."""
    (run,) = run_daemon(workspace, ui_backfill(workspace, [FCT_EVENTS]))
    assert as_range(run) == ({"marts/fct_events"}, (DAYS[0], DAYS[-1]))


def ui_backfill(workspace: WorkspaceProcessContext, keys: list[dg.AssetKey]) -> PartitionBackfill:
    """What the UI's Materialize -> partition range -> Launch backfill creates for `keys`."""
    return PartitionBackfill.from_asset_partitions(
        backfill_id="ui",
        asset_graph=workspace.create_request_context().asset_graph,
        partition_names=DAYS,
        asset_selection=keys,
        backfill_timestamp=time.time(),
        tags={},
        dynamic_partitions_store=workspace.instance,
        all_partitions=False,
        title=None,
        description=None,
        run_config=None,
    )


def test_a_ui_backfill_of_the_whole_graph_targets_every_asset(workspace):
    """The facts were dropped from it, their only path to the raw tables going through the
    staging views, then unpartitioned: the backfill built the raw tables and the aggregates over
    facts it never built (in a new home: "Table fct_events does not exist")."""
    graph = workspace.create_request_context().asset_graph
    keys = [key for key in graph.get_all_asset_keys() if graph.get(key).is_materializable]
    targeted = ui_backfill(workspace, keys).asset_backfill_data.target_subset.asset_keys
    assert {FCT_EVENTS, dg.AssetKey(["marts", "fct_payments"])} <= targeted
    assert targeted == set(keys)


def test_the_ui_backfill_of_raw_through_its_fact_is_one_run(workspace):
    (run,) = run_daemon(workspace, ui_backfill(workspace, [RAW_EVENTS, STG_EVENTS, FCT_EVENTS]))
    assert as_range(run) == (
        {"raw/events", "staging/stg_events__events", "marts/fct_events"},
        (DAYS[0], DAYS[-1]),
    )
