"""Latency of the stream under `make run`: events produced -> rows in raw.events, marts.fct_events.

The same world as `bench_latency` (a small simulation, `dagster dev` filling the warehouse by
itself), plus the local broker and `data-platform consume` beside it, as `make run` starts
them. Once the first fill is done, 200 events for today are produced to the topic and the clock
runs until their rows are in raw.events, then in marts.fct_events: sink batch (<= 5 s), landing
sensor (every 5 s), the run, then automation for the mart (the staging view's run, then the
facts').
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
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Producer

from data_platform.services.base import start
from data_platform.services.config import load_services_config
from data_platform.services.kafka_broker import KafkaBroker
from data_platform.stream.topics import ensure_topics
from data_platform_tests import bench_latency as world
from data_platform_tests.helpers import environ_without_settings, free_port

EVENTS = 200


def _landed_after(instance, key: list[str], since: float, warehouse: Path, tag: str) -> bool:
    """Whether a materialization of `key` recorded after `since` holds all the tagged rows.

    The warehouse is opened (read-only, briefly) only once Dagster recorded a materialization:
    a reader polling it would hold DuckDB's lock against the runs being timed."""
    import dagster as dg

    records = instance.fetch_materializations(dg.AssetKey(key), limit=1).records
    if not records or records[0].timestamp < since:
        return False
    sql = f"SELECT count(*) FROM {'.'.join(key)} WHERE event_id LIKE '{tag}-%'"
    return world._count_rows(warehouse, sql, time.monotonic() + 60) == EVENTS


def _idle(instance) -> bool:
    """No run queued or in progress, twice 5 s apart (automation requests the next wave)."""
    import dagster as dg

    busy = [
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
    ]
    for _ in range(2):
        if instance.get_runs_count(filters=dg.RunsFilter(statuses=busy)):
            return False
        time.sleep(5)
    return True


def _started(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            command,
            cwd=world.REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def run() -> dict:
    """Seconds from producing to rows in raw.events and marts.fct_events, as `make run` runs."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-stream-latency-"))
    home = tmp / "home"
    (home / "dagster_home").mkdir(parents=True)
    shutil.copy(world.REPO / "dagster.yaml", home / "dagster_home" / "dagster.yaml")
    port = str(free_port())
    broker = KafkaBroker(
        load_services_config({"DATA_PLATFORM_HOME": str(home), "DATA_PLATFORM_KAFKA_PORT": port})
    )
    start(broker)
    try:
        return _measure(broker, home, tmp)
    finally:
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _measure(broker: KafkaBroker, home: Path, tmp: Path) -> dict:
    from data_platform.resources.landing import LandingZone
    from data_platform.simulator import SimulationConfig, simulate

    env = {
        **environ_without_settings(),
        "DATA_PLATFORM_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster_home"),
        "DATA_PLATFORM_KAFKA_BOOTSTRAP": broker.bootstrap,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    today = datetime.now(UTC).date()
    config = SimulationConfig(
        seed=7, days=2, end_date=today - timedelta(days=1), users=200, events_per_day=2000
    )
    simulate(config, LandingZone(url=str(home / "landing")), f"sqlite:///{home / 'source.db'}")
    ensure_topics(broker.bootstrap, "events")
    bin_dir = Path(sys.executable).parent
    ui_port = free_port()
    dev = _started(
        [
            str(bin_dir / "dagster"),
            "dev",
            "-h",
            "127.0.0.1",
            "-p",
            str(ui_port),
            "-w",
            "workspace.yaml",
        ],
        env,
        tmp / "dev.log",
    )
    sink = _started([str(bin_dir / "data-platform"), "consume"], env, tmp / "consume.log")
    try:
        import dagster as dg
        from dagster._core.instance.ref import InstanceRef

        world._wait(lambda: world._serving(ui_port), world.FILL_TIMEOUT, "the webserver", dev)
        instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home / "dagster_home")))
        fill = world._wait(
            lambda: world._latest_fct_events(instance) is not None,
            world.FILL_TIMEOUT,
            "the first fill",
            dev,
        )
        # Time a quiet platform: the first fill's automation wave holds the warehouse pool for
        # minutes on a loaded machine, and a run queued behind it measures the queue.
        world._wait(lambda: _idle(instance), world.FILL_TIMEOUT, "the first wave to finish", dev)
        tag = f"kafka-{uuid.uuid4().hex[:8]}"
        lines = [
            json.dumps(
                {
                    "event_id": f"{tag}-{i}",
                    "user_id": 1 + i % 50,
                    "event_type": "page_view",
                    "occurred_at": f"{today}T00:00:00Z",
                }
            ).encode()
            for i in range(EVENTS)
        ]
        began, produced_at = time.monotonic(), time.time()
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        for line in lines:
            producer.produce("events", line)
        producer.flush(30)
        warehouse = home / "warehouse.duckdb"
        world._wait(
            lambda: _landed_after(instance, ["raw", "events"], produced_at, warehouse, tag),
            world.LATENCY_TIMEOUT,
            "the rows in raw.events",
            dev,
        )
        to_raw = time.monotonic() - began
        world._wait(
            lambda: _landed_after(instance, ["marts", "fct_events"], produced_at, warehouse, tag),
            world.LATENCY_TIMEOUT,
            "the rows in marts.fct_events",
            dev,
        )
        return {
            "initial_fill_s": round(fill, 1),
            "produce_to_raw_events_s": round(to_raw, 1),
            "produce_to_fct_events_s": round(time.monotonic() - began, 1),
            "runs": world.run_timeline(instance, produced_at),
        }
    finally:
        _stop(sink)
        _stop(dev)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    print(json.dumps(run(), indent=2))
