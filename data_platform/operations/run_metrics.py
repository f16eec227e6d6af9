"""Runs as Prometheus sees them, read from the Dagster instance at each scrape.

Counts come from one GROUP BY on the run storage's table (SQLite or PostgreSQL alike), not
from run records: on a year of history that is a few milliseconds instead of loading every
run. Queued, crashed (FAILURE after a dead worker) and never-started runs are rows like any
other, which is what an exporter outside the runs sees and dagster-prometheus cannot.

The failed-run alert is a rise of a job's FAILURE count, which PromQL sees only between two
samples of one series: `RunCountSeries` makes sure a job's first sample is 0.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC

import dagster as dg
import sqlalchemy as sa
from dagster._core.storage.runs.schema import RunsTable
from prometheus_client.core import GaugeMetricFamily, Metric

from data_platform.operations.series_hold import NewSeriesHold
from data_platform.settings import METRICS_NEW_SERIES_HOLD


def run_counts(instance: dg.DagsterInstance) -> dict[tuple[str, str], int]:
    """{(job, status): runs} over every run the instance holds."""
    query = sa.select(RunsTable.c.pipeline_name, RunsTable.c.status, sa.func.count()).group_by(
        RunsTable.c.pipeline_name, RunsTable.c.status
    )
    with instance.run_storage.connect() as conn:
        return {(job, status): count for job, status, count in conn.execute(query)}


def oldest_queued_age(instance: dg.DagsterInstance, now: float) -> float:
    """Seconds the oldest QUEUED run has waited (0 when none): a queue that stopped moving."""
    query = sa.select(sa.func.min(RunsTable.c.create_timestamp)).where(
        RunsTable.c.status == dg.DagsterRunStatus.QUEUED.value
    )
    with instance.run_storage.connect() as conn:
        oldest = conn.execute(query).scalar()
    # The storage keeps naive UTC timestamps (its server default is CURRENT_TIMESTAMP).
    if oldest is None:
        return 0.0
    return max(0.0, now - oldest.replace(tzinfo=UTC).timestamp())


class RunCountSeries:
    """Which jobs have `data_platform_runs` series, so that a job's first failed run is a rise.

    `delta()` and `increase()` see a change only between two samples of a series: when a job's
    first ever run failed between two scrapes, its FAILURE series appeared already at 1, and
    DataPlatformRunFailed never fired. So the Definitions' jobs are exposed from the first
    scrape on, every status at 0 until it has runs; a job first seen after the first scrape
    (not in the Definitions: another code location, a renamed job) is exposed at 0 from the
    scrape that finds it until `hold_seconds` later, with its counts after that (series_hold.py
    says why a span of time and not one scrape). The first scrape shows the history as it is:
    runs that failed before the exporter started are not news (and a Prometheus that scraped
    the previous exporter still has the job's earlier samples).
    """

    def __init__(
        self,
        jobs: Iterable[str] = (),
        hold_seconds: float = METRICS_NEW_SERIES_HOLD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._known = set(jobs)
        self._first_scrape_done = False
        self._held: NewSeriesHold[str] = NewSeriesHold(hold_seconds, clock)
        self._lock = threading.Lock()  # prometheus_client may serve two scrapes at once

    def expose(self, counts: Mapping[tuple[str, str], int]) -> dict[tuple[str, str], int]:
        """{(job, status): value to expose} for every known job and status, from `counts`."""
        with self._lock:
            self._held.release()
            found = {job for job, _ in counts}
            if self._first_scrape_done:
                for job in found - self._known:
                    self._held.start(job)
            self._known |= found
            self._first_scrape_done = True
            return {
                (job, status.value): 0 if job in self._held else counts.get((job, status.value), 0)
                for job in sorted(self._known)
                for status in dg.DagsterRunStatus
            }


def collect_runs(instance: dg.DagsterInstance, series: RunCountSeries) -> Iterator[Metric]:
    runs = GaugeMetricFamily(
        "data_platform_runs",
        "Runs the Dagster instance holds, by job and current status (QUEUED, STARTED, FAILURE...); "
        "a job that appears after the exporter started reads 0 for "
        "DATA_PLATFORM_METRICS_NEW_SERIES_HOLD seconds first.",
        labels=["job", "status"],
    )
    # Every status of every job, zeros included: an alert on a rise from 0 needs the 0.
    for (job, status), count in series.expose(run_counts(instance)).items():
        runs.add_metric([job, status], count)
    yield runs
    yield GaugeMetricFamily(
        "data_platform_run_queue_oldest_age_seconds",
        "How long the oldest queued run has waited; 0 when no run is queued.",
        value=oldest_queued_age(instance, time.time()),
    )
