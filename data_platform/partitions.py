"""The daily partitioning shared by every file-fed and incremental asset."""

from __future__ import annotations

import dagster as dg

from data_platform.settings import load_settings

# end_offset=1: today's dt folder is a partition too, so files arriving today load today.
DAILY_PARTITIONS = dg.DailyPartitionsDefinition(
    start_date=load_settings().start_date.isoformat(), end_offset=1
)

# A backfill over any range is one run that handles the whole window in one set-based pass.
SINGLE_RUN_BACKFILL = dg.BackfillPolicy.single_run()

# DuckDB allows one writer per file; every step that writes the warehouse joins this pool,
# whose limit dagster.yaml sets to 1, so runs queue instead of failing on the file lock.
WAREHOUSE_POOL = "duckdb"

OWNERS = ["team:data-platform"]
