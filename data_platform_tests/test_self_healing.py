"""A run worker killed mid-ingestion under a real daemon: the platform heals with nobody acting.

The daemon (`dagster-daemon run`, as `dagster dev` runs it) uses the repo's own dagster.yaml:
its landing sensor starts a `raw/events` run, the test kills that run's process with SIGKILL
while the step runs, and then only watches: the run is failed, one alert goes out, the pool
slot is freed, the run is retried for the same day, and the day ends up loaded exactly once.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import dagster as dg
import duckdb
import pytest
from dagster._core.storage.tags import PARENT_RUN_ID_TAG

from data_platform_tests.helpers import count_records
from data_platform_tests.test_alerts import Webhook

REPO = Path(__file__).resolve().parents[1]
DAY = "2026-01-05"
# Big enough that ingesting the day takes about a second: the kill lands inside the step.
EVENTS_PER_FILE = 150_000
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 150.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def write_day(landing: Path) -> list[Path]:
    folder = landing / "events" / f"dt={DAY}"
    folder.mkdir(parents=True)
    paths = []
    for part in range(2):
        lines = (
            f'{{"event_id":"e{part}-{i}","user_id":{i % 500},"event_type":"page_view",'
            f'"occurred_at":"{DAY}T{i % 24:02d}:00:00Z","session_id":"s{i % 900}"}}\n'
            for i in range(EVENTS_PER_FILE)
        )
        path = folder / f"part-{part}.jsonl"
        path.write_text("".join(lines) + "\n   \n")  # a blank line: not a record
        paths.append(path)
    return paths


def started_step(instance: dg.DagsterInstance, step_key: str) -> tuple[dg.DagsterRun, int] | None:
    """The run whose `step_key` has started, and its run process's pid (from its engine event)."""
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        started = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.STEP_START
        ).records
        if any(r.event_log_entry.step_key == step_key for r in started):
            for record in instance.get_records_for_run(
                run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT
            ).records:
                pid = record.event_log_entry.dagster_event.engine_event_data.metadata.get("pid")
                if pid is not None:
                    return run, int(pid.value)
    return None


@pytest.fixture
def platform(tmp_path):
    """A home with the repo's dagster.yaml, a day of events, a webhook and a daemon on them."""
    home = tmp_path / "home"
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    files = write_day(home / "landing")
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n"
        "      module_name: data_platform_tests.raw_files_location\n"
        f"      working_directory: {REPO}\n"
    )
    hook = Webhook()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DATA_PLATFORM_")},
        "DATA_PLATFORM_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "DATA_PLATFORM_START_DATE": "2026-01-01",
        "DATA_PLATFORM_ALERT_WEBHOOK": hook.url,
    }
    # Created before the daemon: two processes building a new SQLite instance's tables at once
    # leave it with two alembic heads.
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    daemon = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", str(workspace)],
        cwd=REPO,
        env=env,
        stdout=(tmp_path / "daemon.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield instance, home, files, hook
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
        instance.dispose()
        hook.server.shutdown()


def test_a_run_killed_mid_ingestion_is_failed_freed_retried_and_loads_its_day_once(platform):
    instance, home, files, hook = platform
    killed, pid = wait_for(
        "a raw/events step to start", lambda: started_step(instance, "raw__events")
    )
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)

    def retried_successfully() -> dg.DagsterRun | None:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={PARENT_RUN_ID_TAG: killed.run_id}))
        return next((r for r in runs if r.status == dg.DagsterRunStatus.SUCCESS), None)

    retry = wait_for("the killed run's retry to succeed", retried_successfully)
    wait_for(
        "no run left queued or in progress",
        lambda: (
            not instance.get_runs(
                filters=dg.RunsFilter(
                    statuses=[
                        dg.DagsterRunStatus.QUEUED,
                        dg.DagsterRunStatus.STARTING,
                        dg.DagsterRunStatus.STARTED,
                    ]
                )
            )
        ),
    )
    wait_for(
        "the duckdb pool to have no slot claimed",
        lambda: not instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots,
        timeout=30,
    )

    assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
    # Killed inside the step: it never reported the materialization.
    assert not instance.get_records_for_run(
        killed.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    assert retry.tags.get("dagster/partition") == killed.tags.get("dagster/partition") == DAY
    alerts = wait_for("the failure alert", lambda: hook.received, timeout=60)
    assert [killed.run_id in str(a) for a in alerts] == [True]

    records = sum(count_records(f) for f in files)
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        loaded, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM raw.events WHERE dt = ?", [DAY]
        ).fetchone()
        dead = conn.execute(
            "SELECT count(*) FROM raw.dead_letter WHERE source = 'events' AND dt = ?", [DAY]
        ).fetchone()[0]
    assert records == 2 * EVENTS_PER_FILE
    assert loaded == distinct == records and dead == 0
