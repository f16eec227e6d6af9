"""Headless materialization of a selection over a date range, on the configured instance.

The whole window goes into one run (partition-range tags), which the single-run backfill
policies turn into one set-based pass per asset instead of one run per day.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from datetime import date

import dagster as dg

from data_platform.partitions import DAILY_PARTITIONS, RANGE_END_TAG, RANGE_START_TAG


def partition_window(start: date | None, end: date | None) -> list[str]:
    """The daily partition keys from start to end inclusive (defaults: all existing ones)."""
    keys = DAILY_PARTITIONS.get_partition_keys()
    lo = start.isoformat() if start else keys[0]
    hi = end.isoformat() if end else keys[-1]
    if lo > hi:
        raise ValueError(f"--start {lo} is after --end {hi}")
    return [k for k in keys if lo <= k <= hi]


def range_tags(keys: list[str]) -> dict[str, str]:
    if not keys:
        return {}
    return {RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[-1]}


def summarize(result: dg.ExecuteInProcessResult) -> tuple[Counter, list[str]]:
    """Materializations per asset key, and one line per failed step."""
    materialized = Counter(
        e.asset_key.to_user_string() for e in result.get_asset_materialization_events()
    )
    failures = [
        f"{e.step_key}: {e.step_failure_data.error.message.strip() if e.step_failure_data.error else 'failed'}"
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    return materialized, failures


def materialize_range(select: str, start: date | None, end: date | None) -> int:
    from data_platform.definitions import defs

    keys = partition_window(start, end)
    selection = dg.AssetSelection.from_string(select)
    print(f"materializing {select!r} for {keys[0]}..{keys[-1]} ({len(keys)} days)", file=sys.stderr)
    began = time.monotonic()
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            assets=[*defs.assets, *(defs.asset_checks or [])],
            selection=selection,
            resources=defs.resources,
            instance=instance,
            tags=range_tags(keys),
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        )
    materialized, failures = summarize(result)
    print(f"\nrun {result.run_id} in {time.monotonic() - began:.1f}s", file=sys.stderr)
    for key, count in sorted(materialized.items()):
        print(
            f"  materialized {key}: {count} partition(s)" if count > 1 else f"  materialized {key}"
        )
    for line in failures:
        print(f"  FAILED {line}")
    print("success" if result.success else "FAILED: see the run in the UI for details")
    return 0 if result.success else 1
