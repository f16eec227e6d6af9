"""What a dead run left running elsewhere, stopped before the run is called dead: its steps
on Celery workers, its statements in the Spark cluster.

A run executed by Celery workers lives on in its steps: kill -9 of its process (`materialize`,
a code server's run worker) left a step running on a worker, and the run's `duckdb` slot was
freed as soon as its process was found gone. The next run's step then wrote beside it: on
Spark, where no file lock backs the pool, two writers of raw.events for 2.8 s and of the dbt
marts for 6 s (the audit of everything distributed at once, D4). So a dead Celery run is called
dead only once no worker executes or holds a step of it: those are revoked, and the processes
executing them killed (a step is one transaction: a killed one wrote nothing). A step still
queued is skipped by the worker that takes it, its run ended (`services/celery_app.py`).
Then the statements its steps' Spark sessions still run, which a killed client leaves running
in the cluster (resources/spark_sessions.py), are interrupted and the sessions closed: a step
the workers could not be asked about (its broker away) fails at its next statement.
"""

from __future__ import annotations

import os
import time

import dagster as dg

from data_platform.resources.run_pinned import warehouse_pin
from data_platform.resources.spark_sessions import close_sessions, sessions_of_run
from data_platform.settings import CELERY_BROKER_VARIABLE, SPARK_REMOTE_VARIABLE

# Set by the Celery executor on each run it executes (services/executor.py).
CELERY_RUN_TAG = "data_platform/executor"
# How long a worker has to answer whether it executes a step of the run.
_INSPECT_SECONDS = 1.0
# How long killed steps have to leave their workers' lists before the run is left for later.
_STOP_SECONDS = 15.0


def task_run_id(task: dict) -> str | None:
    """The run of a step's task as a worker lists it (`inspect().active()`): the run id of its
    packed `ExecuteStepArgs`. Not any id in its arguments: a retry's steps carry their parent
    run's too."""
    from dagster._grpc.types import ExecuteStepArgs
    from dagster._serdes import unpack_value

    kwargs = task.get("kwargs")
    packed = kwargs.get("execute_step_args_packed") if isinstance(kwargs, dict) else None
    if not isinstance(packed, dict):
        return None
    # Unpacked, not read: serdes stores the field under an older name (`pipeline_run_id`).
    return unpack_value(packed, as_type=ExecuteStepArgs).run_id


def _steps_of_run(app, run_id: str) -> dict[str, str]:
    """The run's step tasks each worker executes or has reserved: task id -> worker."""
    inspect = app.control.inspect(timeout=_INSPECT_SECONDS)
    found = {}
    for listing in (inspect.active(), inspect.reserved()):
        for worker, tasks in (listing or {}).items():
            found.update({t["id"]: worker for t in tasks if task_run_id(t) == run_id})
    return found


def stop_orphaned_steps(run: dg.DagsterRun) -> str | None:
    """Kill the steps of `run`, whose process is gone, still on Celery workers; what is still
    there after `_STOP_SECONDS`, or None once nothing is (or `run` was not executed by Celery).

    A broker this process cannot reach (or does not know: an embedded process) leaves the
    workers unasked: a run is never held for good by a broker gone."""
    if run.tags.get(CELERY_RUN_TAG) != "celery":
        return None
    from celery import Celery
    from kombu.exceptions import OperationalError

    broker = os.environ.get(CELERY_BROKER_VARIABLE, "").strip()
    if not broker:
        return None
    app = Celery(broker=broker, set_as_current=False)
    try:
        steps = _steps_of_run(app, run.run_id)
        deadline = time.monotonic() + _STOP_SECONDS
        while steps and time.monotonic() < deadline:
            app.control.revoke(list(steps), terminate=True, signal="SIGKILL")
            time.sleep(0.5)
            steps = _steps_of_run(app, run.run_id)
    except OperationalError:  # the broker away: nothing to ask the workers through
        return None
    finally:
        app.close()
    if not steps:
        return None
    where = ", ".join(sorted(set(steps.values())))
    return f"{len(steps)} of its steps still executing on {where}, asked to stop"


def stop_orphaned_statements(instance: dg.DagsterInstance, run: dg.DagsterRun) -> int:
    """Interrupt the statements still running in the Spark sessions `run` opened on this
    process's Spark endpoint, and close the sessions (resources/spark_sessions.py); how many
    statements were running."""
    remote = os.environ.get(SPARK_REMOTE_VARIABLE, "").strip()
    if not remote:
        return 0
    sessions = sessions_of_run(instance, run.run_id, warehouse_pin("spark", "", remote))
    return close_sessions(remote, sessions) if sessions else 0
