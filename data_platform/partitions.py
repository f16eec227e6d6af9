"""The daily partitioning shared by every file-fed and incremental asset."""

from __future__ import annotations

import warnings

import dagster as dg

from data_platform.settings import load_settings

# end_offset=1: today's dt folder is a partition too, so files arriving today load today.
DAILY_PARTITIONS = dg.DailyPartitionsDefinition(
    start_date=load_settings().start_date.isoformat(), end_offset=1
)

# A backfill over any range is one run that handles the whole window in one set-based pass.
SINGLE_RUN_BACKFILL = dg.BackfillPolicy.single_run()
# Beta by choice: Dagster's BetaWarning for each asset defined with it came before every entry
# point's own output (the CLI, the metrics exporter, Celery workers, dagster dev). Only it is
# silenced, here, where every asset module takes the policy from.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
# Likewise for the daily partitions of the blocking checks that judge each day on its own
# (conservation, dead_letter_ratio, the Pandera gates of the raw files and the partitioned
# facts): a preview API, chosen for the verdict per day it keeps.
warnings.filterwarnings(
    "ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning
)
# The tags that make one run cover a range of partitions (what a single-run backfill sets).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
RANGE_TAGS = (RANGE_START_TAG, RANGE_END_TAG)

# DuckDB allows one writer per file; every step that writes the warehouse joins this pool,
# whose limit dagster.yaml sets to 1, so runs queue instead of failing on the file lock.
WAREHOUSE_POOL = "duckdb"

OWNERS = ["team:data-platform"]
