"""The executor the Definitions run steps with, chosen by DATA_PLATFORM_EXECUTOR."""

from __future__ import annotations

import sys
import warnings
from typing import Any

import dagster as dg
from dagster._core.execution.retries import RetryMode

from data_platform.orchestration.orphaned_steps import CELERY_RUN_TAG
from data_platform.resources.run_pinned import run_pins
from data_platform.settings import CELERY_BROKER_VARIABLE, Settings

# Renewals per lease (services/celery_lease.py): five can be late (a slow Redis, a long GC
# pause) before a live worker's step is handed out again.
RENEWALS_PER_LEASE = 6
# How often the run's process looks at its steps' results (dagster-celery: every 1 s); each look
# is a Redis read per step in flight.
RESULT_POLL_SECONDS = 0.2


def lease_transport_options(lease_seconds: int) -> dict[str, int]:
    """kombu's Redis transport options for step leases of `lease_seconds`: a lapsed lease is
    looked for as often as leases are renewed (kombu looked every 100 s)."""
    every = max(1, lease_seconds // RENEWALS_PER_LEASE)
    return {
        "visibility_timeout": lease_seconds,
        "unacked_restore_interval": every,
        "unacked_restore_throttle": 1,
        # A worker lost while putting messages back holds the sweep's lock until it expires.
        "unacked_mutex_expire": lease_seconds,
    }


# What the run's executor and every worker must agree on (services/celery_app.py builds the
# workers' app from the same):
# - a step's message is acknowledged when the step ends, not when a worker takes it, and a
#   worker process that dies (kill -9, OOM) puts it back on the queue: another worker runs the
#   step again (one transaction per step: re-running it is safe) instead of the run waiting
#   forever on a result that will never come, holding its `duckdb` slot; a whole worker lost
#   puts it back when its lease lapses (services/celery_lease.py);
# - a worker reserves one message at a time, so a lost worker strands no queued steps;
# - Redis restarting (a crash, an upgrade) is waited for, a few minutes at most: the run polls
#   its steps' results there and sends its next steps there. Celery gave up at once: a restart
#   of 10 s failed every run in flight while its steps went on and succeeded on the workers
#   (Redis keeps its queue and results on disk). Down for longer, the run fails, as before.
# - a worker stores that it began a step (STARTED) in the result backend. A revoke (Ctrl-C,
#   SIGTERM, `--timeout` or the UI's Terminate: Dagster's loop revokes its steps, then waits for
#   their results) is broadcast to every worker, and each one not executing the step stores it
#   as revoked if its state says no worker began it: PENDING, it did so for a step executing on
#   another worker, and the run ended, failed, its `duckdb` slot soon freed, with the step
#   still writing.
def celery_execution_config(lease_seconds: int) -> dict[str, Any]:
    """dagster-celery's executor config, with steps leased for `lease_seconds`."""
    return {
        "broker": {"env": CELERY_BROKER_VARIABLE},
        "backend": {"env": CELERY_BROKER_VARIABLE},
        "config_source": {
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "task_track_started": True,
            "worker_prefetch_multiplier": 1,
            "broker_transport_options": lease_transport_options(lease_seconds),
            # Backoff doubling from 10 ms, jittered, capped at 10 s: about 4 minutes in all.
            "result_backend_always_retry": True,
            "result_backend_max_retries": 60,
            # 0, 1, ... 5 s apart: about 4.5 minutes in all.
            "task_publish_retry_policy": {
                "max_retries": 60,
                "interval_start": 0,
                "interval_step": 1,
                "interval_max": 5,
            },
        },
    }


class StepFailureOnRaise:
    """A step's Celery result whose task, if it raised outside the step's own code (a worker
    that cannot load the code or reach the instance, a resource that cannot be set up), gives
    that error as the step's failure. dagster-celery kept such an error aside and handed out no
    further step: the step had no failure in its log, the run's other steps never ran, and a
    resource raising on a worker left `materialize` waiting 13 minutes (killed)."""

    def __init__(self, result: Any, step_context: Any):
        self._result, self._step_context = result, step_context

    def ready(self) -> bool:
        return self._result.ready()

    def revoke(self) -> None:
        """Revoke the step's task, and store it as revoked if no worker began it. Each live
        worker does the latter for a revoke it receives, but with none alive (all stopped,
        lost, or not started) nobody did: Dagster's loop, interrupted, waits for the result of
        every step it revoked, and `materialize` ran on past its `--timeout`, Ctrl-C ignored,
        until a worker took the message. A worker that takes it later drops it (revoked) or
        skips it (its run ended: celery_app.py)."""
        from celery import states

        self._result.revoke()
        if self._result.state == states.PENDING:
            self._result.backend.mark_as_revoked(self._result.id, reason="revoked while queued")

    def get(self) -> list[str]:
        """The step's serialized events, as dagster-celery's task returns them."""
        from celery.exceptions import TaskRevokedError
        from dagster._core.events import DagsterEvent
        from dagster._core.execution.plan.objects import StepFailureData
        from dagster._serdes import serialize_value
        from dagster._utils.error import serializable_error_info_from_exc_info

        try:
            return self._result.get()
        except TaskRevokedError:
            raise
        except Exception:
            error = serializable_error_info_from_exc_info(sys.exc_info())
            failure = StepFailureData(error=error, user_failure_data=None)
            return [serialize_value(DagsterEvent.step_failure_event(self._step_context, failure))]


def _submit_reporting_failures(app, plan_context, step, queue, priority, known_state):
    """dagster-celery's submission of a step, its result a `StepFailureOnRaise`. It registers
    its task on the app anew for every step, and Celery warned of the name taken at the second:
    nine lines on every distributed `materialize`'s stderr, about nothing (only the name is
    sent)."""
    from celery.exceptions import DuplicateTaskNameWarning
    from dagster_celery.executor import _submit_task

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicateTaskNameWarning)
        result = _submit_task(app, plan_context, step, queue, priority, known_state)
    return StepFailureOnRaise(result, plan_context.for_step(step))


def celery_pinning_its_runs(pins: dict[str, str]) -> dg.ExecutorDefinition:
    """dagster-celery's executor, its steps' results `StepFailureOnRaise`, which first tags
    its run as executed by Celery (`orphaned_steps`) and with `pins` (`run_pins`: the
    warehouse, landing zone and app database of the run's process), which each step checks
    where it first uses them (resources/run_pinned.py). A worker's Definitions are built from
    the worker's own environment, so a worker started without the run's DATA_PLATFORM_ENGINE
    wrote the run's tables elsewhere, silently."""
    from dagster_celery.executor import CELERY_CONFIG, CeleryExecutor

    class TaggingCeleryExecutor(CeleryExecutor):
        def execute(self, plan_context, execution_plan):
            from dagster_celery import core_execution_loop

            tags = {**pins, CELERY_RUN_TAG: "celery"}
            plan_context.instance.add_run_tags(plan_context.run_id, tags)
            # dagster-celery looks at its steps' results once a second: a step of 0.2 s held the
            # next (each warehouse step waits for the one before, in the `duckdb` pool) up to 1 s.
            core_execution_loop.TICK_SECONDS = RESULT_POLL_SECONDS
            return core_execution_loop.core_celery_execution_loop(
                plan_context, execution_plan, step_execution_fn=_submit_reporting_failures
            )

    @dg.executor(
        name="celery",
        config_schema=CELERY_CONFIG,
        requirements=dg.multiple_process_executor_requirements(),
    )
    def tagging_celery_executor(init_context: dg.InitExecutorContext) -> TaggingCeleryExecutor:
        config = init_context.executor_config
        return TaggingCeleryExecutor(
            broker=config.get("broker"),
            backend=config.get("backend"),
            config_source=config.get("config_source"),
            include=config.get("include"),
            retries=RetryMode.from_config(config["retries"]),
        )

    return tagging_celery_executor


def build_executor(settings: Settings) -> dg.ExecutorDefinition:
    """Embedded: steps in the run's process. Distributed: each step a task for a Celery worker.

    The broker is an `env:` reference (Redis is the result backend too), so its URL, which may
    carry a password in production, never shows in the UI or the run config.
    """
    if settings.executor == "celery":
        return celery_pinning_its_runs(run_pins(settings)).configured(
            celery_execution_config(settings.celery_lease_seconds)
        )
    return dg.in_process_executor
