"""A run worker killed mid-ingestion under a real daemon: the platform heals with nobody acting.

The daemon (`dagster-daemon run`, as `dagster dev` runs it) uses the repo's own dagster.yaml:
its landing sensor starts a `raw/events` run, the test kills that run's process with SIGKILL
while the step runs, and then only watches: the run is failed, one alert goes out, the pool
slot is freed, the run is retried for the same day, and the day ends up loaded exactly once.
"""

from __future__ import annotations

import time

import dagster as dg
import duckdb
from dagster._core.storage.tags import PARENT_RUN_ID_TAG, RETRY_NUMBER_TAG, WILL_RETRY_TAG

from data_platform.orchestration.run_health import worker_pid
from data_platform_tests.healing_world import (
    DAY,
    EVENTS_PER_FILE,
    IN_PROGRESS,
    daemon_world,
    kill_when_ingesting,
    successful_retry,
    wait_for,
)
from data_platform_tests.helpers import count_records


def test_a_run_killed_mid_ingestion_is_failed_freed_retried_and_loads_its_day_once(tmp_path):
    with daemon_world(tmp_path) as world:
        instance = world.instance
        killed, _ = kill_when_ingesting(instance)
        retry = wait_for(
            "the killed run's retry to succeed", lambda: successful_retry(instance, killed.run_id)
        )
        wait_for(
            "no run left queued or in progress",
            lambda: not instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS)),
        )
        wait_for(
            "the duckdb pool to have no slot claimed",
            lambda: not instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots,
            timeout=30,
        )
        alerts = wait_for("the failure alert", lambda: world.webhook.received, timeout=60)

        assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
        # Killed inside the step: it never reported the materialization.
        assert not instance.get_records_for_run(
            killed.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
        assert retry.tags.get("dagster/partition") == killed.tags.get("dagster/partition") == DAY
        assert [killed.run_id in str(alert) for alert in alerts] == [True]

    records = sum(count_records(f) for f in world.files)
    with duckdb.connect(str(world.home / "warehouse.duckdb"), read_only=True) as conn:
        loaded, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM raw.events WHERE dt = ?", [DAY]
        ).fetchone()
        dead = conn.execute(
            "SELECT count(*) FROM raw.dead_letter WHERE source = 'events' AND dt = ?", [DAY]
        ).fetchone()[0]
    assert records == 2 * EVENTS_PER_FILE
    assert loaded == distinct == records and dead == 0


def test_a_run_whose_code_server_died_first_is_failed_by_the_monitor_freed_and_retried(
    tmp_path,
):
    """The code server killed before its run worker (as when a machine goes): nobody is left to
    see the worker die but the monitoring daemon, which asks HealthCheckedRunLauncher. In the
    test above the code server fails the run, and the launcher's judgement is never used.

    Dagster's retry of the failed run asked the dead code server for its job, gave up for good
    ("Failed to retry run") and never looked again once its workspace had a new one: the retry
    now reloads the code location first (run_retries.py), and the run is retried once."""
    with daemon_world(tmp_path) as world:
        instance = world.instance
        killed, _ = kill_when_ingesting(instance, code_server_first=True)
        failed = wait_for(
            "the killed run to be failed",
            lambda: (
                instance.get_records_for_run(
                    killed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
                ).records
            ),
        )
        retry = wait_for(
            "the killed run's retry to succeed", lambda: successful_retry(instance, killed.run_id)
        )
        wait_for(
            "the duckdb pool to have no slot claimed",
            lambda: not instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots,
            timeout=30,
        )
        alerts = wait_for("the failure alert", lambda: world.webhook.received, timeout=60)

        pid, _ = worker_pid(instance, killed.run_id)
        # "is gone'" or, when its new parent has not reaped it yet, "is gone (exited, never reaped)'"
        messages = [r.event_log_entry.message for r in failed]
        assert [f"'run process {pid} is gone" in m for m in messages] == [True], messages
        assert [killed.run_id in str(alert) for alert in alerts] == [True]
        retries = instance.get_runs(filters=dg.RunsFilter(tags={PARENT_RUN_ID_TAG: killed.run_id}))
        assert [r.run_id for r in retries] == [retry.run_id]
        assert retry.tags.get(RETRY_NUMBER_TAG) == "1"
        assert retry.tags.get("dagster/partition") == killed.tags.get("dagster/partition") == DAY


def test_a_run_killed_while_being_canceled_is_not_retried(tmp_path):
    """Terminate asked, then the step's process killed (stuck past the request, or OOM): the code
    server failed the run with `dagster/will_retry=true` and the daemon retried it, starting
    again the work someone had stopped. Now its tag says no retry, and none comes."""
    with daemon_world(tmp_path) as world:
        instance = world.instance
        killed, _ = kill_when_ingesting(instance, canceling=True)
        wait_for(
            "the retry daemon to tag the run not to be retried",
            lambda: instance.get_run_by_id(killed.run_id).tags.get(WILL_RETRY_TAG) == "false",
        )
        # The retry would have been created within seconds of the tag (3 s, measured before).
        time.sleep(10)
        retries = instance.get_runs(filters=dg.RunsFilter(tags={PARENT_RUN_ID_TAG: killed.run_id}))
        assert retries == []
        assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
        wait_for(
            "the duckdb pool to have no slot claimed",
            lambda: not instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots,
            timeout=30,
        )
