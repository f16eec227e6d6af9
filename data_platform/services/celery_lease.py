"""Leases on the steps a Celery worker holds: a lost worker's step goes to another in about a
minute, not an hour.

Redis has no acknowledgements: kombu keeps each message a worker took in an `unacked` hash, with
the time it was taken in the `unacked_index` sorted set, and any worker puts a message taken more
than `visibility_timeout` ago back on the queue. Kombu's timeout is an hour, because a message
still being worked on must not be handed out again; so a whole worker lost (its container
OOM-killed, its machine gone) left its step, and the run waiting on it with its `duckdb` slot,
for an hour: every warehouse step of the platform waited behind it.

The timeout is a lease instead: `lease_seconds` long, renewed while the worker lives. Every
sixth of it the worker's main process moves the time of each message it holds (reserved or
executing) to now, from its event loop: a worker whose loop is wedged stops renewing too. The
renewal only updates members still there (ZADD XX): a message acknowledged or put back meanwhile
is not brought back. A pool process dies with the main process (Celery's prefork pool sets
PR_SET_PDEATHSIG), so a step is never left running where its lease is no longer renewed.

The price: Redis unreachable for longer than the lease, a step still running may be handed out
again when it returns; it then waits for DuckDB's lock and replaces its partitions again (one
transaction per step), so the data are right but the step runs twice.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import bootsteps
from celery.worker import state

logger = logging.getLogger(__name__)


def renew(consumer: Any) -> None:
    """Move the taken-at time of every message this worker holds to now."""
    tags = [request.message.delivery_tag for request in list(state.reserved_requests)]
    if not tags:
        return
    channel = consumer.task_consumer.channel
    now = time.time()
    try:
        with channel.conn_or_acquire() as client:
            pipe = client.pipeline()
            for tag in tags:
                pipe.zadd(channel.unacked_index_key, {tag: now}, xx=True)
            pipe.execute()
    except Exception as error:  # the next renewal tries again; the lease has room for it
        logger.warning(f"step leases not renewed: {error}")


class LeaseRenewal(bootsteps.StartStopStep):
    """A consumer step renewing the leases from the worker's event loop while it consumes."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, consumer: Any, **kwargs: Any):
        super().__init__(consumer, **kwargs)
        # As often as workers look for lapsed leases (services/executor.py).
        self._every = consumer.app.conf.broker_transport_options["unacked_restore_interval"]
        self._timer = None

    def start(self, consumer: Any) -> None:
        self._timer = consumer.timer.call_repeatedly(self._every, renew, (consumer,))

    def stop(self, consumer: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    shutdown = stop
