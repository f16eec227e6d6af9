"""Waiting for a pool slot: asleep, interruptible, and saying behind which run.

Three defects of Dagster 1.13's wait for a `duckdb` slot, found when a killed run leaked its
slot (see README, "Runs that heal themselves"):
- `InstanceConcurrencyContext.interval_to_next_pending_claim_check` returns `min(0, ...)`,
  so the executor never sleeps between claim checks: a waiting run spins a core at 100 %
  (dagster PR #20367 noticed it and was closed unmerged);
- the in-process executor's wait loop never looks at a captured SIGINT/SIGTERM, so a waiting
  run can only be stopped with SIGKILL;
- "Step blocked by limit for pool duckdb" does not say who holds the slot.
`install()` fixes the three in the process that executes steps; it is idempotent. On
PostgreSQL it also keeps the run's connection to the event log open for its plan (see
`_keep_connections`). It also caps the back-off between claim checks at 2 s (Dagster: 1 s
growing to 15 s): a check is a few indexed queries, while every warehouse step queues in the
one-slot `duckdb` pool, so each slot handed over late cost up to 15 s; a graph of ~45
warehouse steps on Celery workers lost minutes in those gaps. And when a run frees a slot, its
own waiting steps ask again at once instead of at the end of their back-off
(`_asking_again_once_freed`).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.plan import instance_concurrency_context
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._utils.interrupts import check_captured_interrupt

# How often a sleeping wait looks for Ctrl-C / SIGTERM.
_INTERRUPT_CHECK_SECONDS = 0.25
MAX_CLAIM_CHECK_SECONDS = 2


def slot_holders(instance: dg.DagsterInstance, pool: str) -> str:
    """Who holds the pool's slots, e.g. "its 1 slot is held by run 1a2b3c4d (step raw__events)"."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    held = [f"run {s.run_id[:8]} (step {s.step_key})" for s in info.claimed_slots]
    slots = f"its {info.slot_count} slot{'s' if info.slot_count != 1 else ''}"
    return (
        f"{slots} {'are' if info.slot_count != 1 else 'is'} held by {', '.join(held) or 'nobody'}"
    )


def waiting_steps(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """One line per pool the run has a step waiting for, naming who holds its slots."""
    lines = []
    for pool in instance.event_log_storage.get_concurrency_keys():
        info = instance.event_log_storage.get_concurrency_info(pool)
        steps = [
            p.step_key
            for p in info.pending_steps
            if p.run_id == run_id and not p.assigned_timestamp
        ]
        if steps:
            lines.append(
                f"{', '.join(steps)} waiting for pool {pool}: {slot_holders(instance, pool)}"
            )
    return lines


def report_waits(
    instance: dg.DagsterInstance, run_tag: tuple[str, str], stop: threading.Event, every: float
) -> None:
    """Until `stop`, every `every` seconds print (stderr) what the tagged run's steps wait for.

    A report that fails (the database busy or restarting) is one line, and the next is tried:
    an error once ended the thread with a traceback, and the reports with it."""
    began = time.monotonic()
    while not stop.wait(every):
        try:
            lines = _waits_of_tagged_run(instance, run_tag)
        except Exception as error:  # the run goes on, so do its reports
            lines = [f"could not read what the run waits for: {_one_line(error)}"]
        for line in lines:
            print(f"  [{time.monotonic() - began:.0f}s] {line}", file=sys.stderr, flush=True)


def _waits_of_tagged_run(instance: dg.DagsterInstance, run_tag: tuple[str, str]) -> list[str]:
    runs = instance.get_runs(filters=dg.RunsFilter(tags=dict([run_tag])), limit=1)
    return waiting_steps(instance, runs[0].run_id) if runs else []


def _one_line(error: Exception) -> str:
    first = str(error).strip().splitlines()
    return f"{type(error).__name__}: {first[0]}" if first else type(error).__name__


def _interval_to_next_pending_claim_check(self: InstanceConcurrencyContext) -> float:
    if not self._pending_claims:
        return 0.0
    now = time.time()
    return max(0.0, min(ready_at - now for ready_at in self._pending_timeouts.values()))


def _asking_again_once_freed(
    free_step: Callable[[InstanceConcurrencyContext, str], None],
) -> Callable[[InstanceConcurrencyContext, str], None]:
    """`free_step`, after which the run's waiting steps ask for a slot at the next check
    instead of at the end of their back-off. The slot the run frees goes to the first step in
    the pool's queue, often the run's own next step: on Celery workers, where each warehouse step
    waits in the one-slot `duckdb` pool behind the one before, the back-off left ~1.5 s between
    steps that took 0.2 s (a 2-day graph: 110 s, ~70 of them in those gaps). A check of a step
    still not first in line is one indexed query."""

    def freeing_then_asking(self: InstanceConcurrencyContext, step_key: str) -> None:
        held = step_key in self._claims
        free_step(self, step_key)
        if held:
            for waiting in self._pending_timeouts:
                self._pending_timeouts[waiting] = 0.0

    return freeing_then_asking


def _sleep_til_ready(self: ActiveExecution) -> None:
    deadline = time.monotonic() + self.sleep_interval()
    while True:
        if check_captured_interrupt():
            raise DagsterExecutionInterruptedError()
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, _INTERRUPT_CHECK_SECONDS))


def _step_concurrency_blocked(step_context, concurrency_key: str, initial: bool = True):
    state = "blocked" if initial else "still blocked"
    holders = slot_holders(step_context.instance, concurrency_key)
    return DagsterEvent.from_step(
        event_type=dg.DagsterEventType.ENGINE_EVENT,
        step_context=step_context,
        message=f"Step {state} by limit for pool {concurrency_key}: {holders}",
        event_specific_data=EngineEventData(
            metadata={
                "pool": dg.MetadataValue.pool(concurrency_key),
                "held_by": dg.MetadataValue.text(holders),
            }
        ),
    )


def _keep_connections(instance: dg.DagsterInstance) -> None:
    """Dagster's PostgreSQL event log opens a connection per query (a NullPool): a claim check
    is four or five queries, and a run re-checks each pending step every 1-2 s. Profiled, the
    run process of a Celery backfill of the raw layer spent 32 s of its 190 s connecting. For
    the span of its plan it keeps one connection (plus a few while threads overlap), as
    Dagster's webserver does; no statement timeout, as before.

    Each connection is pinged as it is taken from the pool: a kept connection outlives a
    PostgreSQL restart (a failover, an upgrade), and the next claim check or event on it failed
    the step, where a new connection per query had waited for the server to come back."""
    storage = instance.event_log_storage
    if hasattr(storage, "postgres_url") and not getattr(storage, "_data_platform_pooled", False):
        from dagster_postgres.utils import create_pg_engine

        # Dagster's own webserver engine (`optimize_for_webserver`) takes no pre-ping.
        engine = create_pg_engine(
            storage.postgres_url,
            storage._token_provider,
            isolation_level="AUTOCOMMIT",
            pool_size=1,
            max_overflow=4,
            pool_recycle=3600,
            pool_pre_ping=True,
        )
        storage._engine = engine
        storage._data_platform_pooled = True
        # The storage's dispose() leaves its engine alone (a NullPool holds nothing): the kept
        # connections stayed open on the server after the instance was closed.
        dispose = storage.dispose

        def dispose_with_engine() -> None:
            dispose()
            engine.dispose()

        storage.dispose = dispose_with_engine


def install() -> None:
    if not getattr(InstanceConcurrencyContext, "_data_platform_pool_wait", False):
        enter = InstanceConcurrencyContext.__enter__

        def pooled_enter(self: InstanceConcurrencyContext) -> InstanceConcurrencyContext:
            _keep_connections(self._instance)
            return enter(self)

        InstanceConcurrencyContext.__enter__ = pooled_enter
        InstanceConcurrencyContext.free_step = _asking_again_once_freed(
            InstanceConcurrencyContext.free_step
        )
        InstanceConcurrencyContext._data_platform_pool_wait = True
    instance_concurrency_context.MAX_CONCURRENCY_CLAIM_BLOCKED_INTERVAL = MAX_CLAIM_CHECK_SECONDS
    InstanceConcurrencyContext.interval_to_next_pending_claim_check = (
        _interval_to_next_pending_claim_check
    )
    ActiveExecution.sleep_til_ready = _sleep_til_ready
    DagsterEvent.step_concurrency_blocked = staticmethod(_step_concurrency_blocked)
