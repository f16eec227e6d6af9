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
A worker that does not answer in time is no proof: one that holds a step of the run under a
live lease (`services/celery_lease.py`) leaves the run unjudged until a later check.
Then the statements its steps' Spark sessions still run, which a killed client leaves running
in the cluster (resources/spark_sessions.py), are interrupted and the sessions closed: a step
the workers could not be asked about (its broker away) fails at its next statement.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from data_platform.resources.run_pinned import warehouse_pin
from data_platform.resources.spark_sessions import close_sessions, sessions_left_open
from data_platform.settings import CELERY_BROKER_VARIABLE, SPARK_REMOTE_VARIABLE, load_settings

# Set by the Celery executor on each run it executes (services/executor.py).
CELERY_RUN_TAG = "data_platform/executor"
# How long a worker has to answer whether it executes a step of the run.
_INSPECT_SECONDS = 1.0
# How long killed steps have to leave their workers' lists before the run is left for later.
_STOP_SECONDS = 15.0
# How long a connection to the broker may take, tried once, and then each of its replies.
# Kombu's defaults (4 s a try, retried at 2 s, 4 s) made each dead Celery run's check cost 6 s
# while Redis refused, paid by the next `materialize` before it starts and by every daemon
# tick per dead run; and redis-py waits for a reply without limit: a Redis that takes
# connections but does not answer (stopped, its disk hung) held the check for ever.
_CONNECT_SECONDS = 2.0


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


@dataclass(frozen=True)
class StepsOnWorkers:
    """A dead run's step tasks on Celery workers, as far as they can be known."""

    # Listed by a worker that answered (executing or reserved): task id -> worker.
    listed: dict[str, str] = field(default_factory=dict)
    # Held under a live lease (services/celery_lease.py) by no worker that answered: its
    # worker renewed it within the lease, so it lives, but was too slow to answer (stopped,
    # a GC pause, a loaded host). Whether it still executes the step is unknown.
    silent: frozenset[str] = frozenset()

    @property
    def tasks(self) -> list[str]:
        return sorted({*self.listed, *self.silent})


def _control_app(broker: str) -> Any:
    """A Celery app to ask the workers through `broker`: one connection try of
    `_CONNECT_SECONDS`, so a broker away is known as such at once."""
    from celery import Celery

    app = Celery(broker=broker, set_as_current=False)
    app.conf.broker_connection_timeout = _CONNECT_SECONDS
    # Read by kombu for each connection the control commands make (Connection.default_channel).
    app.conf.broker_transport_options = {
        "max_retries": 0,
        "socket_connect_timeout": _CONNECT_SECONDS,
        "socket_timeout": _CONNECT_SECONDS,
    }
    return app


def _listed_steps(app: Any, run_id: str) -> dict[str, str]:
    """The run's step tasks each answering worker executes or has reserved: task id -> worker.

    Both lists are asked for at once: each broadcast waits its whole timeout for replies (the
    number of workers is not known here), and one after the other they cost 2 s per check."""
    inspect = app.control.inspect(timeout=_INSPECT_SECONDS)
    with ThreadPoolExecutor(max_workers=2) as pool:
        listings = list(pool.map(lambda ask: ask(), (inspect.active, inspect.reserved)))
    found = {}
    for listing in listings:
        for worker, tasks in (listing or {}).items():
            found.update({t["id"]: worker for t in tasks if task_run_id(t) == run_id})
    return found


def _leased_steps(app: Any, run_id: str, lease_seconds: float) -> set[str]:
    """The run's step tasks some worker holds under a live lease, read from the broker itself:
    the messages kombu keeps as taken (`unacked`) whose time, renewed by their worker's main
    process (services/celery_lease.py), is younger than the lease. Older ones any worker may
    hand out again: their worker is not known to live. A broker other than Redis (AMQP) keeps
    no such record: none are known, as before leases were read."""
    from kombu.exceptions import OperationalError

    with app.connection_for_read() as connection:
        channel = connection.default_channel
        if not hasattr(channel, "unacked_index_key"):
            return set()
        try:
            with channel.conn_or_acquire() as client:
                # As kombu's own sweep (restore_visible) reads it: taken at or before now
                # minus the lease is lapsed.
                floor = f"({time.time() - lease_seconds}"
                tags = client.zrange(channel.unacked_index_key, floor, "+inf", byscore=True)
                pipe = client.pipeline()
                for tag in tags:
                    pipe.hget(channel.unacked_key, tag)
                payloads = pipe.execute() if tags else []
        except connection.connection_errors as error:  # as kombu's own calls report it
            raise OperationalError(str(error)) from error
        return {
            task_id
            for payload in payloads
            if payload is not None and (task_id := _step_task_of_run(channel, payload, run_id))
        }


def _step_task_of_run(channel: Any, payload: bytes, run_id: str) -> str | None:
    """The task id of a taken message (`unacked`: the message, exchange, routing key) if it
    is a step of `run_id`."""
    from dagster_celery.config import TASK_EXECUTE_PLAN_NAME

    message = json.loads(payload)[0]
    headers = message.get("headers") or {}
    if headers.get("task") != TASK_EXECUTE_PLAN_NAME:
        return None
    body = channel.Message(message, channel=channel).decode()
    # Celery's message protocol 2: (args, kwargs, embed).
    kwargs = body[1] if isinstance(body, list | tuple) and len(body) > 1 else None
    return headers.get("id") if task_run_id({"kwargs": kwargs}) == run_id else None


def _steps_of_run(app: Any, run_id: str, lease_seconds: float) -> StepsOnWorkers:
    """The run's step tasks on the workers: those a worker answered it holds, and those held
    under a live lease that no answering worker listed. Silence alone proved nothing: a worker
    answering later than `_INSPECT_SECONDS` counted as holding nothing, and the run of a step
    still executing there was called dead, its slot freed."""
    listed = _listed_steps(app, run_id)
    # Read after the workers answered: a step acknowledged in between is gone from both.
    leased = _leased_steps(app, run_id, lease_seconds)
    return StepsOnWorkers(listed, frozenset(leased - listed.keys()))


def stop_orphaned_steps(run: dg.DagsterRun) -> str | None:
    """Kill the steps of `run`, whose process is gone, still on Celery workers; what is still
    there after `_STOP_SECONDS` or held by a worker that did not answer, or None once nothing
    is (or `run` was not executed by Celery).

    A broker this process cannot reach (or does not know: an embedded process) leaves the
    workers unasked: a run is never held for good by a broker gone. A worker that holds a step
    of it and does not answer holds the run only for as long as its lease lives."""
    if run.tags.get(CELERY_RUN_TAG) != "celery":
        return None
    from kombu.exceptions import OperationalError
    from redis.exceptions import TimeoutError as BrokerSilent

    broker = os.environ.get(CELERY_BROKER_VARIABLE, "").strip()
    if not broker:
        return None
    # The lease the workers run with: the same settings start them (services/celery_workers.py).
    lease = load_settings().celery_lease_seconds
    app = _control_app(broker)
    try:
        steps = _steps_of_run(app, run.run_id, lease)
        deadline = time.monotonic() + _STOP_SECONDS
        while steps.tasks and time.monotonic() < deadline:
            # The silent ones too: their worker kills them once it reads its mailbox again,
            # and any other worker, handed one when its lease lapses, drops it.
            app.control.revoke(steps.tasks, terminate=True, signal="SIGKILL")
            if not steps.listed:
                break  # asked again at the next check, not waited for: it may be minutes
            time.sleep(0.5)
            steps = _steps_of_run(app, run.run_id, lease)
    except (OperationalError, BrokerSilent):  # the broker away: nothing to ask the workers through
        return None
    finally:
        app.close()
    return _left_on_workers(steps)


def _left_on_workers(steps: StepsOnWorkers) -> str | None:
    """What the run left on the workers, in words; None if nothing."""
    if steps.listed:
        where = ", ".join(sorted(set(steps.listed.values())))
        return f"{len(steps.listed)} of its steps still executing on {where}, asked to stop"
    if steps.silent:
        return (
            f"{len(steps.silent)} of its steps held by a worker that did not answer within "
            f"{_INSPECT_SECONDS:g} s, its lease live, asked to stop: judged again at the next check"
        )
    return None


def stop_orphaned_statements(instance: dg.DagsterInstance, run: dg.DagsterRun) -> int:
    """Interrupt the statements still running in the Spark sessions `run` opened on this
    process's Spark endpoint, and close the sessions (resources/spark_sessions.py); how many
    statements were running. Those of its steps that ended are left alone: closed by their
    step, they run nothing, and each cost a round trip (0.13 s; a whole-graph run opens ~60)."""
    remote = os.environ.get(SPARK_REMOTE_VARIABLE, "").strip()
    if not remote:
        return 0
    sessions = sessions_left_open(instance, run.run_id, warehouse_pin("spark", "", remote))
    return close_sessions(remote, sessions) if sessions else 0
