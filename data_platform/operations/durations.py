"""Run and step durations as Prometheus histograms, fed once by every run that ends.

A histogram's buckets are counters, and Prometheus' `increase()` and `rate()` read a counter's
growth between samples, taking a drop as a restart from 0. So:
- the buckets only grow: each finished run is added once, when first seen, and kept (a window
  of recent runs recomputed at each scrape would shrink as runs leave it);
- they live in the instance's key-value store too (`STATE_KEY`, saved at each scrape that
  counted a run), so a restarted exporter goes on from them: the runs that ended while it was
  down are counted then, and its counters never drop (a drop is a reset to `increase()`,
  which then takes the whole value as new runs: seeding them with the last day's runs at
  each start, as once, counted that day again at every restart). The very first exporter
  counts from its start; a restore clears the state (`forget_counted_durations`), whose
  counters belong to the instance before it;
- a label set (job, status; job, step, status) is exposed at 0 from the scrape that first finds
  it until `hold_seconds` later, and its observations are added after that: a series whose
  first sample is already 1 is no growth to `increase()`, which missed each job's first run
  (series_hold.py says why a span of time and not one scrape).
"""

from __future__ import annotations

import json
import sys
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
# How far before the newest update seen each scrape looks again. A run's update_timestamp is
# its end event's own timestamp, taken before the event is written (the event log first, then
# the run row): a run whose end is stored a few seconds after another run's later end, under
# a busy SQLite or from a host whose clock is a little behind, has an update older than the
# watermark, and a 1 s look-back never found it. `_seen` (kept SEEN_MARGIN) stops a double count.
LATE_WRITE_MARGIN = 300.0
# From a one-second dbt test to a backfill of a year of partitions.
BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
FINISHED = [
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
]


Labels = tuple[str, ...]
# The key-value store's entry holding the histograms and what was counted (see the docstring).
STATE_KEY = "data_platform/metrics/run_durations"
# Label values joined into one JSON key: no job, step or status name holds it.
_JOIN = "\x1f"


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
            self._hold.start(labels)
            self._add(labels, None)
        if labels in self._hold:
            self._held.setdefault(labels, []).append(seconds)
        else:
            self._add(labels, seconds)

    def _add(self, labels: Labels, seconds: float | None) -> None:
        """Count `seconds` under `labels` (None: only make the label set, at 0)."""
        counts = self._buckets.setdefault(labels, [0] * len(BUCKETS))
        self._sums.setdefault(labels, 0.0)
        self._counts.setdefault(labels, 0)
        if seconds is None:
            return
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                counts[i] += 1
        self._sums[labels] += seconds
        self._counts[labels] += 1

    def release_held(self) -> None:
        """Add what the label sets whose hold ended by now have held."""
        for labels in self._hold.release():
            for seconds in self._held.pop(labels, []):
                self._add(labels, seconds)

    def state(self) -> dict[str, list[float]]:
        """Every label set's buckets, sum and count, what it still holds added: restored by
        an exporter that starts later, they are exposed at once (they read 0 before)."""
        folded = _Histogram(NewSeriesHold(0.0))
        folded.restore(self._saved())
        for labels, held in self._held.items():
            for seconds in held:
                folded._add(labels, seconds)
        return folded._saved()

    def _saved(self) -> dict[str, list[float]]:
        return {
            _JOIN.join(labels): [*counts, self._sums[labels], self._counts[labels]]
            for labels, counts in self._buckets.items()
        }

    def restore(self, state: dict[str, list[float]]) -> None:
        """Take `state()`'s counts (of an earlier exporter) as this one's."""
        for key, values in state.items():
            labels = tuple(key.split(_JOIN))
            *counts, total, count = values
            self._buckets[labels] = [int(n) for n in counts]
            self._sums[labels], self._counts[labels] = float(total), int(count)

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
        late_write_margin: float = LATE_WRITE_MARGIN,
    ) -> None:
        """`now`: when the exporter started (default: now); runs that ended before are not
        counted, unless an earlier exporter's state says where it stopped (read at the first
        collect). `hold_seconds`: how long a new label set reads 0; `clock` times it."""
        since = now if now is not None else time.time()
        self._ended_after = since
        self._updated_after = datetime.fromtimestamp(since, UTC)
        # The runs counted lately, by end time: an exporter's life of run ids would grow without
        # bound; older ones are told apart by `seen_margin` alone.
        self._seen: dict[str, float] = {}
        self._seen_margin = seen_margin
        self._late_write_margin = min(late_write_margin, seen_margin)
        self._runs = _Histogram(NewSeriesHold(hold_seconds, clock))
        self._steps = _Histogram(NewSeriesHold(hold_seconds, clock))
        # prometheus_client may serve two scrapes at once.
        self._lock = threading.Lock()
        self._loaded = False

    def _load(self, instance: dg.DagsterInstance) -> None:
        """Go on from the state an earlier exporter saved, if any."""
        saved = instance.run_storage.get_cursor_values({STATE_KEY}).get(STATE_KEY)
        if not saved:
            return
        try:
            state = json.loads(saved)
            updated_after = datetime.fromisoformat(state["updated_after"])
            runs, steps = _Histogram(self._runs._hold), _Histogram(self._steps._hold)
            runs.restore(state["runs"])
            steps.restore(state["steps"])
            ended_after, seen = float(state["ended_after"]), dict(state["seen"])
        except (ValueError, KeyError, TypeError) as error:
            print(
                f"data-platform metrics: the saved run and step durations ({STATE_KEY} in the "
                f"instance) are unreadable ({error!r}): counting from now",
                file=sys.stderr,
            )
            return
        self._ended_after, self._updated_after, self._seen = ended_after, updated_after, seen
        self._runs, self._steps = runs, steps

    def _save(self, instance: dg.DagsterInstance) -> None:
        state = {
            "ended_after": self._ended_after,
            "updated_after": self._updated_after.isoformat(),
            "seen": self._seen,
            "runs": self._runs.state(),
            "steps": self._steps.state(),
        }
        instance.run_storage.set_cursor_values({STATE_KEY: json.dumps(state)})

    def _update(self, instance: dg.DagsterInstance) -> None:
        records = instance.get_run_records(
            filters=dg.RunsFilter(
                statuses=FINISHED,
                updated_after=self._updated_after - timedelta(seconds=self._late_write_margin),
            ),
            order_by="update_timestamp",
            ascending=True,
        )
        horizon = self._updated_after.timestamp() - self._seen_margin
        counted = False
        for record in records:
            run = record.dagster_run
            # Tags added to an old run (a retry's) update it again: count each run once.
            if run.run_id in self._seen or not record.start_time or not record.end_time:
                continue
            if record.end_time < max(self._ended_after, horizon):
                continue
            self._seen[run.run_id] = record.end_time
            counted = True
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
        if counted:
            self._save(instance)

    def collect(self, instance: dg.DagsterInstance) -> Iterator[Metric]:
        with self._lock:
            if not self._loaded:
                self._load(instance)
                self._loaded = True
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


def forget_counted_durations(instance: dg.DagsterInstance) -> None:
    """Clear the saved durations (a restored instance's): they count the runs of the instance
    as it was at the backup, and an exporter going on from them would show its counters
    dropping, a reset that `increase()` takes as that many new runs."""
    instance.run_storage.set_cursor_values({STATE_KEY: ""})
