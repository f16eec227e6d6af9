"""Run and step durations as Prometheus histograms, fed once by every run that ends.

A histogram's buckets are counters, and Prometheus' `increase()` and `rate()` read a counter's
growth between samples, taking a drop as a restart from 0. So:
- the buckets only grow: each finished run is added once, when first seen, and kept (a window
  of recent runs recomputed at each scrape would shrink as runs leave it);
- they start empty at the exporter's start and count only runs that end after it. Seeding
  them with the runs of the last day, as before, made every restart count those runs again:
  the drop to the seed is a reset, so `increase()` took the whole seed as new runs;
- a label set (job, status; job, step, status) is exposed at 0 from the scrape that first finds
  it until `hold_seconds` later, and its observations are added after that: a series whose
  first sample is already 1 is no growth to `increase()`, which missed each job's first run
  (series_hold.py says why a span of time and not one scrape).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
from prometheus_client.core import HistogramMetricFamily, Metric

from data_platform.operations.series_hold import NewSeriesHold
from data_platform.settings import METRICS_NEW_SERIES_HOLD

# A run is first seen finished within seconds of its end (its end updates it); one that ended
# this long before the previous scrape's watermark is an old run updated again (a tag added),
# already counted or ended before the exporter. An hour covers any clock skew between hosts.
SEEN_MARGIN = 3600.0
# From a one-second dbt test to a backfill of a year of partitions.
BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
FINISHED = [
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
]


Labels = tuple[str, ...]


class _Histogram:
    """Cumulative bucket counts and sums per label set, kept as counters (never recomputed)."""

    def __init__(self, hold: NewSeriesHold[Labels]) -> None:
        self._buckets: dict[Labels, list[int]] = {}
        self._sums: dict[Labels, float] = {}
        self._counts: dict[Labels, int] = {}
        # Label sets still exposed at 0, and their observations, added when the hold ends.
        self._hold = hold
        self._held: dict[Labels, list[float]] = {}

    def observe(self, labels: Labels, seconds: float) -> None:
        if labels not in self._buckets:
            self._buckets[labels] = [0] * len(BUCKETS)
            self._sums[labels], self._counts[labels] = 0.0, 0
            self._hold.start(labels)
        if labels in self._hold:
            self._held.setdefault(labels, []).append(seconds)
            return
        counts = self._buckets[labels]
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                counts[i] += 1
        self._sums[labels] += seconds
        self._counts[labels] += 1

    def release_held(self) -> None:
        """Add what the label sets whose hold ended by now have held."""
        for labels in self._hold.release():
            for seconds in self._held.pop(labels, []):
                self.observe(labels, seconds)

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

    def __init__(
        self,
        now: float | None = None,
        hold_seconds: float = METRICS_NEW_SERIES_HOLD,
        clock: Callable[[], float] = time.monotonic,
        seen_margin: float = SEEN_MARGIN,
    ) -> None:
        """`now`: when the exporter started (default: now); runs that ended before are not
        counted. `hold_seconds`: how long a new label set reads 0; `clock` times it."""
        since = now if now is not None else time.time()
        self._ended_after = since
        self._updated_after = datetime.fromtimestamp(since, UTC)
        # The runs counted lately, by end time: an exporter's life of run ids would grow without
        # bound; older ones are told apart by `seen_margin` alone.
        self._seen: dict[str, float] = {}
        self._seen_margin = seen_margin
        self._runs = _Histogram(NewSeriesHold(hold_seconds, clock))
        self._steps = _Histogram(NewSeriesHold(hold_seconds, clock))
        # prometheus_client may serve two scrapes at once.
        self._lock = threading.Lock()

    def _update(self, instance: dg.DagsterInstance) -> None:
        records = instance.get_run_records(
            filters=dg.RunsFilter(statuses=FINISHED, updated_after=self._updated_after),
            order_by="update_timestamp",
            ascending=True,
        )
        horizon = self._updated_after.timestamp() - self._seen_margin
        for record in records:
            run = record.dagster_run
            # Tags added to an old run (a retry's) update it again: count each run once.
            if run.run_id in self._seen or not record.start_time or not record.end_time:
                continue
            if record.end_time < max(self._ended_after, horizon):
                continue
            self._seen[run.run_id] = record.end_time
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
            horizon = self._updated_after.timestamp() - self._seen_margin
            self._seen = {run_id: end for run_id, end in self._seen.items() if end >= horizon}

    def collect(self, instance: dg.DagsterInstance) -> Iterator[Metric]:
        with self._lock:
            self._runs.release_held()
            self._steps.release_held()
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
