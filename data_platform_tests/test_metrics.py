"""`data-platform metrics`: the exporter's numbers against a real instance and warehouse built
here, a real Prometheus scraping the command, and the shipped rules checked by promtool."""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import duckdb
import pytest
import sqlalchemy as sa
import yaml
from dagster._core.remote_origin import RemoteJobOrigin
from dagster._core.scheduler.instigation import InstigatorType, TickData, TickStatus
from dagster._core.storage.runs.schema import RunsTable
from prometheus_client import generate_latest, make_wsgi_app, start_http_server
from prometheus_client.core import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from data_platform.automation.freshness import RAW_EVENTS, arrival_policy
from data_platform.ingestion.tables import DEAD_LETTER, EVENTS, PAYMENTS
from data_platform.operations import warehouse_metrics
from data_platform.operations.backup_schedule import KEEP_VARIABLE, keep_count
from data_platform.operations.check_metrics import CheckExecutionCounts
from data_platform.operations.durations import (
    STATE_KEY,
    RunDurations,
    forget_counted_durations,
)
from data_platform.operations.metrics import PlatformCollector, registry_of
from data_platform.operations.state_metrics import last_tick_times
from data_platform.operations.warehouse_metrics import (
    BackgroundRead,
    DayCountsCache,
    DuckDBDayCounts,
    FileStamp,
    SparkDayCounts,
    WarehouseUnreadable,
)
from data_platform.resources.warehouse import Warehouse
from data_platform.services.config import load_services_config
from data_platform.services.instance import CONNECT_TIMEOUT_SECONDS, write_instance_yaml
from data_platform.services.process import read_pid, wait_until
from data_platform.settings import (
    METRICS_DAYS,
    METRICS_NEW_SERIES_HOLD,
    SettingsError,
    load_settings,
)
from data_platform_tests import instance_history as history
from data_platform_tests.helpers import (
    distributed_home,
    environ_without_settings,
    free_port,
    while_frozen,
    write_postgres_instance,
)

REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("data-platform"))
Run = dg.DagsterRunStatus
# (source, dt) -> rows loaded, rows dead-lettered: what the warehouse below holds.
DAYS = {("events", "2026-01-05"): (7, 2), ("events", "2026-01-06"): (3, 0)}
DAYS |= {("payments", "2026-01-05"): (4, 1)}
# Holds DuckDB's write lock until stdin closes.
WRITER = "import sys, duckdb; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); sys.stdin.read()"


def build_warehouse(path: Path) -> None:
    tables = {"events": EVENTS, "payments": PAYMENTS}
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA raw")
        for table in (*tables.values(), DEAD_LETTER):
            conn.execute(table.ddl())
        for (source, dt), (loaded, dead) in DAYS.items():
            conn.execute(f"INSERT INTO raw.{source} (dt) SELECT DATE '{dt}' FROM range({loaded})")
            conn.execute(
                f"INSERT INTO raw.dead_letter (source, dt) SELECT '{source}', DATE '{dt}' "
                f"FROM range({dead})"
            )
        # An app row's dead letter: no rows loaded that day to weigh it against (its table's
        # `dead_letters` check reports it), so no series: the ratio alert read it as 100 %.
        conn.execute("INSERT INTO raw.dead_letter (source, dt) VALUES ('users', '2026-01-05')")


def scrape(collector: PlatformCollector) -> dict[tuple[str, frozenset], float]:
    """{(sample name, labels): value} of one scrape, parsed from the exposition text."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        yield instance


def test_the_collector_reports_what_the_instance_and_warehouse_hold(instance, tmp_path):
    now = time.time()
    build_warehouse(tmp_path / "warehouse.duckdb")
    queued = [history.add_run(instance, "raw_job", s) for s in (Run.QUEUED, Run.QUEUED)]
    history.add_run(instance, "raw_job", Run.NOT_STARTED)
    # The first queued run has waited an hour (the storage keeps naive UTC timestamps).
    waiting_since = datetime.fromtimestamp(now - 3600, UTC).replace(tzinfo=None)
    with instance.run_storage.connect() as conn:
        conn.execute(
            RunsTable.update()
            .where(RunsTable.c.run_id == queued[0].run_id)
            .values(create_timestamp=waiting_since)
        )
    ok = history.finished_run(instance, "raw_job", now - 600, 100, {"a": 10, "b": 50})
    history.finished_run(instance, "raw_job", now - 400, 7, {"a": 3}, ok=False)
    history.finished_run(instance, "marts_job", now - 2300, 2000, {"dbt": 1900})
    history.finished_run(instance, "raw_job", now - 3 * 86400, 20, {"a": 20})
    key = dg.AssetKey(["raw", "events"])
    error, warn = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN
    # One run per evaluation, as a check executes once per run; the last one passes.
    for passed, sev in ((True, error), (False, error), (False, warn), (True, error)):
        run = history.finished_run(instance, "checks_job", now - 500, 1, {})
        history.check_evaluation(instance, run, now - 500, key, "conservation", passed, sev)
    history.check_evaluation(instance, run, now - 500, key, "dead_letter_warning", False, warn)
    history.materialization(instance, ok, now - 3600, RAW_EVENTS)
    storage = instance.event_log_storage
    storage.set_concurrency_slots("duckdb", 1)
    storage.claim_concurrency_slot("duckdb", "run-1", "raw__events")
    storage.claim_concurrency_slot("duckdb", "run-2", "raw__payments")
    history.sensor_tick(instance, "landing_sensor", now - 45)

    policy = arrival_policy(timedelta(hours=4))
    collector = PlatformCollector(
        instance, DuckDBDayCounts(tmp_path / "warehouse.duckdb"), {RAW_EVENTS: policy}
    )
    samples = scrape(collector)

    runs = "data_platform_runs"
    assert value(samples, runs, job="raw_job", status="QUEUED") == 2
    assert value(samples, runs, job="raw_job", status="NOT_STARTED") == 1
    assert value(samples, runs, job="raw_job", status="SUCCESS") == 2
    assert value(samples, runs, job="raw_job", status="FAILURE") == 1
    assert value(samples, runs, job="marts_job", status="SUCCESS") == 1
    assert value(samples, runs, job="marts_job", status="QUEUED") == 0
    queued_age = value(samples, "data_platform_run_queue_oldest_age_seconds")
    assert 3600 <= queued_age < 3600 + time.time() - now + 1

    # The runs above ended before the exporter started: the histograms do not count them.
    assert not durations(samples)

    checks = "data_platform_asset_check_executions_total"
    conservation = {"asset": "raw/events", "check": "conservation"}
    assert value(samples, checks, **conservation, outcome="passed", severity="ERROR") == 2
    assert value(samples, checks, **conservation, outcome="failed", severity="ERROR") == 1
    assert value(samples, checks, **conservation, outcome="failed", severity="WARN") == 1
    failing = "data_platform_asset_check_failing"
    assert value(samples, failing, **conservation, severity="ERROR") == 0  # the last one passed
    ratio = {"asset": "raw/events", "check": "dead_letter_warning", "severity": "WARN"}
    assert value(samples, failing, **ratio) == 1

    lag = value(samples, "data_platform_asset_freshness_lag_seconds", asset="raw/events")
    assert 3600 <= lag < 3600 + (time.time() - now) + 1
    fail_window = value(
        samples, "data_platform_asset_freshness_fail_window_seconds", asset="raw/events"
    )
    assert fail_window == 9 * 3600  # two 4-hour deliveries missed, plus an hour

    assert value(samples, "data_platform_pool_slots_in_use", pool="duckdb") == 1
    assert value(samples, "data_platform_pool_slots_limit", pool="duckdb") == 1
    assert value(samples, "data_platform_pool_pending_steps", pool="duckdb") == 1
    tick_age = value(
        samples,
        "data_platform_sensor_last_tick_age_seconds",
        sensor="landing_sensor",
        state="running",
    )
    assert 45 <= tick_age < 45 + (time.time() - now) + 1

    assert value(samples, "data_platform_warehouse_up") == 1
    for (source, dt), (loaded, dead) in DAYS.items():
        assert value(samples, "data_platform_rows_loaded", source=source, dt=dt) == loaded
        assert value(samples, "data_platform_rows_dead_lettered", source=source, dt=dt) == (
            dead or None  # a day without dead letters has no row in raw.dead_letter
        )
    assert (
        value(samples, "data_platform_rows_dead_lettered", source="users", dt="2026-01-05") is None
    )


# Seconds a new label set reads 0, in the tests that drive the exporter's clock themselves.
HOLD = 120


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def durations(samples: dict[tuple[str, frozenset], float]) -> dict[tuple[str, frozenset], float]:
    return {
        k: v
        for k, v in samples.items()
        if k[0].startswith(("data_platform_run_duration", "data_platform_step_duration"))
    }


def test_duration_histograms_count_each_run_once_across_exporter_restarts(instance, tmp_path):
    """Counters start empty at the first exporter's start and count runs that end after it:
    seeded with the last day at each start, a restart counted that day again (`increase()`
    takes the drop to the seed as a reset, then the seed as growth). A label set reads 0 from
    the scrape that finds it until HOLD seconds later, so that its first run is growth to every
    Prometheus scraping meanwhile; what it held is added then, and each run is counted once,
    however often it is scraped. A restarted exporter goes on from the saved counts."""
    clock = Clock()
    history.finished_run(instance, "raw_job", time.time() - 3600, 100, {"a": 10})
    collector = PlatformCollector(
        instance, DuckDBDayCounts(tmp_path / "none.duckdb"), {}, new_series_hold=HOLD, clock=clock
    )
    assert not durations(scrape(collector))
    now = time.time()
    history.finished_run(instance, "raw_job", now - 100, 100, {"a": 10, "b": 50})
    history.finished_run(instance, "raw_job", now - 7, 7, {"a": 3}, ok=False)
    history.finished_run(instance, "marts_job", now - 2000, 2000, {"dbt": 1900})
    hist = "data_platform_run_duration_seconds"
    steps = "data_platform_step_duration_seconds"
    a_ok = {"job": "raw_job", "step": "a", "status": "SUCCESS"}
    marts = {"job": "marts_job", "status": "SUCCESS"}
    first = durations(scrape(collector))
    assert first and set(first.values()) == {0}  # every new label set, at 0
    assert value(first, f"{hist}_count", **marts) == 0
    assert value(first, f"{steps}_count", **a_ok) == 0
    # Held: every scrape before HOLD has passed reads 0, a run ending meanwhile held too.
    history.finished_run(instance, "marts_job", time.time() - 4, 4, {"dbt": 4})
    for _ in range(2):
        clock.now += HOLD / 2 - 0.5
        assert set(durations(scrape(collector)).values()) == {0}
    clock.now += 1
    for _ in range(2):
        samples = scrape(collector)
        assert value(samples, f"{hist}_count", job="raw_job", status="SUCCESS") == 1
        assert value(samples, f"{hist}_sum", job="raw_job", status="SUCCESS") == pytest.approx(100)
        assert value(samples, f"{hist}_bucket", job="raw_job", status="FAILURE", le="5.0") == 0
        assert value(samples, f"{hist}_bucket", job="raw_job", status="FAILURE", le="15.0") == 1
        assert value(samples, f"{hist}_bucket", **marts, le="5.0") == 1  # held, then added
        assert value(samples, f"{hist}_bucket", **marts, le="1800.0") == 1
        assert value(samples, f"{hist}_bucket", **marts, le="+Inf") == 2
        # Step a ran 10 s and 3 s (in the failed run, the step succeeded); the hour-old run's
        # 10 s ended before the exporter started.
        assert value(samples, f"{steps}_count", **a_ok) == 2
        assert value(samples, f"{steps}_sum", **a_ok) == pytest.approx(13)
        assert value(samples, f"{steps}_bucket", **a_ok, le="5.0") == 1

    # A run of a label set already exposed is counted at the next scrape, once.
    history.finished_run(instance, "marts_job", time.time() - 4, 4, {"dbt": 4})
    for _ in range(2):
        samples = scrape(collector)
        assert value(samples, f"{hist}_count", **marts) == 3
        assert value(samples, f"{hist}_bucket", **marts, le="5.0") == 2

    # The exporter stops, a run ends meanwhile. The next exporter goes on from the counts the
    # first saved in the instance (no drop, which `increase()` reads as a reset, and no hold
    # for series already exposed) and counts that run, once. It was lost before.
    history.finished_run(instance, "marts_job", time.time() - 3, 3, {"dbt": 3})
    restarted = PlatformCollector(
        instance, DuckDBDayCounts(tmp_path / "none.duckdb"), {}, new_series_hold=HOLD, clock=Clock()
    )
    for _ in range(2):
        samples = scrape(restarted)
        assert value(samples, f"{hist}_count", **marts) == 4
        assert value(samples, f"{hist}_bucket", **marts, le="5.0") == 3
        assert value(samples, f"{hist}_sum", **marts) == pytest.approx(2011)
        assert value(samples, f"{hist}_count", job="raw_job", status="FAILURE") == 1
        assert value(samples, f"{steps}_count", **a_ok) == 2
        assert value(samples, f"{steps}_sum", **a_ok) == pytest.approx(13)

    # A restore clears them (they count the instance as it was): the next exporter starts empty.
    forget_counted_durations(instance)
    empty = PlatformCollector(instance, DuckDBDayCounts(tmp_path / "none.duckdb"), {})
    assert not durations(scrape(empty))


def counted_runs(durations: RunDurations, instance: dg.DagsterInstance) -> float:
    return sum(
        sample.value
        for family in durations.collect(instance)
        for sample in family.samples
        if sample.name == "data_platform_run_duration_seconds_count"
    )


def test_a_run_updated_again_later_is_counted_once_and_counted_runs_are_not_kept(instance):
    """A tag added to a finished run (a retry's) updates it again, and the next scrape finds it
    again: counted once. The ids of counted runs were kept for the exporter's whole life, one
    more per run; now only those that ended within `seen_margin` of the newest update seen,
    and an older run found again is told apart by its end."""
    now = time.time()
    exporter = RunDurations(now=now - 20, hold_seconds=0, seen_margin=2)
    first = history.finished_run(instance, "raw_job", now - 11, 1, {"a": 1})
    # The scrape that finds a new label set exposes it at 0; the next adds the run.
    assert [counted_runs(exporter, instance) for _ in range(2)] == [0, 1]
    history.finished_run(instance, "raw_job", time.time() - 1, 1, {"a": 1})
    assert [counted_runs(exporter, instance) for _ in range(2)] == [2, 2]
    instance.add_run_tags(first.run_id, {"dagster/retry_number": "1"})
    assert [counted_runs(exporter, instance) for _ in range(2)] == [2, 2]
    assert len(exporter._seen) == 1  # the second run's id only


def test_a_run_whose_end_is_stored_late_is_still_counted(instance):
    """A run's update_timestamp is its end event's own timestamp, taken before the event is
    written: a run whose end reaches the run storage seconds after another run's later end
    (a busy SQLite, a worker's clock a little behind) was older than the exporter's watermark,
    which looked back 1 s, and was never counted, by this exporter or the next."""
    exporter = RunDurations(now=time.time() - 60, hold_seconds=0)
    assert counted_runs(exporter, instance) == 0
    now = time.time()
    history.finished_run(instance, "raw_job", now - 10, 10, {"a": 10})
    assert [counted_runs(exporter, instance) for _ in range(2)] == [0, 1]
    # Ended 3 s before the run counted above, stored only now.
    history.finished_run(instance, "raw_job", now - 13, 10, {"a": 10})
    assert [counted_runs(exporter, instance) for _ in range(2)] == [2, 2]
    restarted = RunDurations(now=time.time(), hold_seconds=0)
    assert [counted_runs(restarted, instance) for _ in range(2)] == [2, 2]


def test_unreadable_saved_durations_are_one_line_and_a_count_from_now(instance, capsys):
    """Saved state that does not parse (hand-edited, another version's) fails no scrape: one
    line says what and where, and the exporter counts from its own start."""
    instance.run_storage.set_cursor_values({STATE_KEY: '{"runs": "not counts"}'})
    exporter = RunDurations(now=time.time() - 20, hold_seconds=0)
    history.finished_run(instance, "raw_job", time.time() - 11, 1, {"a": 1})
    assert [counted_runs(exporter, instance) for _ in range(2)] == [0, 1]
    err = capsys.readouterr().err
    assert err.count(f"the saved run and step durations ({STATE_KEY} in the instance)") == 1
    assert "counting from now" in err


def failed_run(instance, job: str) -> dg.DagsterRun:
    """A run stored already FAILURE: one insert, so no scrape can see it in another state (a
    run that fails within seconds of its creation, as a run of a new job can)."""
    origin = RemoteJobOrigin(history.REPOSITORY, job)
    run = dg.DagsterRun(job_name=job, status=Run.FAILURE, remote_job_origin=origin)
    instance.add_run(run)
    return run


def test_a_jobs_first_failed_run_is_a_rise_from_zero(instance, tmp_path):
    """PromQL sees a rise only between two stored samples of a series: a job whose first run
    failed between two scrapes had a FAILURE series that appeared at 1, and the failed-run alert
    never fired. The Definitions' jobs are exposed from the first scrape (0 while they have no
    run); a job first seen later reads 0 from the scrape that finds it until HOLD seconds later,
    however many scrapes come meanwhile (one 0 was lost to a timed-out scrape, or taken by
    another Prometheus), its count after that; the history found at the first scrape is shown
    as it is, and never held."""
    clock = Clock()
    failed_run(instance, "old_job")
    collector = PlatformCollector(
        instance,
        DuckDBDayCounts(tmp_path / "none.duckdb"),
        {},
        jobs=["backup_job"],
        new_series_hold=HOLD,
        clock=clock,
    )

    def failures(job: str) -> float | None:
        return value(scrape(collector), "data_platform_runs", job=job, status="FAILURE")

    assert [failures(job) for job in ("old_job", "backup_job", "adhoc_job")] == [1, 0, None]
    failed_run(instance, "adhoc_job")
    failed_run(instance, "backup_job")
    failed_run(instance, "old_job")
    # (seconds since the scrape that found adhoc_job, the FAILURE value it reads)
    for at, expected in ((0, 0), (0, 0), (HOLD - 0.5, 0), (HOLD, 1), (HOLD + 60, 1)):
        clock.now = 1000.0 + at
        samples = scrape(collector)
        assert value(samples, "data_platform_runs", job="adhoc_job", status="FAILURE") == expected
        assert value(samples, "data_platform_runs", job="adhoc_job", status="SUCCESS") == 0
        assert value(samples, "data_platform_runs", job="backup_job", status="FAILURE") == 1
        assert value(samples, "data_platform_runs", job="old_job", status="FAILURE") == 2
    # Each job is held from its own finding, not from the other's.
    failed_run(instance, "late_job")
    assert failures("late_job") == 0
    clock.now += HOLD - 0.5
    assert failures("late_job") == 0
    clock.now += 0.5
    assert failures("late_job") == 1
    # A second exporter's first scrape: all of it is history.
    fresh = PlatformCollector(instance, DuckDBDayCounts(tmp_path / "none.duckdb"), {})
    assert value(scrape(fresh), "data_platform_runs", job="adhoc_job", status="FAILURE") == 1


def rows(samples: dict[tuple[str, frozenset], float]) -> dict[tuple[str, frozenset], float]:
    return {k: v for k, v in samples.items() if k[0].startswith("data_platform_rows_")}


def test_a_warehouse_gone_or_corrupt_is_one_log_line_then_read_again(instance, tmp_path, capsys):
    """Missing or corrupt, the file read as `warehouse_up 0` and nothing more, like a run
    holding it: the cause was nowhere. One line when it becomes unreadable or its reason
    changes, none while it stays so; served again once the file is back."""
    path = tmp_path / "warehouse.duckdb"
    build_warehouse(path)
    collector = PlatformCollector(instance, DuckDBDayCounts(path), {})
    assert value(scrape(collector), "data_platform_warehouse_up") == 1
    path.rename(tmp_path / "away.duckdb")
    for _ in range(2):
        assert value(scrape(collector), "data_platform_warehouse_up") == 0
    [gone] = capsys.readouterr().err.splitlines()
    assert gone.startswith("data-platform metrics: the warehouse is unreadable: ")
    assert str(path) in gone
    path.write_bytes(os.urandom(4096))
    assert value(scrape(collector), "data_platform_warehouse_up") == 0
    [corrupt] = capsys.readouterr().err.splitlines()
    assert corrupt.startswith("data-platform metrics: the warehouse is unreadable: ")
    assert corrupt != gone
    (tmp_path / "away.duckdb").replace(path)
    assert value(scrape(collector), "data_platform_warehouse_up") == 1
    assert capsys.readouterr().err == ""


def test_a_writer_holding_the_warehouse_makes_the_scrape_skip_it_not_wait(
    instance, tmp_path, capsys
):
    """Skipped, not waited for; the rows_* series are the last read (they vanished, so the
    dead-letter alert resolved and fired again on every writing run), none before any read."""
    path = tmp_path / "warehouse.duckdb"
    build_warehouse(path)
    collector = PlatformCollector(instance, DuckDBDayCounts(path), {})
    before = rows(scrape(collector))
    assert before
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert writer.stdout.readline() == b"locked\n"
        began = time.monotonic()
        samples = scrape(collector)
        # Skipped after its short lock wait; waiting for the writer would never end (the writer
        # holds the lock until this test lets it go), the shared default lock wait is 120 s.
        assert time.monotonic() - began < 30
        assert value(samples, "data_platform_warehouse_up") == 0
        assert rows(samples) == before
        never_read = scrape(PlatformCollector(instance, DuckDBDayCounts(path), {}))
        assert value(never_read, "data_platform_warehouse_up") == 0 and not rows(never_read)
        assert capsys.readouterr().err == ""  # every run holds it a while: not logged
    finally:
        writer.stdin.close()
        writer.wait(timeout=30)
    assert value(scrape(collector), "data_platform_warehouse_up") == 1


def ensure_prometheus() -> None:
    """The apt package `prometheus` (make test installs it); installed here only if missing."""
    if shutil.which("prometheus") and shutil.which("promtool"):
        return
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        capture_output=True,
    )


def test_promtool_accepts_the_shipped_rules_and_config():
    ensure_prometheus()
    for args in (
        ["check", "rules", "deploy/prometheus/alerts.yml"],
        ["check", "config", "deploy/prometheus/prometheus.yml"],
        ["test", "rules", "deploy/prometheus/alerts_test.yml"],
    ):
        result = subprocess.run(["promtool", *args], cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def promql(port: int, query: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]["result"]


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
            return response.status == 200
    except OSError:
        return False


def shipped_config(metrics_port: int) -> str:
    """deploy/prometheus/prometheus.yml as shipped (its rules, its scrape settings), only
    scraping every 3 s, evaluating every second, and at the exporter this test started."""
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    # A scrape may take over a second on a loaded machine: 3 s to answer, every 3 s.
    config["global"] |= {"scrape_interval": "3s", "evaluation_interval": "1s"}
    config["rule_files"] = [
        str(REPO / "deploy" / "prometheus" / name) for name in config["rule_files"]
    ]
    (scrape,) = config["scrape_configs"]
    scrape["scrape_timeout"] = "3s"
    scrape["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"]}]
    return yaml.safe_dump(config)


def firing_alerts(port: int) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/alerts", timeout=5) as response:
        return [a for a in json.load(response)["data"]["alerts"] if a["state"] == "firing"]


# The exporter's hold of a new series at 0 in the test below: 10 scrapes, one is enough.
NEW_SERIES_HOLD = 30


def test_a_real_prometheus_scrapes_the_command_and_answers_from_the_warehouse(tmp_path):
    ensure_prometheus()
    home = tmp_path / "home"
    (home / "dagster_home").mkdir(parents=True)
    build_warehouse(home / "warehouse.duckdb")
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        expected = conn.execute(
            "SELECT count(*) FROM raw.events WHERE dt = DATE '2026-01-05'"
        ).fetchone()[0]
    metrics_port, prometheus_port = free_port(), free_port()
    env = {
        **environ_without_settings(),
        "DATA_PLATFORM_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster_home"),
        "DATA_PLATFORM_METRICS_PORT": str(metrics_port),
        # Scrapes come every 3 s here: a loaded machine may time a few out, yet one of the
        # hold's 10 stores the new series at 0 (waited for below).
        "DATA_PLATFORM_METRICS_NEW_SERIES_HOLD": str(NEW_SERIES_HOLD),
    }
    config = tmp_path / "prometheus.yml"
    config.write_text(shipped_config(metrics_port))
    exporter = subprocess.Popen([CLI, "metrics"], env=env, cwd=REPO, stderr=subprocess.PIPE)
    prometheus = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Both start at the speed of imports, which a loaded CI machine can stretch past 30 s:
        # wait for the exporter itself first, so a slow start is not mistaken for no sample.
        assert wait_until(lambda: answers(metrics_port) or exporter.poll() is not None, 180)
        assert exporter.poll() is None, exporter.stderr.read1().decode()
        query = 'data_platform_rows_loaded{source="events", dt="2026-01-05"}'
        deadline, result = time.monotonic() + 90, []
        while time.monotonic() < deadline and not result:
            time.sleep(0.5)
            try:
                result = promql(prometheus_port, query)
            except OSError:
                continue  # Prometheus still starting
        assert result, "Prometheus scraped no sample in 90 s"
        assert float(result[0]["value"][1]) == expected == DAYS[("events", "2026-01-05")][0]
        up = promql(prometheus_port, 'up{job="data_platform"}')
        assert float(up[0]["value"][1]) == 1

        # A job's first ever run fails between two scrapes: the shipped rule fires for it, and
        # names the job (with the scrape's own `job` label winning, it named data_platform).
        # Someone else takes the exporter's first answer about it (a second Prometheus, a
        # curl, a scrape that timed out): exposed at 0 for that one answer only, the series'
        # first sample here was already 1 and the alert never fired.
        with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
            failed_run(instance, "adhoc_job")
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=30) as response:
            taken = response.read().decode()
        assert 'data_platform_runs{job="adhoc_job",status="FAILURE"} 0.0' in taken
        # Prometheus stores the series at 0 during the hold: the rise the rule needs. Were every
        # scrape of the hold lost, its first sample would be 1 and nothing could fire.
        series = 'data_platform_runs{job="adhoc_job", status="FAILURE"}'
        stored_at_0 = wait_until(lambda: promql(prometheus_port, f"{series} == 0"), NEW_SERIES_HOLD)
        assert stored_at_0, "no scrape stored the new series during its hold"
        failure = f"{series} == 1"
        assert wait_until(lambda: promql(prometheus_port, failure), NEW_SERIES_HOLD + 60), (
            "never scraped at 1"
        )

        def run_failed() -> list[str]:
            return [
                a["annotations"]["summary"]
                for a in firing_alerts(prometheus_port)
                if a["labels"]["alertname"] == "DataPlatformRunFailed"
            ]

        # The rules are evaluated every second: a few evaluations after the sample, or never.
        wait_until(run_failed, 60)
        assert run_failed() == ["A run of adhoc_job failed"], promql(
            prometheus_port, f"{series}[1m]"
        )
    finally:
        prometheus.terminate()
        exporter.terminate()
        prometheus.wait(timeout=30)
        assert exporter.wait(timeout=30) == 0


def test_a_wrong_metrics_setting_is_one_line(tmp_path):
    for variable, wrong in (
        ("DATA_PLATFORM_METRICS_PORT", "http"),
        ("DATA_PLATFORM_METRICS_DAYS", "0"),
        ("DATA_PLATFORM_METRICS_NEW_SERIES_HOLD", "2m"),
    ):
        env = {**os.environ, "DATA_PLATFORM_HOME": str(tmp_path), variable: wrong}
        result = subprocess.run(
            [CLI, "metrics"], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2
        assert result.stderr.strip().count("\n") == 0 and variable in result.stderr
    hold = "DATA_PLATFORM_METRICS_NEW_SERIES_HOLD"
    for wrong in ("-1", "1.5", "²"):
        with pytest.raises(SettingsError, match=f"{hold}=.* seconds"):
            load_settings({hold: wrong})
    # A superscript digit is a digit to str.isdigit() but no number to int(): a traceback,
    # not the one line, before every number setting was read with isdecimal().
    for variable, wrong in (
        ("DATA_PLATFORM_METRICS_PORT", "²"),
        ("DATA_PLATFORM_METRICS_DAYS", "²"),
        ("DATA_PLATFORM_KAFKA_BOOTSTRAP", "127.0.0.1:²"),
        ("DATA_PLATFORM_KAFKA_LAG_ALERT", "²"),
        ("DATA_PLATFORM_RUN_HEARTBEAT_SECONDS", "²"),
        ("DATA_PLATFORM_RUN_HEARTBEAT_SECONDS", "0"),
        ("DATA_PLATFORM_CELERY_LEASE_SECONDS", "²"),
        ("DATA_PLATFORM_CELERY_LEASE_SECONDS", "9"),  # renewed every second at the least
        ("DATA_PLATFORM_SPARK_RETRY_SECONDS", "²"),
        ("DATA_PLATFORM_SPARK_RETRY_SECONDS", "0"),
    ):
        with pytest.raises(SettingsError, match=variable):
            load_settings({variable: wrong})
    # The same rule, in the settings read elsewhere: a service's port, the backups kept.
    with pytest.raises(SettingsError, match="DATA_PLATFORM_POSTGRES_PORT"):
        load_services_config({"DATA_PLATFORM_POSTGRES_PORT": "²"})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEEP_VARIABLE, "²")
        with pytest.raises(dg.Failure, match=KEEP_VARIABLE):
            keep_count()
    assert load_settings({}).metrics_new_series_hold == METRICS_NEW_SERIES_HOLD == 120
    assert load_settings({hold: "0"}).metrics_new_series_hold == 0  # one scrape at 0, as before


def test_a_scrape_reads_again_only_the_assets_materialized_since_the_last(
    instance, tmp_path, monkeypatch
):
    """Every scrape read each policed asset's latest materialization, one to three queries an
    asset: 0.33 s of a 0.4 s scrape with 16 assets, over 1 s while a run wrote. Now an asset is
    read again only when one query of the assets' records shows it materialized since."""
    now = time.time()
    build_warehouse(tmp_path / "warehouse.duckdb")
    payments = dg.AssetKey(["raw", "payments"])
    run = history.finished_run(instance, "raw_job", now - 7200, 10, {"a": 10})
    history.materialization(instance, run, now - 7200, RAW_EVENTS, partition="2026-01-05")
    history.materialization(instance, run, now - 3600, payments)
    policy = arrival_policy(timedelta(hours=4))
    collector = PlatformCollector(
        instance,
        DuckDBDayCounts(tmp_path / "warehouse.duckdb"),
        {RAW_EVENTS: policy, payments: policy},
    )
    read = []
    latest = instance.get_latest_materialization_event
    monkeypatch.setattr(
        instance, "get_latest_materialization_event", lambda key: read.append(key) or latest(key)
    )
    lag = "data_platform_asset_freshness_lag_seconds"
    first = scrape(collector)
    assert sorted(read, key=str) == [RAW_EVENTS, payments]
    assert value(first, lag, asset="raw/events") >= 7200
    read.clear()
    second = scrape(collector)
    assert read == [] and value(second, lag, asset="raw/payments") >= 3600
    history.materialization(instance, run, time.time(), RAW_EVENTS, partition="2026-01-06")
    third = scrape(collector)
    assert read == [RAW_EVENTS]
    assert value(third, lag, asset="raw/events") < 60  # the new day, read at once
    assert value(third, lag, asset="raw/payments") >= 3600


def test_rows_series_cover_the_last_days_only(instance, tmp_path):
    """A rows_* series per source and day grew by one a day, forever. Now only the last
    `row_days` days are served, back from the newest day of any source (31 by default)."""
    path = tmp_path / "warehouse.duckdb"
    build_warehouse(path)  # events on 2026-01-05 and 06, payments on 05
    with duckdb.connect(str(path)) as conn:
        conn.execute(
            "INSERT INTO raw.events (dt) SELECT DATE '2026-01-07' + CAST(i AS INTEGER) "
            "FROM range(34) t(i)"  # 2026-01-07 ... 2026-02-09
        )
        conn.execute("INSERT INTO raw.dead_letter (source, dt) VALUES ('events', '2026-02-09')")
    samples = scrape(PlatformCollector(instance, DuckDBDayCounts(path), {}, row_days=31))
    days = {(name, dict(labels)["source"], dict(labels)["dt"]) for name, labels in rows(samples)}
    loaded = sorted(dt for name, source, dt in days if name.endswith("loaded"))
    assert (loaded[0], loaded[-1], len(loaded)) == ("2026-01-10", "2026-02-09", 31)
    assert {(source, dt) for name, source, dt in days if name.endswith("dead_lettered")} == {
        ("events", "2026-02-09")  # the dead letters of 2026-01-05 are out of the window
    }
    assert value(samples, "data_platform_rows_loaded", source="events", dt="2026-01-10") == 1
    assert load_settings({}).metrics_days == METRICS_DAYS == 31
    assert load_settings({"DATA_PLATFORM_METRICS_DAYS": "7"}).metrics_days == 7


def test_check_execution_counts_follow_rows_planned_then_evaluated_between_scrapes(instance):
    """The counter reads only rows it has not counted: a row planned at one scrape and
    evaluated before the next is counted once, at the next; nothing is counted twice."""
    key = dg.AssetKey(["raw", "events"])
    error = dg.AssetCheckSeverity.ERROR
    counts = CheckExecutionCounts()
    now = time.time()
    first = history.finished_run(instance, "checks_job", now - 60, 1, {})
    history.check_evaluation(instance, first, now - 60, key, "conservation", True, error)
    planned = history.finished_run(instance, "checks_job", now - 30, 1, {})
    history.emit(
        instance,
        planned,
        history.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
        now - 30,
        data=history.AssetCheckEvaluationPlanned(asset_key=key, check_name="conservation"),
    )
    passed = ("raw/events", "conservation", "passed", "ERROR")
    failed = ("raw/events", "conservation", "failed", "ERROR")
    assert counts.update(instance) == {passed: 1}
    history.emit(
        instance,
        planned,
        history.DagsterEventType.ASSET_CHECK_EVALUATION,
        now - 20,
        data=dg.AssetCheckEvaluation(
            asset_key=key, check_name="conservation", passed=False, severity=error
        ),
    )
    assert counts.update(instance) == {passed: 1, failed: 1}
    assert counts.latest_outcomes() == {("raw/events", "conservation", "ERROR"): True}
    assert counts.update(instance) == {passed: 1, failed: 1}
    assert CheckExecutionCounts().update(instance) == {passed: 1, failed: 1}


def test_a_check_kept_per_day_is_failing_while_any_day_is(instance):
    """dead_letter_ratio records one evaluation per day: a range run's last day passing, or a
    later run of another day, does not clear the gauge while a day's latest failed; a run of
    that day that passes does."""
    key = dg.AssetKey(["raw", "events"])
    error = dg.AssetCheckSeverity.ERROR
    counts = CheckExecutionCounts()
    now = time.time()

    def judge(day: str, passed: bool, at: float) -> None:
        run = history.finished_run(instance, "checks_job", at, 1, {})
        history.emit(
            instance,
            run,
            history.DagsterEventType.ASSET_CHECK_EVALUATION,
            at,
            data=dg.AssetCheckEvaluation(
                asset_key=key,
                check_name="dead_letter_ratio",
                passed=passed,
                severity=error,
                partition=day,
            ),
        )

    failing = ("raw/events", "dead_letter_ratio", "ERROR")
    judge("2026-01-05", False, now - 60)
    judge("2026-01-06", True, now - 50)
    counts.update(instance)
    assert counts.latest_outcomes() == {failing: True}
    judge("2026-01-07", True, now - 40)
    counts.update(instance)
    assert counts.latest_outcomes() == {failing: True}
    judge("2026-01-05", True, now - 30)
    counts.update(instance)
    assert counts.latest_outcomes() == {failing: False}


def test_wiping_an_asset_drops_its_failing_check_but_keeps_its_executions(instance, tmp_path):
    """Wiping an asset deletes its check executions: the running exporter kept the check
    failing (paging) for data gone, until a restart. The counter keeps its count: a counter
    does not go down while the exporter runs."""
    key = dg.AssetKey(["marts", "fct_orders"])
    run = history.finished_run(instance, "marts_job", time.time() - 60, 1, {})
    history.materialization(instance, run, time.time() - 60, key)
    history.check_evaluation(
        instance, run, time.time() - 59, key, "row_count", False, dg.AssetCheckSeverity.ERROR
    )
    collector = PlatformCollector(instance, DuckDBDayCounts(tmp_path / "none.duckdb"), {})
    check = {"asset": "marts/fct_orders", "check": "row_count", "severity": "ERROR"}
    executions = "data_platform_asset_check_executions_total"
    assert value(scrape(collector), "data_platform_asset_check_failing", **check) == 1

    instance.wipe_assets([key])
    samples = scrape(collector)
    assert value(samples, "data_platform_asset_check_failing", **check) is None
    assert value(samples, executions, **check, outcome="failed") == 1


def test_a_check_evaluated_after_a_wipe_under_a_reused_id_is_counted(instance, tmp_path):
    """SQLite gives a new row the id after the highest one left: the executions of a wiped asset,
    when they were the newest rows, hand their ids to the next ones, below the exporter's last
    id. Those were never counted, and the check failing after the wipe read passed (no page)
    until the exporter restarted."""
    events, payments = dg.AssetKey(["raw", "events"]), dg.AssetKey(["raw", "payments"])

    def evaluate(key: dg.AssetKey, passed: bool) -> None:
        run = history.finished_run(instance, "checks_job", time.time() - 5, 1, {})
        history.check_evaluation(
            instance, run, time.time() - 5, key, "conservation", passed, dg.AssetCheckSeverity.ERROR
        )

    for key in (events, payments, payments):
        evaluate(key, True)
    collector = PlatformCollector(instance, DuckDBDayCounts(tmp_path / "none.duckdb"), {})
    scrape(collector)
    instance.wipe_assets([payments])
    evaluate(payments, False)
    check = {"asset": "raw/payments", "check": "conservation", "severity": "ERROR"}
    executions = "data_platform_asset_check_executions_total"
    for exporter in (collector, PlatformCollector(instance, DuckDBDayCounts(tmp_path / "n"), {})):
        samples = scrape(exporter)
        assert value(samples, "data_platform_asset_check_failing", **check) == 1
        assert value(samples, executions, **check, outcome="failed") == 1
    # The running exporter keeps the wiped executions' count (a restarted one has none), and
    # counts the reused id once.
    samples = scrape(collector)
    assert value(samples, executions, **check, outcome="passed") == 2
    assert value(samples, executions, **check, outcome="failed") == 1


SECOND_NS = 1_000_000_000


def test_day_counts_are_reused_only_for_an_unchanged_stamp_that_had_settled():
    """The cache reads again whenever the stamp differs, and keeps nothing read from a file
    written within `settle_seconds`: a write in the same filesystem tick could keep its stamp."""
    reads: list[int] = []

    def read() -> dict:
        reads.append(len(reads) + 1)
        return {"loaded": {("events", "2026-01-05"): 100 * len(reads)}, "dead_lettered": {}}

    def loaded(counts: dict) -> int:
        return counts["loaded"][("events", "2026-01-05")]

    cache = DayCountsCache(settle_seconds=1.0)
    now = 100 * SECOND_NS
    old = FileStamp(((7, 4096, 90 * SECOND_NS, 90 * SECOND_NS), None), 90 * SECOND_NS)
    assert loaded(cache.get(old, now, read)) == 100
    assert loaded(cache.get(old, now + SECOND_NS, read)) == 100  # reused: no read
    assert len(reads) == 1
    # A write half a second before the read: a new stamp, read, but not kept.
    fresh_ns = now + SECOND_NS // 2
    fresh = FileStamp(((7, 8192, fresh_ns, fresh_ns), (8, 512, fresh_ns, fresh_ns)), fresh_ns)
    assert loaded(cache.get(fresh, now + SECOND_NS, read)) == 200
    assert loaded(cache.get(fresh, now + SECOND_NS, read)) == 300
    # Once it has settled, the next read is kept.
    assert loaded(cache.get(fresh, now + 2 * SECOND_NS, read)) == 400
    assert loaded(cache.get(fresh, now + 3 * SECOND_NS, read)) == 400
    assert loaded(cache.get(old, now + 3 * SECOND_NS, read)) == 500
    assert len(reads) == 5


def test_a_scrape_reads_the_warehouse_again_after_a_write_and_not_before(
    instance, tmp_path, monkeypatch
):
    path = tmp_path / "warehouse.duckdb"
    build_warehouse(path)
    time.sleep(warehouse_metrics.SETTLE_SECONDS + 0.1)  # else the counts are read, not kept
    reads = []
    original = warehouse_metrics._read_counts
    monkeypatch.setattr(
        warehouse_metrics, "_read_counts", lambda conn: reads.append(1) or original(conn)
    )
    collector = PlatformCollector(instance, DuckDBDayCounts(path), {})
    loaded = {"source": "events", "dt": "2026-01-05"}
    for _ in range(2):
        assert value(scrape(collector), "data_platform_rows_loaded", **loaded) == 7
    assert len(reads) == 1
    with duckdb.connect(str(path)) as conn:
        conn.execute("INSERT INTO raw.events (dt) SELECT DATE '2026-01-05' FROM range(5)")
    assert value(scrape(collector), "data_platform_rows_loaded", **loaded) == 12
    assert len(reads) == 2


def test_a_background_read_is_reused_until_it_ages_and_never_waited_on_past_its_limit():
    """The Spark counts' schedule: one read per `max_age`, a caller never waiting more than
    `wait` for it, a failure reported and retried at the next call, with real threads."""
    clock, reads, release = Clock(), [], threading.Event()

    def read() -> dict:
        reads.append(1)
        if len(reads) == 2:
            raise RuntimeError("cluster gone")
        if len(reads) == 3:
            release.wait(120)  # a slow cluster: it answers when the test lets it
        return {"loaded": {("events", "2026-01-05"): len(reads)}, "dead_lettered": {}}

    background = BackgroundRead(read, max_age=30, wait=0.2, clock=clock)
    assert background.get()["loaded"][("events", "2026-01-05")] == 1
    clock.now += 29
    assert background.get()["loaded"][("events", "2026-01-05")] == 1  # not aged: no read
    clock.now += 2
    with pytest.raises(WarehouseUnreadable, match="cluster gone"):
        background.get()
    began = time.monotonic()
    with pytest.raises(WarehouseUnreadable, match=r"no answer within 0\.2 s"):
        background.get()  # the third read hangs: the caller does not
    assert time.monotonic() - began < 30  # waiting for the read would take 120 s
    with pytest.raises(WarehouseUnreadable, match="no answer"):
        background.get()  # still the same read: no second one piles up
    assert len(reads) == 3
    release.set()  # the read ends: its answer is the next caller's, and then kept
    for _ in range(2):
        assert background.get()["loaded"][("events", "2026-01-05")] == 3
    assert len(reads) == 3


def test_an_unreachable_spark_cluster_is_warehouse_down_at_once(instance):
    """engine=spark with nothing listening at the endpoint: the scrape reports the warehouse
    down within its wait, instead of hanging on Spark Connect's retries."""
    endpoint = f"sc://127.0.0.1:{free_port()}"
    warehouse = Warehouse(path="unused.duckdb", engine="spark", spark_remote=endpoint)
    collector = PlatformCollector(instance, SparkDayCounts(warehouse, wait=1.0), {})
    began = time.monotonic()
    samples = scrape(collector)
    # Within its wait, not after Spark Connect's retries, which go on for minutes.
    assert time.monotonic() - began < 30
    assert value(samples, "data_platform_warehouse_up") == 0
    assert not any(name.startswith("data_platform_rows_") for name, _ in samples)


def test_last_tick_times_are_each_selectors_latest_tick(instance):
    now = time.time()
    history.sensor_tick(instance, "landing_sensor", now - 90)
    history.sensor_tick(instance, "automation", now - 300)
    states = {s.instigator_name: s for s in instance.all_instigator_state()}
    landing = states["landing_sensor"]
    for at in (now - 45, now - 60):  # later ticks, stored out of order
        instance.create_tick(
            TickData(
                instigator_origin_id=landing.instigator_origin_id,
                instigator_name=landing.instigator_name,
                instigator_type=InstigatorType.SENSOR,
                status=TickStatus.SKIPPED,
                timestamp=at,
                selector_id=landing.selector_id,
            )
        )
    states = {name: state.selector_id for name, state in states.items()}
    latest = last_tick_times(instance, [*states.values(), "never-ticked"])
    assert latest == {
        states["landing_sensor"]: pytest.approx(now - 45),
        states["automation"]: pytest.approx(now - 300),
    }


def test_an_unreadable_instance_loses_only_its_own_series(tmp_path, capsys):
    """The instance's database down failed the whole scrape (HTTP 500, no series at all: the
    warehouse's and Kafka's gone too, every other alert resolved). Now the instance's series are
    absent, with instance_up 0, and the warehouse is still reported."""
    build_warehouse(tmp_path / "warehouse.duckdb")
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        history.finished_run(instance, "raw_job", time.time() - 60, 5, {"a": 5})
        collector = PlatformCollector(instance, DuckDBDayCounts(tmp_path / "warehouse.duckdb"), {})
        assert value(scrape(collector), "data_platform_instance_up") == 1
        runs_db = home / "history" / "runs.db"
        runs_db.write_bytes(b"not a database" * 100)  # the storage breaks under the exporter
        samples = scrape(collector)
    assert value(samples, "data_platform_instance_up") == 0
    assert not any(name.startswith("data_platform_runs") for name, _ in samples)
    assert value(samples, "data_platform_warehouse_up") == 1 and rows(samples)
    # SQLite's "file is not a database" names no file: the line names the instance's folder.
    assert f"the instance (SQLite files in {home / 'history'}) is unreadable: " in (
        capsys.readouterr().err
    )


def test_a_scrape_restricted_by_name_gets_those_series(tmp_path):
    """`/metrics?name[]=data_platform_warehouse_up` (a federation, a person checking one
    series) was an empty 200: the registry left the collector, which names no metrics ahead,
    out of every restricted scrape."""
    build_warehouse(tmp_path / "warehouse.duckdb")
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        collector = PlatformCollector(instance, DuckDBDayCounts(tmp_path / "warehouse.duckdb"), {})
        app = make_wsgi_app(registry_of(collector))
        query = "name[]=data_platform_warehouse_up&name[]=data_platform_instance_up"
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": query}
        body = b"".join(app(environ, lambda status, headers: None)).decode()
    samples = {s.name: s.value for f in text_string_to_metric_families(body) for s in f.samples}
    assert samples == {"data_platform_warehouse_up": 1, "data_platform_instance_up": 1}


def test_an_instance_on_postgresql_that_refuses_connections_is_instance_down(
    tmp_path, postgres_server, postgres_url, capsys, monkeypatch
):
    """The instance's PostgreSQL down is instance_up 0, not a failed scrape, and at once:
    dagster-postgres's retries (~11 s of back-off) outlasted the shipped 10 s scrape timeout,
    so Prometheus lost the whole target instead."""
    import dagster_postgres.utils

    build_warehouse(tmp_path / "warehouse.duckdb")
    write_postgres_instance(tmp_path, postgres_url)
    database = sa.engine.make_url(postgres_url).database
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        collector = PlatformCollector(instance, DuckDBDayCounts(tmp_path / "warehouse.duckdb"), {})
        assert value(scrape(collector), "data_platform_instance_up") == 1
        with postgres_server.admin_engine().connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'))
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"
                ),
                {"d": database},
            )
        waits: list[float] = []
        monkeypatch.setattr(dagster_postgres.utils, "time", SimpleNamespace(sleep=waits.append))
        samples = scrape(collector)
    assert waits == []
    assert value(samples, "data_platform_instance_up") == 0
    assert value(samples, "data_platform_warehouse_up") == 1
    err = capsys.readouterr().err
    url = sa.engine.make_url(postgres_url)
    where = f"PostgreSQL database {database} at {url.host}:{url.port}"
    assert f"the instance ({where}) is unreadable: " in err
    assert url.username not in err  # no credentials in a log line


def test_an_instance_postgresql_that_does_not_answer_is_instance_down_within_a_scrape(
    tmp_path, postgres_server, postgres_url, monkeypatch
):
    """A server that takes connections but does not answer (its postmaster stopped, as a hung
    disk or a frozen machine leaves it) held the scrape for ever: libpq waits without limit
    for a connection to open, and Prometheus cut the scrape off at 10 s, the whole target lost.
    The dagster.yaml `services-up` writes bounds the wait (CONNECT_TIMEOUT_SECONDS)."""
    build_warehouse(tmp_path / "warehouse.duckdb")
    env = distributed_home(tmp_path / "home", postgres_url)
    write_instance_yaml(load_services_config(env))
    for name, setting in env.items():
        monkeypatch.setenv(name, setting)
    postmaster = read_pid(postgres_server.pid_file)
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        collector = PlatformCollector(instance, DuckDBDayCounts(tmp_path / "warehouse.duckdb"), {})
        assert value(scrape(collector), "data_platform_instance_up") == 1
        samples = while_frozen(
            postmaster, lambda: scrape(collector), within=4 * CONNECT_TIMEOUT_SECONDS
        )
    assert value(samples, "data_platform_instance_up") == 0
    assert value(samples, "data_platform_warehouse_up") == 1


def test_a_bug_in_the_collector_fails_the_scrape_with_its_traceback_not_instance_down(
    instance, tmp_path, capfd
):
    """Every error reading the instance was instance_up 0 with one line: a bug of the collector
    (here a freshness policy of the wrong type) paged as the database's outage, its traceback
    lost. Now the scrape fails (the exporter's target down), the traceback in its log, and the
    exporter goes on answering."""
    build_warehouse(tmp_path / "warehouse.duckdb")
    policies = {dg.AssetKey("orders"): "not a policy"}
    collector = PlatformCollector(
        instance, DuckDBDayCounts(tmp_path / "warehouse.duckdb"), policies
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        for _ in range(2):  # the first failure leaves the exporter answering
            with pytest.raises(urllib.error.HTTPError) as failed:
                urllib.request.urlopen(url, timeout=30)
            assert failed.value.code == 500
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    err = capfd.readouterr().err
    assert "Traceback" in err and "AttributeError" in err and "fail_window" in err
    assert "is unreadable" not in err


class SilentBroker:
    """A Kafka bootstrap that accepts connections and never answers: a scrape's Kafka client
    connects at the start of its wait (2 s) and closes at its end, before the scrape answers,
    so a connection still open is a scrape still in progress."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._server.getsockname()[1]}"
        self.connections: queue.Queue[socket.socket] = queue.Queue()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.connections.put(self._server.accept()[0])
            except OSError:
                return  # closed

    @staticmethod
    def is_open(conn: socket.socket) -> bool:
        """Whether the client still holds `conn` (its requests are read and dropped)."""
        try:
            while conn.recv(65536, socket.MSG_DONTWAIT):
                pass
        except BlockingIOError:
            return True
        except OSError:
            pass
        return False  # end of stream, or reset: closed

    def close(self) -> None:
        self._server.close()
        while not self.connections.empty():
            self.connections.get().close()


def test_an_exporter_stopped_during_a_scrape_answers_it_then_exits_0(tmp_path):
    """Scrapes run on daemon threads: stopped mid-scrape, the exporter exited under it (the
    scrape cut off without a response; in CI once a SIGABRT, a thread still in native code as
    the interpreter went down). It now waits for the scrape in progress. A Kafka bootstrap
    that accepts and never answers holds the scrape in librdkafka for its 2 s wait: the
    exporter is stopped once the scrape's client has connected, while it still waits."""
    home = tmp_path / "home"
    (home / "dagster_home").mkdir(parents=True)
    port = free_port()
    broker = SilentBroker()
    env = {
        **environ_without_settings(),
        "DATA_PLATFORM_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster_home"),
        "DATA_PLATFORM_METRICS_PORT": str(port),
        "DATA_PLATFORM_KAFKA_BOOTSTRAP": broker.address,
    }
    exporter = subprocess.Popen([CLI, "metrics"], env=env, cwd=REPO, stderr=subprocess.PIPE)
    try:
        assert wait_until(lambda: answers(port) or exporter.poll() is not None, 180)
        assert exporter.poll() is None, exporter.stderr.read1().decode()
        url = f"http://127.0.0.1:{port}/metrics"

        def take(into: list[bytes]) -> None:
            into.append(urllib.request.urlopen(url, timeout=60).read())

        # One scrape at a time. A closed connection is an earlier scrape's (those that found
        # the exporter up), or this scrape's if it left Kafka before the test looked (a stalled
        # test process): then another scrape is started.
        scraped: list[bytes] = []
        scrape = threading.Thread(target=take, args=(scraped,))
        scrape.start()
        for _ in range(600):
            try:
                conn = broker.connections.get(timeout=0.5)
            except queue.Empty:
                conn = None
            if conn is not None and broker.is_open(conn):
                exporter.terminate()  # mid-scrape: its client is connected and waiting
                break
            if conn is not None:
                conn.close()
            if not scrape.is_alive() and broker.connections.empty():
                scraped = []
                scrape = threading.Thread(target=take, args=(scraped,))
                scrape.start()
        else:
            pytest.fail("no scrape was found waiting in Kafka")
        assert exporter.wait(timeout=60) == 0, exporter.stderr.read().decode()[-2000:]
        scrape.join(timeout=60)
        assert scraped and b"data_platform_kafka_up 0.0" in scraped[0]
    finally:
        exporter.kill()
        broker.close()
