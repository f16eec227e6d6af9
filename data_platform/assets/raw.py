"""Raw layer: faithful copies of the three sources, one asset per warehouse table.

Two factories, one per ingestion mechanism: `landing_file_asset` for events and payments,
`source_table_asset` for the four app-database tables.
"""

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta

import dagster as dg
from pydantic import Field

from data_platform.ingestion.database import (
    ExtractionStats,
    dead_letters_warning,
    extract_incremental,
    unversioned_changes_warning,
)
from data_platform.ingestion.file_formats import EVENT_FILES, PAYMENT_FILES, FileFormat
from data_platform.ingestion.files import PartitionStats, ingest_file_partitions
from data_platform.ingestion.spark_database import extract_incremental_on_spark
from data_platform.ingestion.spark_files import ingest_file_partitions_on_spark
from data_platform.ingestion.tables import DEAD_LETTER, SOURCE_DB_TABLES, RawTable
from data_platform.partitions import DAILY_PARTITIONS, OWNERS, SINGLE_RUN_BACKFILL, WAREHOUSE_POOL
from data_platform.resources.landing import LandingZone
from data_platform.resources.source_database import SourceDatabase
from data_platform.resources.warehouse import Warehouse
from data_platform.scratch import remove_abandoned_scratch

DEAD_LETTER_KEY = dg.AssetKey(["raw", DEAD_LETTER.name])


def utc_now() -> datetime:
    """Naive UTC: the warehouse stores UTC timestamps without zone."""
    return datetime.now(UTC).replace(tzinfo=None)


def table_metadata(table: RawTable) -> dict[str, object]:
    return {
        "dagster/column_schema": table.table_schema(),
        "dagster/table_name": table.qualified_name,
    }


def conservation_markdown(stats: list[PartitionStats]) -> str:
    rows = [
        f"| {s.dt} | {s.files} | {s.records_read} | {s.rows_loaded} | {s.rows_dead_lettered} |"
        for s in stats
    ]
    header = (
        "| dt | files | records read | rows loaded | rows dead-lettered |\n|---|---|---|---|---|"
    )
    return "\n".join([header, *rows])


def ingestion_metadata(stats: list[PartitionStats], table_rows: int) -> dict[str, object]:
    """Conservation figures of a run: records read = rows loaded + rows dead-lettered.

    Dagster gives a run's metadata to every partition it materializes: a run of several days
    reports its totals as the run's (`run_records_read`, ...), each day's own in the
    `partitions` table. Named as a day's, a backfill's sums showed as every day's figures (a
    day with no file "read" the range's records) and as its `dagster/partition_row_count`."""
    totals = {
        "records_read": sum(s.records_read for s in stats),
        "rows_loaded": sum(s.rows_loaded for s in stats),
        "rows_dead_lettered": sum(s.rows_dead_lettered for s in stats),
        "files": sum(s.files for s in stats),
    }
    one_day = len(stats) == 1
    metadata: dict[str, object] = {(k if one_day else f"run_{k}"): v for k, v in totals.items()}
    if one_day:
        metadata["dagster/partition_row_count"] = totals["rows_loaded"]
    return {
        **metadata,
        "dagster/row_count": table_rows,
        "partitions": dg.MetadataValue.md(conservation_markdown(stats)),
    }


def row_counts(
    rows: Callable[[str], Sequence[Sequence[object]]], table: RawTable
) -> tuple[int, dict[str, int]]:
    """The row counts the UI shows after an ingestion or an extraction (`rows` runs a query on
    the engine): the raw table's, and raw.dead_letter's per day, every source's, as a day of it
    holds both file sources' letters and those of the app tables refused that day. One query:
    on Spark each is a round trip and a plan of its own (200k events: two 0.74-1.12 s, one
    0.55-0.89 s)."""
    counts = rows(
        f"SELECT NULL AS dt, count(*) FROM {table.qualified_name} UNION ALL "
        f"SELECT CAST(dt AS STRING), count(*) FROM {DEAD_LETTER.qualified_name} GROUP BY dt"
    )
    [table_rows] = [count for day, count in counts if day is None]
    return int(table_rows), {str(day): int(count) for day, count in counts if day is not None}


def dead_letter_materialization(
    source: str, day: str, added: int, dead_letters: dict[str, int]
) -> dg.AssetMaterialization:
    """raw.dead_letter's day `day` as a step writing it leaves it: raw.dead_letter has no step of
    its own, so each writer reports its own slice of it (`added` letters from `source`), with
    the day's and the table's row counts (`row_counts`)."""
    return dg.AssetMaterialization(
        DEAD_LETTER_KEY,
        partition=day,
        metadata={
            "source": source,
            "rows_dead_lettered": added,
            "dagster/partition_row_count": dead_letters.get(day, 0),
            "dagster/row_count": sum(dead_letters.values()),
        },
    )


def partition_dates(context: dg.AssetExecutionContext) -> list[date]:
    return [date.fromisoformat(key) for key in context.partition_keys]


def landing_file_asset(fmt: FileFormat) -> dg.AssetsDefinition:
    """A daily-partitioned raw table fed by the landing zone's `<source>/dt=.../` files."""

    @dg.asset(
        key=["raw", fmt.source],
        group_name="raw",
        description=fmt.table.description,
        partitions_def=DAILY_PARTITIONS,
        backfill_policy=SINGLE_RUN_BACKFILL,
        pool=WAREHOUSE_POOL,
        owners=OWNERS,
        kinds={"duckdb", "python"},
        metadata=table_metadata(fmt.table),
    )
    def ingest(
        context: dg.AssetExecutionContext, warehouse: Warehouse, landing: LandingZone
    ) -> dg.MaterializeResult:
        landing.check_reachable()
        # A run killed mid-ingestion left its downloads and copies: the next one removes them.
        remove_abandoned_scratch()
        if warehouse.engine == "spark":
            with warehouse.spark() as spark:
                stats = ingest_file_partitions_on_spark(
                    spark, landing, fmt, partition_dates(context), loaded_at=utc_now()
                )
                table_rows, dead_letters = row_counts(
                    lambda sql: spark.sql(sql).collect(), fmt.table
                )
        else:
            with warehouse.connect() as conn:
                stats = ingest_file_partitions(
                    conn, landing, fmt, partition_dates(context), loaded_at=utc_now()
                )
                table_rows, dead_letters = row_counts(
                    lambda sql: conn.execute(sql).fetchall(), fmt.table
                )
        for s in stats:  # every day of the run: re-loading a day replaces its letters
            context.log_event(
                dead_letter_materialization(
                    fmt.source, s.dt.isoformat(), s.rows_dead_lettered, dead_letters
                )
            )
        return dg.MaterializeResult(metadata=ingestion_metadata(stats, table_rows))

    return ingest


class ExtractionConfig(dg.Config):
    """What a run re-reads below the high-water mark. `lookback_minutes` catches rows committed
    late with an older updated_at. `whole_table` reads every source row instead (the weekly
    `source_reconciliation` job), so that every row, however old, is compared with its stored
    version by `unversioned_changes`; it appends only unseen versions, as any run."""

    # Negative would skip the late commits the look-back is for; past timedelta's range, the
    # run would fail on an overflow instead of saying what is wrong.
    lookback_minutes: int = Field(default=60, ge=0, le=timedelta.max // timedelta(minutes=1))
    whole_table: bool = False


UNVERSIONED_CHANGES = "unversioned_changes"
SOURCE_DEAD_LETTERS = "dead_letters"


def unversioned_metadata(stats: ExtractionStats) -> dict[str, object]:
    """How many re-read rows changed under an extracted (id, updated_at), and their first ids."""
    return {
        UNVERSIONED_CHANGES: stats.unversioned.rows,
        "unversioned_change_ids": dg.MetadataValue.json(list(stats.unversioned.ids)),
    }


def dead_letter_metadata(stats: ExtractionStats) -> dict[str, object]:
    """The refused rows this run dead-lettered, and the table's dead letters still open."""
    return {
        "rows_dead_lettered": stats.dead_letters.added,
        "dead_letters_open": stats.dead_letters.open,
        "dead_letter_ids": dg.MetadataValue.json(list(stats.dead_letters.ids)),
    }


def extraction_metadata(stats: ExtractionStats, table_rows: int) -> dict[str, object]:
    return {
        "rows_fetched": stats.rows_fetched,
        "versions_added": stats.versions_added,
        "high_water_mark_before": str(stats.high_water_mark_before),
        "high_water_mark_after": str(stats.high_water_mark_after),
        **unversioned_metadata(stats),
        **dead_letter_metadata(stats),
        "dagster/row_count": table_rows,
    }


def unversioned_changes_check(table: RawTable, stats: ExtractionStats) -> dg.AssetCheckResult:
    """WARN while the run re-read rows changed without a new updated_at: the extraction itself
    is what sees them (the source and the log side by side), so it reports the check."""
    found = stats.unversioned
    return dg.AssetCheckResult(
        check_name=UNVERSIONED_CHANGES,
        passed=found.rows == 0,
        severity=dg.AssetCheckSeverity.WARN,
        # How many rows were compared: a pass says nothing of the rows a look-back did not read.
        metadata={**unversioned_metadata(stats), "rows_compared": stats.rows_fetched},
        description=unversioned_changes_warning(table, found) if found.rows else None,
    )


def dead_letters_check(table: RawTable, stats: ExtractionStats) -> dg.AssetCheckResult:
    """WARN while rows of the source table wait in raw.dead_letter: refused, they are in no
    version, and once written their dead letter is not written again, so a run's own count
    alone would pass from the next run on. Evaluated by each extraction, which wrote them."""
    found = stats.dead_letters
    return dg.AssetCheckResult(
        check_name=SOURCE_DEAD_LETTERS,
        passed=found.open == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=dead_letter_metadata(stats),
        description=dead_letters_warning(table, found) if found.open else None,
    )


def source_table_asset(table: RawTable) -> dg.AssetsDefinition:
    """A raw version log of one app-database table, extracted incrementally on updated_at."""

    @dg.asset(
        key=["raw", table.name],
        group_name="raw",
        description=table.description,
        pool=WAREHOUSE_POOL,
        owners=OWNERS,
        kinds={"duckdb", "sqlalchemy"},
        metadata=table_metadata(table),
        check_specs=[
            dg.AssetCheckSpec(
                UNVERSIONED_CHANGES,
                asset=["raw", table.name],
                description=f"Rows of the source table {table.name!r} re-read by the "
                "extraction (its look-back window) that changed without a new updated_at: "
                "their content is in no version. WARN when there are any; evaluated by each "
                "extraction over the rows it read (rows_compared). The weekly "
                "source_reconciliation run (whole_table: true) compares every row.",
            ),
            dg.AssetCheckSpec(
                SOURCE_DEAD_LETTERS,
                asset=["raw", table.name],
                description=f"Rows of the source table {table.name!r} the contract refused (a "
                "value its type cannot hold, a NULL where one is required), in raw.dead_letter "
                "with their reasons instead of the version log. WARN while any of them has no "
                "version extracted since; evaluated by each extraction.",
            ),
        ],
    )
    def extract(
        context: dg.AssetExecutionContext,
        config: ExtractionConfig,
        warehouse: Warehouse,
        source_database: SourceDatabase,
    ) -> dg.MaterializeResult:
        lookback = None if config.whole_table else timedelta(minutes=config.lookback_minutes)
        extracted_at = utc_now()
        if warehouse.engine == "spark":
            with warehouse.spark() as spark:
                stats = extract_incremental_on_spark(
                    spark, source_database.engine(), table, lookback, extracted_at=extracted_at
                )
                table_rows, dead_letters = row_counts(lambda sql: spark.sql(sql).collect(), table)
        else:
            with warehouse.connect() as conn:
                stats = extract_incremental(
                    conn, source_database.engine(), table, lookback, extracted_at=extracted_at
                )
                table_rows, dead_letters = row_counts(
                    lambda sql: conn.execute(sql).fetchall(), table
                )
        if stats.unversioned.rows:
            context.log.warning(unversioned_changes_warning(table, stats.unversioned))
        if stats.dead_letters.added:
            context.log.warning(dead_letters_warning(table, stats.dead_letters))
            # The letters it wrote are of the day it refused them (their `dt`): that day of
            # raw.dead_letter changed, so its counts in the UI move with it. Only then: a run
            # that refused nothing new left raw.dead_letter as it was.
            day = extracted_at.date().isoformat()
            context.log_event(
                dead_letter_materialization(table.name, day, stats.dead_letters.added, dead_letters)
            )
        return dg.MaterializeResult(
            metadata=extraction_metadata(stats, table_rows),
            check_results=[
                unversioned_changes_check(table, stats),
                dead_letters_check(table, stats),
            ],
        )

    return extract


RAW_FILE_ASSETS = [landing_file_asset(fmt) for fmt in (EVENT_FILES, PAYMENT_FILES)]
RAW_SOURCE_TABLE_ASSETS = [source_table_asset(table) for table in SOURCE_DB_TABLES]

# Written by the file assets and the app-table extractions inside their own transactions;
# declared so it is in the graph, downstream of every asset that writes it (its lineage), each
# reporting the days it wrote (`dead_letter_materialization`).
DEAD_LETTER_SPEC = dg.AssetSpec(
    DEAD_LETTER_KEY,
    description=DEAD_LETTER.description,
    deps=[asset.key for asset in [*RAW_FILE_ASSETS, *RAW_SOURCE_TABLE_ASSETS]],
    group_name="raw",
    partitions_def=DAILY_PARTITIONS,
    owners=OWNERS,
    kinds={"duckdb"},
    metadata=table_metadata(DEAD_LETTER),
)
