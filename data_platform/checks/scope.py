"""Which partitions a check looks at: the ones its run wrote, or every one when it runs alone.

A check on a partitioned asset runs in the same run as the asset, and Dagster 1.13 hands the
check the run's partition range (`context.partition_key_range`), whether the run targeted one
partition or a single-run backfill over many. Careful: a one-partition run sets only
`has_partition_key`, a range run only `has_partition_key_range`; either means a window. A check
launched on its own (no partition in the run) judges the whole table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import dagster as dg


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
