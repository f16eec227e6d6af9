"""The Celery app the local workers run (`celery -A data_platform.services.celery_app worker`).

dagster-celery's own app (`dagster_celery.app`) takes its broker from a module that
`dagster-celery worker start` writes under the instance's folder at each start, with every
`env:` reference resolved: the broker URL, Redis's password included, landed in a new
world-readable file per worker start, never deleted, and with it anyone on the machine could
queue a step that a worker runs as the platform. This app is built the way the run's executor
builds its own (`make_app` over the executor's arguments, the same `celery_execution_config`),
with the broker read from the worker's environment: the URL is never written anywhere.
"""

from __future__ import annotations

import os

import celery
from celery import states
from celery.worker.control import inspect_command
from celery.worker.request import Request
from celery.worker.state import task_ready
from dagster import DagsterRun
from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task, create_task

from data_platform.code_version import loaded_code_version
from data_platform.resources.run_pinned import require_run_code
from data_platform.services.celery_lease import LeaseRenewal
from data_platform.services.executor import celery_execution_config
from data_platform.settings import CELERY_BROKER_VARIABLE, SettingsError, load_settings

_broker = os.environ.get(CELERY_BROKER_VARIABLE, "").strip()
if not _broker:
    raise SettingsError(
        f"{CELERY_BROKER_VARIABLE} is not set: a worker needs the broker URL in its environment "
        "(`make services-up` starts the workers with it)"
    )

_config = celery_execution_config(load_settings().celery_lease_seconds)
app = make_app(
    CeleryExecutor.for_cli(
        broker=_broker, backend=_broker, config_source=_config["config_source"]
    ).app_args()
)
app.steps["consumer"].add(LeaseRenewal)
# The code this worker runs is the code of its start: taken now, before any step loads more.
loaded_code_version()


@inspect_command()
def code_version(state) -> dict[str, str]:
    """This worker's code version, which `services up` asks for (services/celery_workers.py)."""
    return {"code": loaded_code_version()}


class SkippingEndedSteps(Request):
    """A step's message whose task already has its result in the backend is dropped, not run
    again: its worker lost (frozen past its lease, or killed) after the step ended and stored
    its result but before the message was acknowledged, the message went back on the queue at
    the lease's end, and another worker ran the step a second time while its run went on (a
    second raw/events beside the run's next `duckdb` step, outside the pool). Asked here, in the
    worker's main process before the step starts: once started, its STARTED state replaces the
    result the run's process may not have read yet. A step whose worker died mid-step has no
    result and runs again, as before."""

    def revoked(self) -> bool:
        if super().revoked():
            return True
        try:
            ended = self.task.backend.get_state(self.id) in states.READY_STATES
        except Exception:  # the backend unreadable: run the step, as before
            return False
        if ended:
            task_ready(self)
            self.acknowledge()
            self._already_revoked = True
        return ended


class SkippingEndedRuns(celery.Task):
    """A step's task that does nothing when its run has ended. Its message outlives the run:
    still queued when the run's process died, or put back by a worker lost mid-step, it was
    executed after the run was failed and its `duckdb` slot freed, beside the next run's step
    (orchestration/orphaned_steps.py). A run being canceled is not skipped, unlike Dagster's
    own step processes: its live process still hands out steps and waits for their events (the
    Celery executor stops only on a signal), and a step skipped there, reporting none, kept the
    step's slot claimed for good: the run's other steps waited on it, and every run after."""

    Request = SkippingEndedSteps

    def __call__(self, execute_step_args_packed: dict, executable_dict: dict) -> list[str]:
        run = _run_of(execute_step_args_packed)
        if run is None or run.is_finished:
            return []  # the run's process is gone: nobody reads the result
        # Raised here, the step's failure (services/executor.py) before any of it runs.
        require_run_code(run.tags)
        return super().__call__(execute_step_args_packed, executable_dict)


def _run_of(execute_step_args_packed: dict) -> DagsterRun | None:
    """The step's run, None when it was deleted."""
    from dagster import DagsterInstance
    from dagster._grpc.types import ExecuteStepArgs
    from dagster._serdes import unpack_value

    args = unpack_value(execute_step_args_packed, as_type=ExecuteStepArgs)
    with DagsterInstance.from_ref(args.instance_ref) as instance:
        return instance.get_run_by_id(args.run_id)


# The tasks dagster-celery's executor sends, by name: the same three as `dagster_celery.app`.
execute_plan = create_task(app, base=SkippingEndedRuns)
execute_job = create_execute_job_task(app)
resume_job = create_resume_job_task(app)
