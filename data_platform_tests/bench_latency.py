"""Latency of the running platform: a file lands -> its rows are in marts.fct_events.

`run()` starts `dagster dev` (daemon + webserver on 127.0.0.1) on a temporary DAGSTER_HOME and
DATA_PLATFORM_HOME, waits until the platform has filled itself from a small simulation, then
drops one event file for today and measures how long its rows take to reach marts.fct_events
through the sensors and automation alone. Not part of the test suite (it takes minutes).

The warehouse is only ever opened read-only, briefly, after Dagster has recorded the mart's
materialization: a reader holding DuckDB's file lock would make a writing run wait.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from data_platform_tests.helpers import free_port, stop_process_group

REPO = Path(__file__).resolve().parents[1]
FILL_TIMEOUT = 900.0
LATENCY_TIMEOUT = 600.0
EVENTS_IN_FILE = 200


def _latest_fct_events(instance):
    """The newest materialization of marts/fct_events (None before the first)."""
    from dagster import AssetKey

    result = instance.fetch_materializations(AssetKey(["marts", "fct_events"]), limit=1)
    return result.records[0] if result.records else None


def run_timeline(instance, since: float) -> list[str]:
    """Each run created after `since`: what it built, seconds from `since` to queued, started, ended.

    Where a latency goes: sensor and automation ticks are the gaps before "queued", the run
    queue and process start the gap to "started", the step itself the rest."""
    import dagster as dg

    records = instance.get_run_records(
        filters=dg.RunsFilter(created_after=datetime.fromtimestamp(since, UTC)),
        ascending=True,
    )

    def offset(timestamp: float | None) -> str:
        return "-" if timestamp is None else f"{timestamp - since:.1f}"

    lines = []
    for record in records:
        run = record.dagster_run
        keys = sorted(key.to_user_string() for key in run.asset_selection or [])
        built = ", ".join(keys[:3]) + (f" +{len(keys) - 3}" if len(keys) > 3 else "")
        lines.append(
            f"{built or run.job_name} [{run.tags.get('dagster/partition', '')}] "
            f"queued {offset(record.create_timestamp.timestamp())} "
            f"started {offset(record.start_time)} ended {offset(record.end_time)} "
            f"{run.status.value}"
        )
    return lines


def _serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
            return True
    except OSError:
        return False


def _count_rows(warehouse: Path, sql: str, deadline: float) -> int:
    """A short-lived read-only query, retried while a run holds the writer lock."""
    while True:
        try:
            with duckdb.connect(str(warehouse), read_only=True) as conn:
                return conn.execute(sql).fetchone()[0]
        except (duckdb.IOException, duckdb.CatalogException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _wait(condition, timeout: float, what: str, process: subprocess.Popen) -> float:
    began = time.monotonic()
    while not condition():
        if process.poll() is not None:
            raise RuntimeError(f"dagster dev exited while waiting for {what}")
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(1.0)
    return time.monotonic() - began


def _event_lines(today: str, tag: str) -> list[str]:
    return [
        json.dumps(
            {
                "event_id": f"{tag}-{i}",
                "user_id": 1 + i % 50,
                "event_type": "page_view",
                "occurred_at": f"{today}T00:00:00Z",
                "session_id": f"{tag}-s",
            }
        )
        for i in range(EVENTS_IN_FILE)
    ]


def run() -> dict:
    """Seconds from a file landing to its rows in marts.fct_events, via sensors and automation."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    from data_platform.resources.landing import LandingZone
    from data_platform.simulator import SimulationConfig, simulate

    tmp = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    home, dagster_home = tmp / "home", tmp / "home" / "dagster_home"
    dagster_home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {
        **os.environ,
        "DATA_PLATFORM_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for name in ("DATA_PLATFORM_WAREHOUSE", "DATA_PLATFORM_LANDING", "DATA_PLATFORM_SOURCE_DB_URL"):
        env.pop(name, None)
    today = datetime.now(UTC).date()
    landing = LandingZone(url=str(home / "landing"))
    config = SimulationConfig(
        seed=7, days=2, end_date=today - timedelta(days=1), users=200, events_per_day=2000
    )
    simulate(config, landing, f"sqlite:///{home / 'source.db'}")

    dagster = Path(sys.executable).with_name("dagster")
    port = free_port()
    command = [
        str(dagster),
        "dev",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        "workspace.yaml",
    ]
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait(lambda: _serving(port), FILL_TIMEOUT, "the webserver", process)
        # Opened once `dagster dev` has created its storage: two processes must not migrate it.
        instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home)))
        fill = _wait(
            lambda: _latest_fct_events(instance) is not None,
            FILL_TIMEOUT,
            "the first fill of marts.fct_events",
            process,
        )
        # Let the first wave (aggregates, analytics) finish before timing a new file.
        time.sleep(30)
        tag = f"bench-{uuid.uuid4().hex[:8]}"
        local = tmp / f"{tag}.jsonl"
        local.write_text("".join(f"{line}\n" for line in _event_lines(today.isoformat(), tag)))
        landed = time.time()
        landing.upload_file(local, f"events/dt={today.isoformat()}/{tag}.jsonl")

        def materialized_after_landing() -> bool:
            record = _latest_fct_events(instance)
            return record is not None and record.timestamp > landed

        materialized = _wait(
            materialized_after_landing,
            LATENCY_TIMEOUT,
            "a materialization of marts.fct_events",
            process,
        )
        sql = f"SELECT count(*) FROM marts.fct_events WHERE event_id LIKE '{tag}-%'"
        deadline = time.monotonic() + 120
        rows = _count_rows(home / "warehouse.duckdb", sql, deadline)
        while rows < EVENTS_IN_FILE and time.monotonic() < deadline:
            time.sleep(2)
            materialized = time.time() - landed
            rows = _count_rows(home / "warehouse.duckdb", sql, deadline)
        return {
            "initial_fill_s": round(fill, 1),
            "file_to_fct_events_s": round(materialized, 1),
            "rows_expected": EVENTS_IN_FILE,
            "rows_found": rows,
            "runs": run_timeline(instance, landed),
        }
    finally:
        stop_process_group(process, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    # A terminated benchmark still stops its `dagster dev` (the finally block above).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    print(json.dumps(run(), indent=2))
