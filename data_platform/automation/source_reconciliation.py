"""A weekly whole-table extraction of the app tables: every source row compared with its version.

An ordinary extraction compares only the rows its look-back re-reads (an hour below the
high-water mark), so a row changed without a new updated_at fails `unversioned_changes` only
while it is inside that window: past it the check turns green, fixed or not, and nothing
compares the row again. Once a week `source_reconciliation` extracts the four app tables with
`whole_table: true`: every source row is read and compared, the check fails again while any
such row is unfixed, and a version the look-back missed (committed later than the look-back,
with an older updated_at) is appended. A run on a log in step with its source adds nothing.
"""

import dagster as dg

from data_platform.assets.raw import RAW_SOURCE_TABLE_ASSETS

WHOLE_TABLE_RUN_CONFIG = {
    "ops": {asset.op.name: {"config": {"whole_table": True}} for asset in RAW_SOURCE_TABLE_ASSETS}
}

# The Definitions' executor, like the sensor's extraction runs: each step is one transaction
# that needs nothing from the run's process, so in-process and Celery both run it, and a retry
# from the failed step is safe. The config is the job's default too: launched by hand, it
# compares every row as well.
source_reconciliation_job = dg.define_asset_job(
    "source_reconciliation",
    selection=dg.AssetSelection.assets(*RAW_SOURCE_TABLE_ASSETS),
    description="Extract every row of the app tables and compare each with its stored version "
    "(unversioned_changes); appends only versions the logs lack.",
    config=WHOLE_TABLE_RUN_CONFIG,
)


@dg.schedule(
    job=source_reconciliation_job,
    # Sunday, an hour after the daily backup (03:00): the backup's snapshot is not held up
    # behind a scan of every source table in the `duckdb` pool.
    cron_schedule="0 4 * * 0",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Weekly: every app-table row compared with its stored version (whole_table).",
)
def weekly_source_reconciliation(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """On by default (RUNNING), unlike the backup: it needs nothing chosen by a person (it reads
    the source every extraction reads and writes only the warehouse), and without it a row
    changed without a new updated_at is reported for an hour and then never again, a silence
    nobody would notice to switch it on. Its price: once a week it reads every source row
    (a full scan of each app table, in batches) and holds the `duckdb` pool while each table
    is compared, so extraction and dbt runs queue behind it, like behind any extraction. On a
    source too large for that, stop it in the UI and run the job by hand at a quiet time.

    The run config is given here, not only as the job's default, so that each run's page shows
    the mode it ran in."""
    return dg.RunRequest(run_config=WHOLE_TABLE_RUN_CONFIG)
