"""The Spark Connect sessions a run opened, so that a dead run's statements can be stopped.

Spark Connect runs a statement on when its client dies: kill -9 of a step's process (a
`materialize`, a Celery worker's) left its INSERT OVERWRITE running in the cluster (measured:
the job still active 3 s after its client was killed, running to its end) beside the next
run's write of the same table, once the dead run's `duckdb` slot was freed; the older data could
land last. Each session a step opens is announced in its run's log, and once the run is found
dead (orchestration/orphaned_steps.py) each is attached to by its id, interrupted and closed.
"""

from __future__ import annotations

import time

import dagster as dg
from dagster._core.events import EngineEventData
from dagster._core.execution.context.compute import current_execution_context

# Tries to close a session whose statements were just interrupted.
_RELEASE_TRIES = 10
# The engine event's metadata naming the session, and the endpoint it is on (`warehouse_pin`).
SESSION_KEY = "spark_session"
ENDPOINT_KEY = "spark_endpoint"


def announce_session(
    instance: dg.DagsterInstance, run: dg.DagsterRun, session_id: str, endpoint: str
) -> None:
    """Name the session in the run's log, under the step that opens it (`current_step_key`)."""
    instance.report_engine_event(
        f"Spark session {session_id} opened on {endpoint}",
        run,
        EngineEventData({SESSION_KEY: session_id, ENDPOINT_KEY: endpoint}),
        step_key=current_step_key(),
    )


def current_step_key() -> str | None:
    """The step this thread executes, if any. A resource is set up once per run process, not
    per step: without it a `group:raw` run's 33 session events stood apart from their steps in
    the run's log, as if the run itself had opened them."""
    context = current_execution_context.get()
    if context is None:
        return None
    return context.op_execution_context.get_step_execution_context().step.key


def sessions_of_run(instance: dg.DagsterInstance, run_id: str, endpoint: str) -> list[str]:
    """The ids of the sessions the run announced on `endpoint`, in the order opened."""
    return [session for session, _ in _announced(instance, run_id, endpoint)]


def sessions_left_open(instance: dg.DagsterInstance, run_id: str, endpoint: str) -> list[str]:
    """The sessions the run announced on `endpoint` but those of its steps that ended (success
    or failure), in the order opened. A step's sessions live within its execution
    (`Warehouse.spark`): once it ended, none runs a statement. One announced by no step (outside
    a step's context, or by a version before steps named theirs) is kept: nothing says it ended."""
    ends = instance.get_records_for_run(
        run_id,
        of_type={dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE},
        limit=None,
    ).records
    ended = {record.event_log_entry.step_key for record in ends}
    return [
        session
        for session, step in _announced(instance, run_id, endpoint)
        if step is None or step not in ended
    ]


def _announced(
    instance: dg.DagsterInstance, run_id: str, endpoint: str
) -> list[tuple[str, str | None]]:
    """The sessions the run announced on `endpoint`, each with the step that announced it."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=None
    ).records
    found = []
    for record in records:
        event = record.event_log_entry.dagster_event
        metadata = event.engine_event_data.metadata if event else {}
        where = metadata.get(ENDPOINT_KEY)
        if SESSION_KEY in metadata and where is not None and where.value == endpoint:
            found.append((str(metadata[SESSION_KEY].value), record.event_log_entry.step_key))
    return found


def close_sessions(remote: str, session_ids: list[str]) -> int:
    """Interrupt every statement of the sessions `session_ids` on the Spark Connect endpoint
    `remote`, then close them; how many statements were running. Closed, a session refuses the
    next statement of a step still alive (one whose worker could not be asked, its broker away)
    instead of running it beside the next run's. A session its step closed is refused at once
    (SESSION_CLOSED), one the endpoint lost (restarted) too. An endpoint that does not answer
    runs nothing either: one try each."""
    from pyspark.errors import PySparkException
    from pyspark.sql.connect.client.retries import DefaultPolicy
    from pyspark.sql.connect.session import SparkSession

    interrupted = 0
    for session_id in session_ids:
        client = SparkSession.builder.remote(with_session_id(remote, session_id)).create().client
        client.set_retry_policies([DefaultPolicy(max_retries=0)])
        try:
            interrupted += len(client.interrupt_all() or [])
            _release(client)
        except PySparkException:
            continue
        finally:
            client.close()
    return interrupted


def _release(client) -> None:
    """Close the client's session. Right after an interrupt the endpoint may refuse (its
    operation still ending: SPARK_CONNECT_ILLEGAL_STATE); it accepted 0.2 s later."""
    from pyspark.errors import PySparkException

    for attempt in range(_RELEASE_TRIES):
        try:
            client.release_session()
            return
        except PySparkException:
            if attempt == _RELEASE_TRIES - 1:
                raise
            time.sleep(0.2)


def with_session_id(remote: str, session_id: str) -> str:
    """The Spark Connect URL `remote` (`sc://host:port`, maybe `/;token=...`) naming the
    session `session_id`, which a client then attaches to instead of creating its own."""
    base, _, params = remote.partition("/;")
    return f"{base.rstrip('/')}/;{params + ';' if params else ''}session_id={session_id}"
