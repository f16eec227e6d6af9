"""The platform's Celery executor (services/executor.py), run in this process: Celery's eager
mode executes each step's task where it is submitted, through dagster-celery's own task."""

from __future__ import annotations

import dagster as dg

from data_platform.services.executor import celery_pinning_its_runs

EAGER = {
    "broker": "memory://",
    "backend": "cache+memory://",
    "config_source": {"task_always_eager": True},
}


class UnusableHere(dg.ConfigurableResource):
    """A resource a worker cannot set up: the error is raised outside the step's code."""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        raise RuntimeError("cannot be set up on this worker")


# First in the queue (higher Celery priority), and in one pool of one slot with `independent`,
# which therefore waits for it.
@dg.op(pool="duckdb", tags={"dagster-celery/priority": "9"})
def needs_it(unusable: UnusableHere) -> None:
    pass


@dg.op(pool="duckdb")
def independent() -> None:
    pass


@dg.job(
    executor_def=celery_pinning_its_runs({"data_platform/warehouse": "duckdb /w"}).configured(
        EAGER
    ),
    resource_defs={"unusable": UnusableHere()},
)
def two_steps() -> None:
    needs_it()
    independent()


def test_a_task_raising_outside_its_step_is_that_steps_failure_and_the_run_goes_on(tmp_path):
    """dagster-celery kept such an error aside and handed out no further step: the step had no
    failure in its log and `independent` never ran (the run failed with no step event at all);
    with many steps waiting, a run on the workers hung. Now it is the step's failure."""
    pools = {"concurrency": {"pools": {"default_limit": 1, "granularity": "op"}}}
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides=pools) as instance:
        result = dg.execute_job(dg.reconstructable(two_steps), instance, raise_on_error=False)
        run = instance.get_run_by_id(result.run_id)
    assert not result.success
    assert run.tags["data_platform/warehouse"] == "duckdb /w"
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "needs_it"
    assert "resource_fn on ResourceDefinition unusable" in str(failure.step_failure_data.error)
    assert [e.step_key for e in result.all_events if e.is_step_success] == ["independent"]
