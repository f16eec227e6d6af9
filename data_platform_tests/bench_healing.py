"""`make bench`: how long from a run worker killed mid-ingestion to its day loaded again.

The same world as the self-healing test (a real daemon, the repo's dagster.yaml), timed: when
the run is marked failed, when its slot is free, when the retry starts, when the day is in.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import dagster as dg

from data_platform_tests.healing_world import (
    daemon_world,
    kill_when_ingesting,
    successful_retry,
    wait_for,
)


def run() -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-healing-") as tmp,
        daemon_world(Path(tmp)) as world,
    ):
        instance = world.instance
        killed, killed_at = kill_when_ingesting(instance)
        since = {}
        wait_for(
            "the run to be marked failed",
            lambda: instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE,
        )
        since["marked_failed_s"] = time.time() - killed_at
        wait_for(
            "its slot to be freed",
            lambda: not instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots,
        )
        since["slot_freed_s"] = time.time() - killed_at
        retry = wait_for("the retry", lambda: successful_retry(instance, killed.run_id))
        record = instance.get_run_record_by_id(retry.run_id)
        since["retry_started_s"] = record.start_time - killed_at
        since["day_loaded_again_s"] = record.end_time - killed_at
        return since
