"""Which partitions a check looks at: the ones its run wrote, or every one when it runs alone.

A check on a partitioned asset runs in the same run as the asset, and Dagster 1.13 hands the
check the run's partition range (`context.partition_key_range`), whether the run targeted one
partition or a single-run backfill over many. Careful: a one-partition run sets only
`has_partition_key`, a range run only `has_partition_key_range`; either means a window. A check
launched on its own (no partition in the run) judges the whole table.

A check partitioned by day (an AssetCheckSpec with partitions_def) records one verdict per day
of the window instead (`run_days`, `day_verdicts`), each about that day's latest
materialization: Dagster's AssetCheckResult can only carry the run's partition, and a range run
has none (every day of it read SKIPPED).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg

# Neither is exported by `dagster`: they are what AssetCheckResult itself uses to say which
# materialization a verdict is about.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData as Target,
)
from dagster._core.events import DagsterEventType


@dataclass(frozen=True)
class Window:
    """Inclusive range of dt partitions; None bounds mean the whole table."""

    first: date | None = None
    last: date | None = None

    def where(self, column: str = "dt") -> tuple[str, list[date]]:
        """A SQL predicate (and its parameters) selecting the window's rows."""
        if self.first is None or self.last is None:
            return "TRUE", []
        return f"{column} BETWEEN ? AND ?", [self.first, self.last]

    def days(self) -> list[date]:
        """Every calendar day of the window, first to last; none when it is unbounded."""
        if self.first is None or self.last is None:
            return []
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    def contains(self, day: date) -> bool:
        return self.first is None or self.last is None or self.first <= day <= self.last

    def describe(self) -> str:
        if self.first is None:
            return "all partitions"
        return str(self.first) if self.first == self.last else f"{self.first}..{self.last}"


WHOLE_TABLE = Window()


def run_window(context: dg.AssetCheckExecutionContext) -> Window:
    if not (context.has_partition_key or context.has_partition_key_range):
        return WHOLE_TABLE
    keys = context.partition_key_range
    return Window(date.fromisoformat(keys.start), date.fromisoformat(keys.end))


def run_start(context: dg.AssetCheckExecutionContext) -> datetime | None:
    """When the check's run started (naive UTC), before its ingestion listed any file."""
    record = context.instance.get_run_record_by_id(context.run.run_id)
    started = record and (record.start_time or record.create_timestamp.timestamp())
    return datetime.fromtimestamp(started, UTC).replace(tzinfo=None) if started else None


def run_days(window: Window, days_with_data: Iterable[date]) -> list[date]:
    """The days a check partitioned by day gives a verdict on: every day of the run, those
    without a record included (a day emptied by a re-run passes again, instead of keeping an
    old failure); with no partition in the run (the check launched alone), the days with data."""
    return window.days() or sorted(set(days_with_data))


def latest_materializations(
    instance: dg.DagsterInstance, asset: dg.AssetKey, days: list[date]
) -> dict[date, Target | None]:
    """Each day's latest materialization of `asset`, which its verdict is about.

    Dagster keeps a partition's check status only while it targets the partition's latest
    materialization (a newer one clears it), so a verdict without its target was dropped. Two
    queries for the whole range: a year's backfill asks no more than a day's run."""
    keys = {day.isoformat() for day in days}
    latest = instance.get_latest_storage_id_by_partition(
        asset, DagsterEventType.ASSET_MATERIALIZATION, keys
    )
    records = (
        instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset, storage_ids=list(latest.values())),
            limit=len(latest),
        ).records
        if latest
        else []
    )
    by_partition = {record.partition_key: record for record in records}
    return {
        day: (
            Target(
                storage_id=record.storage_id,
                run_id=record.run_id,
                timestamp=record.timestamp,
            )
            if (record := by_partition.get(day.isoformat()))
            else None
        )
        for day in days
    }


@dataclass(frozen=True)
class DayVerdict:
    """A check's verdict on one day, as `day_verdicts` records it."""

    passed: bool
    metadata: Mapping[str, Any] = field(default_factory=dict)
    description: str | None = None


def day_verdicts(
    context: dg.AssetCheckExecutionContext,
    key: dg.AssetCheckKey,
    verdicts: Mapping[date, DayVerdict],
) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
    """What a check partitioned by day yields: an ERROR-severity evaluation per day (blocking
    as the check's spec is, so a failed day still fails the step, and with it the range), each
    about its day's latest materialization, then the check's output.

    The output is yielded by hand: evaluations do not stand for it, and the step requires it."""
    assets_def = context.op_execution_context.assets_def
    blocking = assets_def.get_spec_for_check_key(key).blocking
    targets = latest_materializations(context.instance, key.asset_key, list(verdicts))
    for day, verdict in verdicts.items():
        yield dg.AssetCheckEvaluation(
            asset_key=key.asset_key,
            check_name=key.name,
            passed=verdict.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            blocking=blocking,
            partition=day.isoformat(),
            target_materialization_data=targets[day],
            metadata=verdict.metadata,
            description=verdict.description,
        )
    yield dg.Output(None, output_name=assets_def.get_output_name_for_asset_check_key(key))
