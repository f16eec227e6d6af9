"""A check's past executions from the Dagster instance, read page by page.

The storage returns a page of records newest first, and its cursor is a record id: one page
(500 records) undercounted a check that sensor-driven runs executed more often than that in the
window, silently. The scorecard counts these records; row_count_anomaly reads which days its
past executions judged.
"""

from collections.abc import Iterator

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecord

# Check records read per query.
PAGE = 500


def check_history(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, since: float
) -> Iterator[AssetCheckExecutionRecord]:
    """`key`'s check records created since `since` (epoch seconds), newest first, until a page
    reaches back before `since`."""
    cursor = None
    while True:
        page = instance.event_log_storage.get_asset_check_execution_history(
            key, limit=PAGE, cursor=cursor
        )
        yield from (record for record in page if record.create_timestamp >= since)
        if len(page) < PAGE or page[-1].create_timestamp < since:
            return
        cursor = page[-1].id
