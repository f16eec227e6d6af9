"""`make bench`: the Prometheus exporter's scrape on a year of history (goal: under a second).

What a year costs a scrape is the size of the instance's tables (runs, the index shard's event
log and check executions, sensor ticks) and of the warehouse's raw tables. Writing a year event
by event through Dagster would take hours on SQLite (one day takes about a minute here: a
database file and an alembic check per run, a connection per event), so the year is built in
two parts:

- the last day, written through the instance as runs write it (`instance_history`: every event
  through `handle_new_event`): every asset of the Definitions materialized and every check
  evaluated, file ingestion four times, a failed run. The first scrape reads these runs' step
  stats from their own event logs, as it does after a restart;
- the 364 days before, copies of that day's rows in every table keyed by run id (runs, run tags,
  the index shard's events and check executions), under new run ids and moved back in time,
  and 7 days of sensor ticks every 30 s (Dagster purges skipped ticks after 7 days by
  default). The scrape reads none of these runs' own event logs, so they are not written.

The warehouse holds a year of raw.events, raw.payments and raw.dead_letter rows at the
simulator's default volume. The collector is the one `data-platform metrics` serves, with the
freshness policies of the platform's Definitions.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import sqlalchemy as sa
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.runs.schema import RunsTable, RunTagsTable
from dagster._core.storage.schedules.schema import JobTickTable
from prometheus_client import generate_latest
from prometheus_client.core import CollectorRegistry
from prometheus_client.registry import Collector

from data_platform_tests import instance_history as history

REPO = Path(__file__).resolve().parents[1]
DAYS = 365
DAY_SECONDS = 86_400.0
# The simulator's defaults (simulator/config.py): 20,000 events a day, 1 % defects.
EVENTS_PER_DAY, PAYMENTS_PER_DAY, DEAD_LETTER_RATE = 20_000, 1_000, 0.01
FILE_ARRIVALS_PER_DAY = 4
TICK_EVERY_SECONDS, TICKS_KEPT_DAYS = 30, 7
SCRAPES = 5
BATCH_ROWS = 5_000


def platform_day(
    instance: dg.DagsterInstance, graph: AssetGraph, start: float, day: date
) -> list[str]:
    """One day of the platform's runs from `start`, written through the instance: the landed
    files ingested `FILE_ARRIVALS_PER_DAY` times (partition `day` of the partitioned assets),
    the source tables, dbt (staging to marts, one step), analytics, and a dbt run that failed.
    Each run materializes its assets and evaluates their checks; one check in seven fails.
    Returns the run ids."""
    keys = sorted(graph.materializable_asset_keys, key=lambda k: k.to_user_string())
    partitioned = [k for k in keys if graph.get(k).partitions_def]
    by_group: dict[str, list[dg.AssetKey]] = {}
    for key in keys:
        if key not in partitioned:
            by_group.setdefault(graph.get(key).group_name, []).append(key)
    runs = [(f"ingest_files_{i}", partitioned) for i in range(FILE_ARRIVALS_PER_DAY)]
    runs += [("ingest_source_tables", by_group["raw"])]
    runs += [("dbt", [k for g in ("staging", "snapshots", "marts") for k in by_group[g]])]
    runs += [("analytics", by_group["analytics"])]
    run_ids = []
    checked = 0
    for i, (job, assets) in enumerate(runs):
        at = start + i * DAY_SECONDS / (len(runs) + 1)
        steps = {"dbt_models": 300.0} if job == "dbt" else {k.path[-1]: 20.0 for k in assets}
        run = history.finished_run(instance, job, at, sum(steps.values()) + 5, steps)
        run_ids.append(run.run_id)
        for key in assets:
            partition = day.isoformat() if key in partitioned else None
            history.materialization(instance, run, at + 1, key, partition)
            for check in sorted(graph.get(key).check_keys, key=lambda c: c.name):
                checked += 1
                severity = (
                    dg.AssetCheckSeverity.WARN if checked % 2 else dg.AssetCheckSeverity.ERROR
                )
                history.check_evaluation(
                    instance, run, at + 2, key, check.name, checked % 7 != 0, severity
                )
    failed = history.finished_run(instance, "dbt", start + 3_600, 60, {"dbt_models": 55}, ok=False)
    return [*run_ids, failed.run_id]


@dataclass(frozen=True)
class Copy:
    """Rows again, `seconds` earlier, under new run ids (`run_ids`: old -> new) and with the
    text `day` (old, new) replaced: partition keys."""

    seconds: float
    run_ids: Mapping[str, str] = field(default_factory=dict)
    day: tuple[str, str] = ("", "")


def _moved(row: dict[str, object], copy: Copy) -> dict[str, object]:
    old_run = row.get("run_id")
    new_run = copy.run_ids.get(old_run) if isinstance(old_run, str) else None
    moved = {}
    for column, value in row.items():
        if isinstance(value, datetime):
            value = value - timedelta(seconds=copy.seconds)
        elif isinstance(value, float) and column.endswith(("_time", "timestamp")):
            value = value - copy.seconds
        elif isinstance(value, str):
            if new_run:
                value = value.replace(old_run, new_run)
            if copy.day[0]:
                value = value.replace(*copy.day)
        moved[column] = value
    return moved


def copy_rows(
    conn: sa.Connection, table: sa.Table, where: sa.ColumnElement[bool], copies: Iterable[Copy]
) -> int:
    """Insert the rows of `table` matching `where` again, once for each of `copies`; the ids
    are the database's. Returns the rows matching, copies included."""
    rows = [
        {c: v for c, v in r._mapping.items() if c != "id"}
        for r in conn.execute(sa.select(table).where(where))
    ]
    inserted, batch = 0, []
    for copy in copies:
        batch += [_moved(row, copy) for row in rows]
        if len(batch) >= BATCH_ROWS:
            conn.execute(table.insert(), batch)
            inserted, batch = inserted + len(batch), []
    if batch:
        conn.execute(table.insert(), batch)
    return len(rows) + inserted + len(batch)


def earlier_days(
    instance: dg.DagsterInstance, run_ids: list[str], last_day: date
) -> dict[str, int]:
    """The day of `run_ids` copied into each of the `DAYS - 1` days before it; returns the rows
    of each table then."""
    copies = [
        Copy(
            seconds=back * DAY_SECONDS,
            run_ids={run_id: str(uuid.uuid4()) for run_id in run_ids},
            day=(last_day.isoformat(), (last_day - timedelta(days=back)).isoformat()),
        )
        for back in range(1, DAYS)
    ]
    counts = {}
    with instance.run_storage.connect() as conn:
        for table in (RunsTable, RunTagsTable):
            counts[table.name] = copy_rows(conn, table, table.c.run_id.in_(run_ids), copies)
    with instance.event_log_storage.index_connection() as conn:
        for table in (SqlEventLogStorageTable, AssetCheckExecutionsTable):
            counts[table.name] = copy_rows(conn, table, table.c.run_id.in_(run_ids), copies)
    return counts


def sensor_ticks(instance: dg.DagsterInstance, sensors: list[str], now: float) -> int:
    """Each sensor running, with a tick every `TICK_EVERY_SECONDS` over `TICKS_KEPT_DAYS`;
    returns the ticks."""
    for name in sensors:
        history.sensor_tick(instance, name, now)
    ticks = int(TICKS_KEPT_DAYS * DAY_SECONDS / TICK_EVERY_SECONDS)
    copies = (Copy(seconds=n * TICK_EVERY_SECONDS) for n in range(1, ticks))
    with instance.schedule_storage.connect() as conn:
        return copy_rows(conn, JobTickTable, sa.true(), copies)


def build_warehouse(path: Path, last_day: date) -> int:
    """A year of raw rows per arrival day (dt); returns the rows."""
    from data_platform.ingestion.tables import DEAD_LETTER, EVENTS, PAYMENTS

    first = last_day - timedelta(days=DAYS - 1)
    days = f"(SELECT DATE '{first}' + d::INTEGER AS dt FROM range({DAYS}) AS t(d))"
    with duckdb.connect(str(path)) as conn:
        conn.execute("SET enable_progress_bar = false")
        conn.execute("CREATE SCHEMA raw")
        for table in (EVENTS, PAYMENTS, DEAD_LETTER):
            conn.execute(table.ddl())
        for source, per_day in (("events", EVENTS_PER_DAY), ("payments", PAYMENTS_PER_DAY)):
            conn.execute(f"INSERT INTO raw.{source} (dt) SELECT dt FROM {days}, range({per_day})")
            dead = int(per_day * DEAD_LETTER_RATE)
            conn.execute(
                f"INSERT INTO raw.dead_letter (source, dt) SELECT '{source}', dt "
                f"FROM {days}, range({dead})"
            )
        return sum(
            conn.execute(f"SELECT count(*) FROM raw.{t}").fetchone()[0]
            for t in ("events", "payments", "dead_letter")
        )


def scrape_seconds(registry: CollectorRegistry) -> float:
    """One scrape as Prometheus gets it: every family collected and rendered as text."""
    began = time.perf_counter()
    generate_latest(registry)
    return time.perf_counter() - began


def family_seconds(collector: Collector) -> dict[str, float]:
    """Seconds each metric family of a scrape took to produce (the collector's work before it
    yields the family): where a slow scrape spends its time."""
    seconds = {}
    began = time.perf_counter()
    for family in collector.collect():
        seconds[family.name] = time.perf_counter() - began
        began = time.perf_counter()
    return seconds


def run() -> dict[str, object]:
    """Build the year, then time scrapes of one collector: the first (it finds every job and
    the year's history), the median of `SCRAPES` after it, and the three slowest families of
    one more."""
    from data_platform.definitions import defs
    from data_platform.operations.metrics import PlatformCollector
    from data_platform.operations.state_metrics import freshness_windows
    from data_platform.operations.warehouse_metrics import DuckDBDayCounts

    graph = defs.resolve_asset_graph()
    now = time.time()
    last_day = datetime.fromtimestamp(now - DAY_SECONDS, UTC).date()
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        home = Path(tmp)
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        began = time.perf_counter()
        with dg.DagsterInstance.from_config(str(home)) as instance:
            run_ids = platform_day(instance, graph, now - DAY_SECONDS, last_day)
            counts = earlier_days(instance, run_ids, last_day)
            counts["ticks"] = sensor_ticks(instance, [s.name for s in defs.sensors or []], now)
            instance.event_log_storage.set_concurrency_slots("duckdb", 1)
            counts["warehouse_rows"] = build_warehouse(home / "warehouse.duckdb", last_day)
            built = time.perf_counter() - began

            collector = PlatformCollector(
                instance, DuckDBDayCounts(home / "warehouse.duckdb"), freshness_windows(defs)
            )
            registry = CollectorRegistry(auto_describe=False)
            registry.register(collector)
            first = scrape_seconds(registry)
            median = statistics.median(scrape_seconds(registry) for _ in range(SCRAPES))
            families = family_seconds(collector)
    slowest = sorted(families.items(), key=lambda item: -item[1])[:3]
    return {
        "first_scrape_s": first,
        "median_scrape_s": median,
        "slowest": ", ".join(f"{name} {s:.2f}s" for name, s in slowest),
        "built_s": built,
        **counts,
    }


if __name__ == "__main__":
    print(run())
