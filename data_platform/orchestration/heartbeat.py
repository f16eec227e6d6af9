"""A run's heartbeat: how a run whose process is on another machine is known to be dead.

`check_worker` tells a dead run by its pid, which means something only on the run's host. A
run whose process is elsewhere (its code server in another container) was never checked:
Dagster's code server fails a run whose process dies, but when the whole machine or container
goes (a node lost, the container OOM-killed with its code server) nothing did, and the run
kept its `duckdb` slot for good: every later warehouse step waited behind it.

So the process that executes a run's steps beats: every `every` seconds it stores the time in
the instance's key-value store, which every host shares, under the run's own key, deleted when
the run's plan ends. A run of another host whose last beat is older than `STALE_BEATS` beats is
dead. The key was once its host and pid: a restarted container numbers its processes from the
same pids under the same name, and a later run of that pid deleted, when it ended, the beat a
dead run had left there, which was then read as "never beat" (alive) for good. A run's own key
is written and deleted by that run alone; a crashed run leaves its key (one small row).

The beat carries its interval, so the judge needs no setting of its own. It compares the beat's
clock with its own: hosts whose clocks differ by a minute or more need a longer interval.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import dagster as dg
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.storage.runs.schema import KeyValueStoreTable
from dagster._core.storage.runs.sql_run_storage import SqlRunStorage

# Silent for this many beats: dead. Nine (90 s at the default 10 s) outlast a long GC pause or
# a slow database; a run's steps wait longer than that for its slot to be freed anyway.
STALE_BEATS = 9
_KEY_PREFIX = "data_platform/heartbeat"

logger = logging.getLogger(__name__)


def heartbeat_key(run_id: str) -> str:
    return f"{_KEY_PREFIX}/{run_id}"


def beat(instance: dg.DagsterInstance, run_id: str, every: float) -> None:
    """Store a beat of `run_id` now, saying the next is due in `every` seconds."""
    value = json.dumps({"at": time.time(), "every": every})
    instance.run_storage.set_cursor_values({heartbeat_key(run_id): value})


def forget_beat(instance: dg.DagsterInstance, run_id: str) -> None:
    """Delete the run's beat. Dagster's key-value store has no delete, so its table is used:
    the same on SQLite and PostgreSQL."""
    storage = instance.run_storage
    if not isinstance(storage, SqlRunStorage):
        return
    with storage.connect() as conn:
        conn.execute(
            KeyValueStoreTable.delete().where(KeyValueStoreTable.c.key == heartbeat_key(run_id))
        )


def last_beat(instance: dg.DagsterInstance, run_id: str) -> tuple[float, float] | None:
    """(when, interval) of the run's last beat; None if it never beat (or its plan ended)."""
    key = heartbeat_key(run_id)
    raw = instance.run_storage.get_cursor_values({key}).get(key)
    if not raw:
        return None
    value = json.loads(raw)
    return value["at"], value["every"]


def silent_too_long(at: float, every: float, now: float) -> bool:
    return now - at > STALE_BEATS * every


class _Beating:
    """A daemon thread beating for one run until stopped, then its beat deleted. A beat that
    fails (the database busy) is logged and tried again at the next one, and a delete that fails
    is logged: neither may fail the run."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str, every: float):
        self._instance, self._run_id = instance, run_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(every,), daemon=True)
        self._thread.start()

    def _loop(self, every: float) -> None:
        while True:
            try:
                beat(self._instance, self._run_id, every)
            except Exception as error:  # the run goes on; the next beat tries again
                logger.warning(f"run {self._run_id}: heartbeat not stored: {error}")
            if self._stop.wait(every):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            return  # a beat still being stored would outlive the delete
        try:
            forget_beat(self._instance, self._run_id)
        except Exception as error:
            logger.warning(f"run {self._run_id}: heartbeat not deleted: {error}")


def install(every: float) -> None:
    """Beat every `every` seconds in this process while it executes a run's plan: the span of
    Dagster's `InstanceConcurrencyContext`, which every executor (in-process, multiprocess,
    Celery) enters around its plan in the run's process. Idempotent."""
    if getattr(InstanceConcurrencyContext, "_data_platform_heartbeat", None) is not None:
        InstanceConcurrencyContext._data_platform_heartbeat = every
        return
    enter, leave = InstanceConcurrencyContext.__enter__, InstanceConcurrencyContext.__exit__

    def beating_enter(self: InstanceConcurrencyContext) -> InstanceConcurrencyContext:
        from data_platform.orchestration.run_health import (
            WORKER_HOST_TAG,
            announce_run_process,
            this_host,
        )

        # The launcher tagged the host it reaches the code server by ("code-server"), which
        # need not be this process's host: the judge reads the tag, to check a pid here or
        # wait for beats.
        self._instance.add_run_tags(self._run_id, {WORKER_HOST_TAG: this_host()})
        # The judge needs the run's pid, and some executors announce none.
        announce_run_process(self._instance, self._run_id)
        entered = enter(self)
        # Beating once entered: an enter that raised never reaches __exit__, so a thread
        # started before it beat for the process's life and its beat was never deleted.
        every_now = InstanceConcurrencyContext._data_platform_heartbeat
        self._data_platform_beating = _Beating(self._instance, self._run_id, every_now)
        return entered

    def beating_exit(self: InstanceConcurrencyContext, *exc: object) -> None:
        try:
            return leave(self, *exc)
        finally:
            beating = getattr(self, "_data_platform_beating", None)
            if beating is not None:
                beating.stop()

    InstanceConcurrencyContext._data_platform_heartbeat = every
    InstanceConcurrencyContext.__enter__ = beating_enter
    InstanceConcurrencyContext.__exit__ = beating_exit
