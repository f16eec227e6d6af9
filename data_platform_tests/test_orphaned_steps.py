"""When a dead run's steps cannot be looked for on Celery workers, the run is not held for it.

Killing the steps a dead run left on live workers is proven against a real stack in
test_distributed.py; here, the runs it must leave alone."""

from __future__ import annotations

import os
import time
from unittest import mock

import dagster as dg

from data_platform.orchestration.orphaned_steps import CELERY_RUN_TAG, stop_orphaned_steps
from data_platform.settings import CELERY_BROKER_VARIABLE
from data_platform_tests.helpers import free_port


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
    assert time.monotonic() - started < 30
