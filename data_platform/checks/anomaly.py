"""Row-count anomaly: a partition's rows against its trailing partitions, robust z-score. WARN.

A day with a tenth of the usual events (a collector down) or twice as many (files re-sent)
loads without breaking any rule; only its size gives it away. The baseline is the same weekday
of the preceding `anomaly_window` weeks once `anomaly_min_history` of them hold rows (traffic
has a weekly cycle: against the week's other days, every weekend warned), until then the
preceding `anomaly_window` partitions that hold rows; scored with median and MAD so that one
past incident in the baseline does not hide the next.
"""

import math
import statistics
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from data_platform.checks.report import day_list, markdown_table
from data_platform.checks.rules import robust_z
from data_platform.checks.scope import Window, run_window
from data_platform.checks.thresholds import QualityThresholds
from data_platform.partitions import WAREHOUSE_POOL
from data_platform.resources.warehouse import Warehouse
from data_platform.resources.warehouse_reader import WarehouseReader


@dataclass(frozen=True)
class Score:
    dt: date
    rows: int
    baseline_median: float | None
    z: float | None  # None: not enough history yet


def score_partitions(
    counts: dict[date, int], days: list[date], window: int, min_history: int
) -> list[Score]:
    """Score each of `days` (0 rows when absent) against its baseline days (`baseline_days`)."""
    scores = []
    for day in days:
        baseline = [counts[d] for d in baseline_days(counts, day, window, min_history)]
        rows = counts.get(day, 0)
        if len(baseline) < min_history:
            scores.append(Score(day, rows, None, None))
            continue
        median = statistics.median(baseline)
        # Row counts are counts: even a perfectly steady source varies by about sqrt(n)
        # (Poisson), so that is the least spread a baseline is credited with.
        z = robust_z(rows, baseline, min_scale=math.sqrt(median))
        scores.append(Score(day, rows, float(median), z))
    return scores


def baseline_days(counts: dict[date, int], day: date, window: int, min_history: int) -> list[date]:
    """The non-empty days before `day` it is compared with: the same weekday of the last
    `window` weeks when at least `min_history` of them hold rows, else the last `window`."""
    past = sorted(d for d, n in counts.items() if d < day and n > 0)
    same_weekday = [d for d in past if d.weekday() == day.weekday()][-window:]
    return same_weekday if len(same_weekday) >= min_history else past[-window:]


def days_of(window: Window, counts: dict[date, int]) -> list[date]:
    """Every calendar day of the window: a day with no rows at all is the worst anomaly."""
    first = window.first or min(counts, default=None)
    last = window.last or max(counts, default=None)
    if first is None or last is None:
        return []
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def row_counts(
    reader: WarehouseReader, table: str, window: Window, lookback: int
) -> dict[date, int]:
    # `lookback` weeks: the same weekdays of a weekly baseline (and room for empty days).
    first = window.first - timedelta(weeks=lookback) if window.first else None
    predicate, params = Window(first, window.last).where("dt")
    rows = reader.frame(
        f"SELECT dt, count(*) AS n FROM {table} WHERE {predicate} GROUP BY dt", params
    )
    return {dt.date(): int(n) for dt, n in rows.itertuples(index=False)}


def row_count_anomaly_check(source: str, t: QualityThresholds) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(["raw", source]),
        name="row_count_anomaly",
        pool=WAREHOUSE_POOL,
        description=f"Rows per partition vs the same weekday of the {t.anomaly_window} previous "
        f"weeks (the {t.anomaly_window} previous partitions until {t.anomaly_min_history} such "
        f"weeks exist): WARN beyond a robust z-score of {t.anomaly_z_score}.",
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: Warehouse):
        import pandas as pd

        window = run_window(context)
        with warehouse.reader() as reader:
            counts = row_counts(reader, f"raw.{source}", window, t.anomaly_window)
        # Today's partition fills up through the day (a file every few hours): not judged yet.
        today = datetime.now(UTC).date()
        days = [day for day in days_of(window, counts) if day < today]
        scores = score_partitions(counts, days, t.anomaly_window, t.anomaly_min_history)
        flagged = [s for s in scores if s.z is not None and abs(s.z) > t.anomaly_z_score]
        table = pd.DataFrame(
            [
                (s.dt, s.rows, s.baseline_median, "" if s.z is None else f"{s.z:.2f}")
                for s in scores
            ],
            columns=["dt", "rows", "baseline median", "robust z"],
        )
        return dg.AssetCheckResult(
            passed=not flagged,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "partitions": window.describe(),
                "partitions_flagged": day_list(s.dt for s in flagged),
                "partitions_without_baseline": sum(s.z is None for s in scores),
                "per_dt": dg.MetadataValue.md(markdown_table(table)),
            },
            description=f"{len(flagged)} partition(s) far from their usual size"
            if flagged
            else None,
        )

    return _check
