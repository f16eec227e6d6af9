"""Row-count anomaly: a partition's rows against its trailing partitions, robust z-score. WARN.

A day with a tenth of the usual events (a collector down) or twice as many (files re-sent)
loads without breaking any rule; only its size gives it away. The baseline is the same weekday
of the preceding `anomaly_window` weeks once `anomaly_min_history` of them hold rows (traffic
has a weekly cycle: against the week's other days, every weekend warned), until then the
preceding `anomaly_window` partitions that hold rows; scored with median and MAD so that one
past incident in the baseline does not hide the next.

Which days. A run judges the complete days of its window. Files are filed under the day they
arrive (UTC), so the landing sensor's runs ask for today, which is still filling up and not
judged; after midnight nothing lands in yesterday's folder, and a day without files starts no
run. So a run whose window reaches today also judges yesterday (every such run: its WARN stays
in view for the day), and each earlier day of the last LOOKBACK_DAYS that no execution of this
check judged yet (read from the instance: the `days_judged` of its executions): a day nothing
landed in is judged too, as 0 rows, the worst anomaly. `days_judged` says which days were.

Yesterday is judged before it may be settled. By the contract a late upload (a mobile client's
buffered events) lands in the folder of the day it arrives, as the simulator's do, and leaves
yesterday alone; but a producer that re-delivers, or files its late uploads under their events'
day, still adds to a folder days later, while every baseline day has had its late files by then.
Against settled counts, a day judged as yesterday then always read low, by exactly the late
share (-2.8 robust z every day at 20,000 events and 2 % late; every day a WARN from about
32,000 a day). So yesterday is compared with its baseline days as they stood when each was
yesterday, which every execution that judges yesterday records (`rows_as_yesterday`); a
baseline day judged before that record existed counts as it stands now.

Past weeks stand weeks behind: a same-weekday baseline day is scaled by how much the source's
level (the median of the week before a day) moved between it and the judged day
(`at_level_of`), so a source that grows, or grew once, is judged at its current size.
"""

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import dagster as dg
from dagster._core.storage.asset_check_execution_record import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
)

from data_platform.checks.history import check_history
from data_platform.checks.report import day_list, days_described, markdown_table
from data_platform.checks.rules import robust_z
from data_platform.checks.scope import Window, run_window
from data_platform.checks.thresholds import QualityThresholds
from data_platform.partitions import WAREHOUSE_POOL
from data_platform.resources.warehouse import Warehouse
from data_platform.resources.warehouse_reader import WarehouseReader

# Complete days before today that a run of today judges when no earlier execution has.
LOOKBACK_DAYS = 7


def today() -> date:
    """The UTC day now: files arriving today are filed under it (tests pin it)."""
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class Score:
    dt: date
    rows: int
    baseline_median: float | None
    z: float | None  # None: not enough history yet


def score_partitions(
    counts: dict[date, int],
    days: list[date],
    window: int,
    min_history: int,
    unsettled: date | None = None,
    as_yesterday: Mapping[date, int] | None = None,
) -> list[Score]:
    """Score each of `days` (0 rows when absent) against its baseline days (`baseline_days`).

    `unsettled` (yesterday, when the run reaches today) is scored against its baseline days'
    counts of when each was yesterday (`as_yesterday`), where recorded: like with like.
    """
    scores = []
    for day in days:
        seen = counts | dict(as_yesterday or {}) if day == unsettled else counts
        chosen = baseline_days(seen, day, window, min_history)
        if chosen and all(d.weekday() == day.weekday() for d in chosen):
            baseline = [at_level_of(seen[d], d, day, counts, min_history) for d in chosen]
        else:
            baseline = [float(seen[d]) for d in chosen]
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


def level(counts: dict[date, int], day: date, min_history: int) -> float | None:
    """The source's size just before `day`: the median of the 7 days before it that hold rows
    (a whole week, so the same for every weekday of a weekly cycle); None with fewer than
    `min_history` of them."""
    week = [n for d, n in counts.items() if 1 <= (day - d).days <= 7 and n > 0]
    return float(statistics.median(week)) if len(week) >= min_history else None


def at_level_of(
    rows: int, then: date, now: date, counts: dict[date, int], min_history: int
) -> float:
    """`rows` of the day `then`, scaled by how much the source's level grew (or shrank) from
    `then` to `now`, where both levels are known.

    The same weekday of past weeks removes the weekly cycle but reaches back up to
    `anomaly_window` weeks: a source that grows (the simulator's payments, +40 % in seven weeks)
    or changed size once (a new market) stood weeks behind its baseline's median, and a
    normal day read as a spike (robust z +3.7 on a Friday +8 % on the week before it). The
    day's weekday factor comes from the past weeks, its level from the week before it.
    """
    before, current = level(counts, then, min_history), level(counts, now, min_history)
    return rows * current / before if before and current else float(rows)


def baseline_days(counts: dict[date, int], day: date, window: int, min_history: int) -> list[date]:
    """The non-empty days before `day` it is compared with: the same weekday of the last
    `window` weeks when at least `min_history` of them hold rows, else the last `window`."""
    past = sorted(d for d, n in counts.items() if d < day and n > 0)
    same_weekday = [d for d in past if d.weekday() == day.weekday()][-window:]
    return same_weekday if len(same_weekday) >= min_history else past[-window:]


def days_of(window: Window, counts: dict[date, int]) -> list[date]:
    """Every calendar day of the window: a day with no rows at all is the worst anomaly."""
    return Window(
        window.first or min(counts, default=None), window.last or max(counts, default=None)
    ).days()


def days_to_judge(
    window: Window, now: date, judged_before: set[date], lookback_days: int = LOOKBACK_DAYS
) -> list[date]:
    """The complete days of a bounded `window`, and, when it reaches `now` (today), yesterday
    and the days of the `lookback_days` before today that are not in `judged_before`."""
    assert window.first is not None and window.last is not None
    days = set(days_of(window, {}))
    if window.last >= now:
        behind = {now - timedelta(days=n) for n in range(2, lookback_days + 1)}
        days |= {now - timedelta(days=1)} | (behind - judged_before)
    return sorted(day for day in days if day < now)


def judged_days(instance: dg.DagsterInstance, key: dg.AssetCheckKey, since: date) -> set[date]:
    """The days this check's executions created since `since` (UTC midnight) judged, page by
    page: their `days_judged`."""
    start = datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp()
    days: set[date] = set()
    for record in check_history(instance, key, start):
        if record.status not in COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES:
            continue
        evaluation = record.evaluation
        judged = evaluation.metadata.get("days_judged") if evaluation else None
        if judged is not None:
            days |= {date.fromisoformat(day) for day in judged.value}
    return days


def counts_as_yesterday(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, since: date
) -> dict[date, int]:
    """Each day's rows as the last execution that judged it as yesterday saw them, from this
    check's executions since `since` (their `rows_as_yesterday`)."""
    start = datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp()
    counts: dict[date, int] = {}
    for record in check_history(instance, key, start):  # newest first: the first one wins
        if record.status not in COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES:
            continue
        evaluation = record.evaluation
        seen = evaluation.metadata.get("rows_as_yesterday") if evaluation else None
        for day, rows in (seen.value if seen is not None else {}).items():
            counts.setdefault(date.fromisoformat(day), int(rows))
    return counts


def row_counts(
    reader: WarehouseReader, table: str, window: Window, lookback: int
) -> dict[date, int]:
    # `lookback` weeks: the same weekdays of a weekly baseline (and room for empty days), and
    # one more: the week before the oldest of them, its level (`at_level_of`).
    first = window.first - timedelta(weeks=lookback + 1) if window.first else None
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
        f"weeks exist): WARN beyond a robust z-score of {t.anomaly_z_score}. A run reaching "
        "today judges yesterday and the recent days no run judged yet, not today.",
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: Warehouse):
        import pandas as pd

        window = run_window(context)
        # Today's partition fills up through the day (a file every few hours): not judged yet.
        now = today()
        yesterday = now - timedelta(days=1)
        unsettled: date | None = None
        as_yesterday: dict[date, int] = {}
        if window.first is None:  # the whole table
            with warehouse.reader() as reader:
                counts = row_counts(reader, f"raw.{source}", window, t.anomaly_window)
            days = [day for day in days_of(window, counts) if day < now]
        else:
            judged: set[date] = set()
            if window.last is not None and window.last >= now:
                key = context.check_specs[0].key
                judged = judged_days(context.instance, key, now - timedelta(days=LOOKBACK_DAYS))
                # The baseline reaches back `anomaly_window` weeks before yesterday.
                since = yesterday - timedelta(weeks=t.anomaly_window, days=1)
                as_yesterday = counts_as_yesterday(context.instance, key, since)
                unsettled = yesterday
            days = days_to_judge(window, now, judged)
            counts = {}
            if days:
                with warehouse.reader() as reader:
                    counts = row_counts(
                        reader, f"raw.{source}", Window(days[0], days[-1]), t.anomaly_window
                    )
        scores = score_partitions(
            counts, days, t.anomaly_window, t.anomaly_min_history, unsettled, as_yesterday
        )
        flagged = [s for s in scores if s.z is not None and abs(s.z) > t.anomaly_z_score]
        table = pd.DataFrame(
            [
                (
                    s.dt,
                    s.rows,
                    # Scaled to the current level (`at_level_of`): a fraction of a row is noise.
                    None if s.baseline_median is None else round(s.baseline_median, 1),
                    "" if s.z is None else f"{s.z:.2f}",
                )
                for s in scores
            ],
            columns=["dt", "rows", "baseline median", "robust z"],
        )
        return dg.AssetCheckResult(
            passed=not flagged,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "partitions": window.describe(),
                "days_judged": day_list(days),
                "partitions_flagged": day_list(s.dt for s in flagged),
                "partitions_without_baseline": sum(s.z is None for s in scores),
                # What later runs compare their yesterday's baseline days with.
                **(
                    {
                        "rows_as_yesterday": dg.MetadataValue.json(
                            {str(unsettled): counts.get(unsettled, 0)}
                        )
                    }
                    if unsettled is not None
                    else {}
                ),
                "per_dt": dg.MetadataValue.md(markdown_table(table)),
            },
            description="far from the day's usual size: "
            + days_described(
                f"{s.dt}: {s.rows:,} rows against a median of {s.baseline_median:,.0f} "
                f"(robust z {s.z:.1f})"
                for s in flagged
            )
            if flagged
            else None,
        )

    return _check
