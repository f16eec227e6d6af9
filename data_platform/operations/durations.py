"""Run and step durations as Prometheus histograms, fed once by every run that ends.

A histogram's buckets are counters: they must only grow. So the exporter does not recompute a
window of recent runs at each scrape (runs leaving the window would make the buckets shrink);
it adds each finished run once, when it first sees it, and keeps the buckets. At start it
seeds them with the runs that ended in the last day (`SEED_WINDOW`): step durations live in
each run's own event log (a file per run on SQLite), so reading a year of them would make the
first scrape slow, while a day is enough for the quantiles an on-call engineer looks at.
A restart of the exporter is a counter reset, which `rate()` and `increase()` handle.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
from prometheus_client.core import HistogramMetricFamily, Metric

SEED_WINDOW = timedelta(days=1)
# From a one-second dbt test to a backfill of a year of partitions.
BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
FINISHED = [
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
]


class _Histogram:
    """Cumulative bucket counts and sums per label set, kept as counters (never recomputed)."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0] * len(BUCKETS))
        self._sums: dict[tuple[str, ...], float] = defaultdict(float)
        self._counts: dict[tuple[str, ...], int] = defaultdict(int)

    def observe(self, labels: tuple[str, ...], seconds: float) -> None:
        counts = self._buckets[labels]
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                counts[i] += 1
        self._sums[labels] += seconds
        self._counts[labels] += 1

    def metric(self, name: str, doc: str, label_names: list[str]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, doc, labels=label_names)
        for labels, counts in sorted(self._buckets.items()):
            buckets = [(str(b), n) for b, n in zip(BUCKETS, counts, strict=True)]
            family.add_metric(
                list(labels),
                [*buckets, ("+Inf", self._counts[labels])],
                sum_value=self._sums[labels],
            )
        return family


class RunDurations:
    """Feeds the run and step histograms with the runs that ended since the last scrape."""

    def __init__(self, now: float | None = None) -> None:
        since = (now if now is not None else time.time()) - SEED_WINDOW.total_seconds()
        self._ended_after = since
        self._updated_after = datetime.fromtimestamp(since, UTC)
        self._seen: set[str] = set()
        self._runs = _Histogram()
        self._steps = _Histogram()
        # prometheus_client may serve two scrapes at once.
        self._lock = threading.Lock()

    def _update(self, instance: dg.DagsterInstance) -> None:
        records = instance.get_run_records(
            filters=dg.RunsFilter(statuses=FINISHED, updated_after=self._updated_after),
            order_by="update_timestamp",
            ascending=True,
        )
        for record in records:
            run = record.dagster_run
            # Tags added to an old run (a retry's) update it again: count each run once.
            if run.run_id in self._seen or not record.start_time or not record.end_time:
                continue
            self._seen.add(run.run_id)
            if record.end_time < self._ended_after:
                continue
            status = run.status.value
            self._runs.observe((run.job_name, status), record.end_time - record.start_time)
            for step in instance.get_run_step_stats(run.run_id):
                if step.start_time and step.end_time and step.status:
                    self._steps.observe(
                        (run.job_name, step.step_key, step.status.value),
                        step.end_time - step.start_time,
                    )
        if records:
            # Naive UTC, as the storage keeps it. A second back: a run updated within the same
            # second as the last one seen is not missed (`_seen` stops a double count).
            latest = records[-1].update_timestamp.replace(tzinfo=UTC)
            self._updated_after = max(self._updated_after, latest - timedelta(seconds=1))

    def collect(self, instance: dg.DagsterInstance) -> Iterator[Metric]:
        with self._lock:
            self._update(instance)
            yield self._runs.metric(
                "data_platform_run_duration_seconds",
                "Wall time of finished runs, from start to end, by job and final status.",
                ["job", "status"],
            )
            yield self._steps.metric(
                "data_platform_step_duration_seconds",
                "Wall time of the steps of finished runs, by job, step and outcome.",
                ["job", "step", "status"],
            )
