"""Source-database tables -> raw version logs on Spark: `database`'s extraction, run on the cluster.

The same versions in, the same rows out: the source query, its reflection against the contract,
the Arrow batches and the castability check with its message are `database`'s and
`source_schema`'s own. What differs is how a run commits, since a Spark table has no
transaction to roll back:

- Each batch is handed to Spark as it is fetched, checked with `try_cast` (Spark runs in ANSI
  mode, where a plain CAST of a bad value fails the job with Spark's message, not ours), and
  staged, cast to the contract's types with its `_rescued` JSON, in a session temp view.
- A row the contract refuses is left out of the staged batch; its reason and record are kept.
- Only after the last batch is checked are the refused rows written to raw.dead_letter (those
  it does not hold yet), and then ONE `INSERT INTO` appends the staged versions not already in
  the raw table, one row per (id, updated_at) (the first fetched wins, as on DuckDB, where each
  batch sees the earlier ones). A stopped or interrupted run has written nothing, or only dead
  letters, which its re-run finds written: the high-water mark, derived from the raw table, is
  where it was, and the re-run reads the refused rows again.
- The staged versions whose key the log holds with other content are found by `database`'s own
  SQL (`unversioned_changes_sql`), after the append, as on DuckDB.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import reduce
from typing import TYPE_CHECKING

from data_platform.ingestion.database import (
    HIGH_WATER_MARK,
    ExtractionStats,
    UnversionedChanges,
    batch_kinds,
    find_dead_letters,
    find_unversioned_changes,
    ids_in_source,
    new_dead_letters_sql,
    read_since,
    refused_records,
    source_batches,
    source_query,
)
from data_platform.ingestion.source_schema import (
    BatchKinds,
    EngineSql,
    contract_value,
    refusal,
    refused_rows,
    require_unique_versions,
)
from data_platform.ingestion.spark_formats import SPARK, spark_string
from data_platform.ingestion.spark_tables import ensure_spark_tables, spark_type
from data_platform.ingestion.tables import DEAD_LETTER, RawTable

if TYPE_CHECKING:
    import sqlalchemy as sa
    from pyspark.sql import DataFrame, SparkSession

# What DuckDB's json_object writes of a NULL extra: the key with null, not the key left out.
_JSON_OPTIONS = "map('ignoreNullFields', 'false')"


def backquoted(name: str) -> str:
    """A Spark SQL identifier, whatever characters the source's column name has."""
    return "`" + name.replace("`", "``") + "`"


SPARK_SQL = EngineSql(
    quote=backquoted,
    sql_type=spark_type,
    dialect=SPARK,
    json_keys=lambda expr: f"json_object_keys({expr})",
    text_object=lambda pairs: (
        "to_json(named_struct("
        + ", ".join(f"{spark_string(k)}, {v}" for k, v in pairs)
        + f"), {_JSON_OPTIONS})"
    ),
    json_text=lambda expr, key: f"get_json_object({expr}, {spark_string('$.' + key)})",
)


def _first_row(spark: SparkSession, sql: str) -> tuple | None:
    rows = spark.sql(sql).take(1)
    return tuple(rows[0]) if rows else None


def _rows(spark: SparkSession, sql: str) -> list[tuple]:
    return [tuple(r) for r in spark.sql(sql).collect()]


def _dead_letter(
    spark: SparkSession,
    table: RawTable,
    refused: list[tuple[str, str]],
    extracted_at: datetime,
    layout: list[str],
) -> int:
    """Write the run's refused rows to raw.dead_letter (those it does not hold yet, in the
    table's `layout`); how many dead letters were written."""
    spark.createDataFrame(refused_records(refused)).createOrReplaceTempView("_refused_rows")
    count = f"SELECT count(*) FROM {DEAD_LETTER.qualified_name} WHERE source = '{table.name}'"
    before = spark.sql(count).first()[0]
    new = new_dead_letters_sql(table, "_refused_rows", SPARK_SQL, extracted_at, layout)
    spark.sql(f"INSERT INTO {DEAD_LETTER.qualified_name} PARTITION (source, dt) {new}")
    return spark.sql(count).first()[0] - before


def _typed_versions(
    frame: DataFrame,
    table: RawTable,
    extra: list[str],
    kinds: BatchKinds,
    batch: int,
    extracted_at: datetime,
) -> DataFrame:
    """The batch as rows of the raw table: contract columns cast, `_extracted_at`, `_rescued`
    as JSON text, and the batch number that decides between duplicates. Built on the batch's
    own DataFrame, not on the `_source_batch` view: a Spark Connect plan may look a view up by
    name only when it runs, by which time the view holds the last batch."""
    columns = {c.name: c for c in table.columns}
    contract = [
        f"{contract_value(c, backquoted(c.name), kinds, SPARK_SQL)} AS {backquoted(c.name)}"
        for c in table.columns
        if not c.name.startswith("_")
    ]
    pairs = ", ".join(f"{spark_string(n)}, {backquoted(n)}" for n in extra)
    rescued = f"to_json(named_struct({pairs}), {_JSON_OPTIONS})" if extra else "NULL"
    stamp = f"TIMESTAMP_NTZ '{extracted_at.isoformat(sep=' ')}'"
    return frame.selectExpr(
        *contract,
        f"CAST({stamp} AS TIMESTAMP) AS _extracted_at",
        f"CAST({rescued} AS {spark_type(columns['_rescued'])}) AS _rescued",
        f"{batch} AS _batch",
    )


def _append_staged(spark: SparkSession, table: RawTable) -> None:
    """Append `_source_versions`' (id, updated_at) versions not yet in the raw table, once each."""
    target = ", ".join(backquoted(n) for n in table.column_names)
    spark.sql(
        f"INSERT INTO {table.qualified_name} ({target}) SELECT {target} FROM ("
        "SELECT v.*, row_number() OVER (PARTITION BY v.id, v.updated_at ORDER BY v._batch) AS _n "
        "FROM _source_versions v "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table.qualified_name} r "
        "WHERE r.id = v.id AND r.updated_at = v.updated_at)) WHERE _n = 1"
    )


def extract_incremental_on_spark(
    spark: SparkSession,
    engine: sa.Engine,
    table: RawTable,
    lookback: timedelta | None,
    extracted_at: datetime,
) -> ExtractionStats:
    """Append the source table's new (id, updated_at) versions to its raw version log on Spark,
    and count the rows re-read whose key is stored with other content, as on DuckDB (`lookback`
    None: every source row, by `read_since`'s rule)."""
    layouts = ensure_spark_tables(spark, (table, DEAD_LETTER))
    # One job for both figures. The mark as TIMESTAMP_NTZ: the naive UTC value, whatever the
    # Python process's own time zone.
    state_sql = (
        f"SELECT count(*), CAST({HIGH_WATER_MARK} AS TIMESTAMP_NTZ) FROM {table.qualified_name}"
    )
    rows_before, hwm_before = spark.sql(state_sql).first()
    query, columns = source_query(engine, table, read_since(hwm_before, lookback))
    staged: list[DataFrame] = []
    refused: list[tuple[str, str]] = []
    fetched = dead_lettered = 0
    unversioned = UnversionedChanges()
    try:
        for batch in source_batches(engine, table, query, columns):
            frame = spark.createDataFrame(batch)
            frame.createOrReplaceTempView("_source_batch")
            kinds = batch_kinds(batch)
            batch_refused = refused_rows(
                lambda sql: _rows(spark, sql), table, columns, kinds, SPARK_SQL
            )
            if batch_refused:
                refused += batch_refused
                frame = frame.where(
                    f"({refusal(table, columns.contract, kinds, SPARK_SQL)}) IS NULL"
                )
            staged.append(
                _typed_versions(frame, table, columns.extra, kinds, len(staged), extracted_at)
            )
            fetched += batch.num_rows
        if refused:
            dead_lettered = _dead_letter(
                spark, table, refused, extracted_at, layouts[DEAD_LETTER.name]
            )
        if staged:
            versions = reduce(lambda a, b: a.unionByName(b), staged)
            versions.createOrReplaceTempView("_source_versions")
            # Every batch is staged before the append, which is no transaction on Spark: twins
            # of one (id, updated_at) in different batches stop the run before it writes.
            contract = [c.name for c in table.columns if not c.name.startswith("_")]
            require_unique_versions(
                lambda sql: _first_row(spark, sql), table, contract, SPARK_SQL, "_source_versions"
            )
            _append_staged(spark, table)
            unversioned = find_unversioned_changes(
                lambda sql: _rows(spark, sql),
                table,
                "_source_versions",
                SPARK_SQL,
                extracted_at,
            )
    finally:
        spark.catalog.dropTempView("_source_batch")
        spark.catalog.dropTempView("_source_versions")
        spark.catalog.dropTempView("_refused_rows")
    rows_after, hwm_after = spark.sql(state_sql).first()
    dead_letters = find_dead_letters(
        lambda sql: _rows(spark, sql),
        table,
        SPARK_SQL,
        dead_lettered,
        lambda ids: ids_in_source(engine, table, ids),
    )
    return ExtractionStats(
        table.name,
        hwm_before,
        hwm_after,
        fetched,
        rows_after - rows_before,
        unversioned,
        dead_letters,
    )
