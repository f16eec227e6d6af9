"""Runs as Prometheus sees them, read from the Dagster instance at each scrape.

Counts come from one GROUP BY on the run storage's table (SQLite or PostgreSQL alike), not
from run records: on a year of history that is a few milliseconds instead of loading every
run. Queued, crashed (FAILURE after a dead worker) and never-started runs are rows like any
other, which is what an exporter outside the runs sees and dagster-prometheus cannot.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC

import dagster as dg
import sqlalchemy as sa
from dagster._core.storage.runs.schema import RunsTable
from prometheus_client.core import GaugeMetricFamily, Metric


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


def collect_runs(instance: dg.DagsterInstance) -> Iterator[Metric]:
    runs = GaugeMetricFamily(
        "data_platform_runs",
        "Runs the Dagster instance holds, by job and current status (QUEUED, STARTED, FAILURE...).",
        labels=["job", "status"],
    )
    counts = run_counts(instance)
    jobs = {job for job, _ in counts}
    # Every status of every job, zeros included: an alert on a rise from 0 needs the 0.
    for job in sorted(jobs):
        for status in dg.DagsterRunStatus:
            runs.add_metric([job, status.value], counts.get((job, status.value), 0))
    yield runs
    yield GaugeMetricFamily(
        "data_platform_run_queue_oldest_age_seconds",
        "How long the oldest queued run has waited; 0 when no run is queued.",
        value=oldest_queued_age(instance, time.time()),
    )
