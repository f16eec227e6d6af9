"""What a dead run left running, stopped: the runs it must leave alone, and the Spark sessions
it must know of. Killing a dead run's steps on live Celery workers is proven against a real
stack in test_distributed.py, interrupting its Spark statement on a real Spark in
test_dbt_spark.py."""

from __future__ import annotations

import json
import os
import time
from unittest import mock

import dagster as dg

from data_platform.assets.dbt import engine_variables
from data_platform.orchestration.orphaned_steps import CELERY_RUN_TAG, stop_orphaned_steps
from data_platform.resources.spark_sessions import (
    ENDPOINT_KEY,
    SESSION_KEY,
    sessions_left_open,
    sessions_of_run,
    with_session_id,
)
from data_platform.resources.warehouse import Warehouse
from data_platform.services.base import start
from data_platform.services.process import read_pid
from data_platform.services.redis_server import Redis
from data_platform.settings import CELERY_BROKER_VARIABLE
from data_platform_tests.helpers import free_port, while_frozen


def test_a_run_not_executed_by_celery_asks_no_broker():
    unreachable = {CELERY_BROKER_VARIABLE: f"redis://127.0.0.1:{free_port()}/0"}
    with mock.patch.dict(os.environ, unreachable):
        started = time.monotonic()
        assert stop_orphaned_steps(dg.DagsterRun(job_name="j", run_id="r")) is None
    assert time.monotonic() - started < 0.5


def test_a_broker_away_leaves_a_dead_celery_run_to_be_called_dead():
    """Redis gone for good (the platform moved back to embedded) must not hold the run, and its
    `duckdb` slot, forever: its workers, if any, cannot report to it either."""
    run = dg.DagsterRun(job_name="j", run_id="r", tags={CELERY_RUN_TAG: "celery"})
    unreachable = {CELERY_BROKER_VARIABLE: f"redis://127.0.0.1:{free_port()}/0"}
    with mock.patch.dict(os.environ, unreachable):
        started = time.monotonic()
        assert stop_orphaned_steps(run) is None
    # Kombu's retries took 6 s, paid per dead run by `materialize` and each daemon tick.
    assert time.monotonic() - started < 2


def test_a_broker_that_does_not_answer_leaves_a_dead_celery_run_to_be_called_dead(
    services_config,
):
    """A Redis that takes connections but does not answer (its server stopped, as a hung disk
    or a frozen machine leaves it): redis-py waits for a reply without limit, and the check held
    the next `materialize` and the daemon's run monitoring for ever. It is a broker away."""
    run = dg.DagsterRun(job_name="j", run_id="r", tags={CELERY_RUN_TAG: "celery"})
    redis = Redis(services_config)
    start(redis)
    try:
        with mock.patch.dict(os.environ, {CELERY_BROKER_VARIABLE: redis.url}):
            left = while_frozen(
                read_pid(redis.pid_file), lambda: stop_orphaned_steps(run), within=30
            )
    finally:
        redis.stop()
    assert left is None


def test_a_session_is_named_in_the_endpoints_url_beside_its_parameters():
    assert with_session_id("sc://h:15002", "s1") == "sc://h:15002/;session_id=s1"
    assert with_session_id("sc://h:15002/", "s1") == "sc://h:15002/;session_id=s1"
    assert (
        with_session_id("sc://h:15002/;token=t;use_ssl=true", "s1")
        == "sc://h:15002/;token=t;use_ssl=true;session_id=s1"
    )


def test_the_dbt_steps_spark_session_is_named_in_its_runs_log(tmp_path):
    """dbt-spark makes its session in dbt's own process, where no code of the platform runs:
    the step names the session in the URL dbt connects with, and in the run's log first."""
    remote = "sc://127.0.0.1:15002/;token=t"
    handed: dict[str, str] = {}

    @dg.asset
    def dbt_like(warehouse: Warehouse) -> None:
        handed.update(engine_variables(warehouse))

    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"), engine="spark", spark_remote=remote)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = dg.materialize([dbt_like], instance=instance, resources={"warehouse": warehouse})
        [session] = sessions_of_run(instance, result.run_id, "spark sc://127.0.0.1:15002")
    assert handed["SPARK_REMOTE"] == f"{remote};session_id={session}"


def test_a_spark_session_is_announced_under_the_step_that_opened_it(tmp_path):
    """The Spark session a check's step opens shows in that step's log in the UI."""

    @dg.asset
    def table() -> None:
        pass

    @dg.asset_check(asset=table)
    def opens_a_session(warehouse: Warehouse) -> dg.AssetCheckResult:
        warehouse.session_remote()
        return dg.AssetCheckResult(passed=True)

    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"), engine="spark", spark_remote="sc://h:1")
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = dg.materialize(
            [table, opens_a_session], instance=instance, resources={"warehouse": warehouse}
        )
        records = instance.get_records_for_run(
            result.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=None
        ).records
    steps = [
        r.event_log_entry.dagster_event.step_key
        for r in records
        if SESSION_KEY in r.event_log_entry.dagster_event.engine_event_data.metadata
    ]
    assert steps == ["table_opens_a_session"]


def test_a_steps_task_belongs_to_the_run_its_packed_arguments_name():
    """Its parent's run id is in a retry's arguments too: matched anywhere in them, the dead
    parent's check would kill its retry's steps."""
    from dagster._core.execution.plan.state import KnownExecutionState, PastExecutionState
    from dagster._core.execution.retries import RetryMode
    from dagster._grpc.types import ExecuteStepArgs
    from dagster._serdes import pack_value

    from data_platform.orchestration.orphaned_steps import task_run_id
    from data_platform_tests.test_celery_executor import two_steps

    parent = PastExecutionState(run_id="parent", produced_outputs=set(), parent_state=None)
    args = ExecuteStepArgs(
        job_origin=dg.reconstructable(two_steps).get_python_origin(),
        run_id="retry",
        step_keys_to_execute=["independent"],
        instance_ref=None,
        retry_mode=RetryMode.DISABLED,
        known_state=KnownExecutionState(parent_state=parent),
    )
    # As a worker lists it: the packed arguments, read back from JSON.
    packed = json.loads(json.dumps(pack_value(args)))
    assert '"run_id": "parent"' in json.dumps(packed)
    task = {"id": "t1", "kwargs": {"execute_step_args_packed": packed, "executable_dict": {}}}
    assert task_run_id(task) == "retry"
    assert task_run_id({"id": "t2", "kwargs": "('repr', 'of', 'another task')"}) is None


def test_the_sessions_of_a_dead_runs_ended_steps_are_left_alone(tmp_path):
    """Interrupting and closing a session costs a round trip to the endpoint (0.13 s; a
    whole-graph run opens ~60), and one whose step ended runs nothing: its step closed it.
    Those of a step still unended, or announced by no step, are interrupted."""
    from dagster._core.events import EngineEventData

    @dg.asset
    def ended(warehouse: Warehouse) -> None:
        warehouse.session_remote()

    endpoint = "spark sc://h:1"
    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"), engine="spark", spark_remote="sc://h:1")
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = dg.materialize([ended], instance=instance, resources={"warehouse": warehouse})
        run = instance.get_run_by_id(result.run_id)
        for step in ("unended", None):
            metadata = {SESSION_KEY: f"of {step}", ENDPOINT_KEY: endpoint}
            instance.report_engine_event("opened", run, EngineEventData(metadata), step_key=step)
        [_ended_steps, *left] = sessions_of_run(instance, run.run_id, endpoint)
        assert left == ["of unended", "of None"]
        assert sessions_left_open(instance, run.run_id, endpoint) == left
