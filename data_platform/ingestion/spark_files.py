"""Landing files -> raw tables on Spark: the ingestion path of `files`, run on the cluster.

The same days in, the same rows out: each record of the days' files becomes a row of the raw
table or a dead letter with its reason (`spark_formats` renders `record_rules` for Spark), line
numbers count blank and header lines, and a file that cannot be read at all becomes one dead
letter of its own. What differs is how a run replaces its days:

- The raw file tables are parquet tables partitioned by `dt`, the dead letters by
  (`source`, `dt`). A run parses its files once into a cached table, then replaces exactly its
  partitions with a dynamic INSERT OVERWRITE per table and drops those of its days that are now
  empty. Each table's replacement is committed by Spark's file commit protocol; the two tables
  are two commits, so a run killed between them leaves the dead letters one run behind until the
  day is re-run (and the conservation check says so meanwhile). A re-run gives the same rows.
- Each file is read whole by one task (files are neither split nor packed together), so a
  line's number is its position in the task's output: no shuffle, and the files of a run are
  parsed in parallel. A number that could not come from that (a file read by two tasks)
  fails the run (two lines of a file with one number) rather than loading them.
- A file Spark cannot read (gzip cut short or corrupt) fails the job; the file is then read in
  Python for its reason, dead-lettered whole, and the run starts over without it. A file gone
  from the landing zone is dead-lettered before Spark is asked to read it.
- A line that is not valid UTF-8 is a dead letter saying so, its bytes replaced by U+FFFD.

Files are handed to the cluster as paths on this machine (a local landing zone, or S3 files
downloaded for the run): right for the local cluster. A remote cluster reads the same layout
from its own file system or object store (see the README, "Choosing an engine").
"""

from __future__ import annotations

import gzip
import re
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from data_platform.ingestion.file_formats import FileFormat
from data_platform.ingestion.file_lines import NOT_UTF8, UNREADABLE, unreadable_reason
from data_platform.ingestion.files import PartitionStats, files_for, partition_of
from data_platform.ingestion.spark_formats import spark_fast_sql, spark_parse_sql, spark_string
from data_platform.ingestion.spark_tables import ensure_spark_tables
from data_platform.ingestion.tables import DEAD_LETTER
from data_platform.resources.landing import LandingZone

if TYPE_CHECKING:
    from pyspark.sql.connect.session import SparkSession

# A file is split in blocks of at most maxPartitionBytes, and small files are packed into one
# task while their sizes plus openCostInBytes each stay under it: both this large, every file
# is one task of its own.
ONE_TASK_PER_FILE = ("spark.sql.files.maxPartitionBytes", "spark.sql.files.openCostInBytes")
NEVER_SPLIT_BYTES = 1 << 50
# Spark's message when a task cannot read a file: "... while reading file <uri>."
_FAILED_READ = re.compile(r"FAILED_READ_FILE\S*\] Encountered error while reading file (\S+?)\.?\s")


def spark_file_path(path: Path) -> str:
    """The path as Spark's `_metadata.file_path` spells it: `file:` and the URI-escaped path."""
    return "file:" + quote(str(path.absolute()), safe="/!$&'()*+,;=:@~")


def hadoop_literal(path: Path) -> str:
    """A Hadoop glob matching only `path`: Spark reads a path holding `{}[]*?\\` as a pattern,
    so `a[1].jsonl` would read `a1.jsonl` instead."""
    return re.sub(r"([{}\[\]*?\\])", r"\\\1", str(path))


def _read_failure_reason(path: Path) -> str | None:
    """Why Python cannot read the file either (its dead letter), or None when it can."""
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            gzip.decompress(data)
    except UNREADABLE as error:
        return unreadable_reason(error)
    return None


def _failed_file(error: Exception, paths: dict[str, Path]) -> str | None:
    """The key of the file a Spark read failure names, if it names one of ours."""
    found = _FAILED_READ.search(str(error))
    if not found:
        return None
    uri = re.sub(r"^file:/+", "file:/", found[1])
    return next((key for key, path in paths.items() if spark_file_path(path) == uri), None)


@contextmanager
def _local_paths(
    landing: LandingZone, keys: list[str], unreadable: dict[str, str]
) -> Iterator[dict[str, Path]]:
    """Each key's file on this machine, as a link named `f<n>[.gz]` in a folder of the run's;
    keys that cannot be fetched go to `unreadable`.

    Spark is handed the links, not the files' own names: it skips a file whose name starts
    with `_` or `.` even when given its path (a `_late.jsonl` was read by nobody, without a
    trace), and its `_metadata.file_path` keeps characters such as `é` unescaped where a URI
    escapes them (a `données.jsonl` matched no landing file and failed the run)."""
    with ExitStack() as stack:
        links = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="spark-files-")))
        paths = {}
        for n, key in enumerate(keys):
            try:
                path = stack.enter_context(landing.local_path(key))
                if not path.is_file():
                    raise FileNotFoundError(2, "no such file", str(path))
            except UNREADABLE as error:
                unreadable[key] = unreadable_reason(error)
            else:
                # Spark picks the decompression from the name's extension.
                paths[key] = links / f"f{n}{'.gz' if key.endswith('.gz') else ''}"
                paths[key].symlink_to(path.absolute())
        yield paths


def _expose_records(spark: SparkSession, fmt: FileFormat, paths: dict[str, Path]) -> None:
    """Temp views `_file_lines` / `_file_header` of the files' lines, numbered per file, and
    `_landed_files(file_path, source_file, dt)`."""
    files = [(spark_file_path(p), key, partition_of(key)) for key, p in paths.items()]
    spark.createDataFrame(
        files, "file_path STRING, source_file STRING, dt DATE"
    ).createOrReplaceTempView("_landed_files")
    for setting in ONE_TASK_PER_FILE:
        spark.conf.set(setting, str(NEVER_SPLIT_BYTES))
    # monotonically_increasing_id() is the task's index << 33 plus the row's place in the task.
    # Lines end at LF, a CR ending one dropped, as DuckDB's reader and the conservation check
    # have it: Spark's default would also end a line at a lone CR.
    lines = spark.read.option("lineSep", "\n").text([hadoop_literal(p) for p in paths.values()])
    lines.selectExpr(
        "_metadata.file_path AS file_path",
        "(monotonically_increasing_id() & 8589934591) + 1 AS line_number",
        "if(right(value, 1) = char(13), left(value, length(value) - 1), value) AS line",
    ).createOrReplaceTempView("_read_lines")
    spark.sql(
        "CREATE OR REPLACE TEMP VIEW _numbered_lines AS SELECT "
        "coalesce(f.source_file, 'not a landing file: ' || r.file_path) AS file_index, "
        "r.line_number, r.line "
        "FROM _read_lines r LEFT JOIN _landed_files f ON r.file_path = f.file_path"
    )
    header = fmt.header_lines
    spark.sql(
        "CREATE OR REPLACE TEMP VIEW _file_lines AS SELECT * FROM _numbered_lines "
        f"WHERE line_number > {header} AND line RLIKE '\\\\S'"
    )
    spark.sql(
        "CREATE OR REPLACE TEMP VIEW _file_header AS SELECT file_index, line "
        f"FROM _numbered_lines WHERE line_number <= {header}"
    )


def _drop_parsed(spark: SparkSession) -> None:
    spark.sql("UNCACHE TABLE IF EXISTS _parsed")
    spark.sql("DROP VIEW IF EXISTS _parsed")


def _parse_records(spark: SparkSession, fmt: FileFormat, paths: dict[str, Path]) -> None:
    """Cache table `_parsed`: every record with its day, `loads` and `reason`."""
    _drop_parsed(spark)
    if not paths:
        spark.sql(
            "CACHE TABLE _parsed AS SELECT CAST(NULL AS DATE) AS dt, false AS loads WHERE false"
        )
        return
    _expose_records(spark, fmt, paths)
    records = spark_parse_sql(fmt, "_file_lines")
    fast = spark_fast_sql(fmt, "_file_lines")
    if fast:
        # Lines the fast path vouches for as they are, the rest diagnosed.
        spark.sql(f"CREATE OR REPLACE TEMP VIEW _vouching AS {fast}")
        spark.sql(
            "CREATE OR REPLACE TEMP VIEW _undecided_lines AS "
            "SELECT file_index, line_number, line FROM _vouching WHERE NOT vouched"
        )
        records = (
            "SELECT * EXCEPT (vouched) FROM _vouching WHERE vouched "
            f"UNION ALL SELECT * FROM ({spark_parse_sql(fmt, '_undecided_lines')})"
        )
    spark.sql(
        # A loaded record's line is not kept: most of the bytes the cache would hold.
        "CACHE TABLE _parsed AS SELECT * EXCEPT (line, is_valid, error), "
        "CASE WHEN NOT loads THEN line END AS line FROM ("
        "SELECT p.*, f.dt, p.is_valid AND is_valid_utf8(p.line) AS loads, "
        f"CASE WHEN is_valid_utf8(p.line) THEN p.error ELSE {spark_string(NOT_UTF8)} END AS reason "
        f"FROM ({records}) p LEFT JOIN _landed_files f ON p.file_index = f.source_file)"
    )


def _replace_partitions(
    spark: SparkSession,
    fmt: FileFormat,
    dts: list[date],
    unreadable: dict[str, str],
    loaded_at: datetime,
    counts: dict[date, tuple[int, int]],
) -> None:
    """Overwrite the run's partitions of the raw table, then of the dead letters, from
    `_parsed`; each table's days left without rows are dropped right after its overwrite, so a
    run killed between the statements leaves the raw table whole and only the dead letters
    behind (an overwrite writes no empty partition: a day whose file now holds no valid row
    kept its old rows until the drop)."""
    stamp = f"TIMESTAMP '{loaded_at.isoformat(sep=' ')}'"
    lineage = f"file_index AS _source_file, line_number AS _line_number, {stamp} AS _loaded_at"
    contract = ", ".join(f"`{c}`" for c in fmt.contract_columns)
    spark.sql(
        f"INSERT OVERWRITE TABLE {fmt.table.qualified_name} PARTITION (dt) "
        f"SELECT {contract}, _rescued, {lineage}, dt FROM _parsed WHERE loads"
    )
    for dt in dts:
        if not counts.get(dt, (0, 0))[1]:
            spark.sql(
                f"ALTER TABLE {fmt.table.qualified_name} "
                f"DROP IF EXISTS PARTITION (dt = '{dt.isoformat()}')"
            )
    unreadable_rows = [(key, reason, partition_of(key)) for key, reason in unreadable.items()]
    spark.createDataFrame(
        unreadable_rows, "source_file STRING, error STRING, dt DATE"
    ).createOrReplaceTempView("_unreadable")
    source = spark_string(fmt.source)
    spark.sql(
        f"INSERT OVERWRITE TABLE {DEAD_LETTER.qualified_name} PARTITION (source, dt) "
        f"SELECT file_index, line_number, make_valid_utf8(line), reason, {stamp}, {source}, dt "
        "FROM _parsed WHERE NOT loads "
        f"UNION ALL SELECT source_file, NULL, NULL, error, {stamp}, {source}, dt FROM _unreadable"
    )
    for dt in dts:
        records, loaded = counts.get(dt, (0, 0))
        if records == loaded and not any(partition_of(k) == dt for k in unreadable):
            spark.sql(
                f"ALTER TABLE {DEAD_LETTER.qualified_name} "
                f"DROP IF EXISTS PARTITION (source = {source}, dt = '{dt.isoformat()}')"
            )


def _ingest(
    spark: SparkSession,
    fmt: FileFormat,
    dts: list[date],
    paths: dict[str, Path],
    unreadable: dict[str, str],
    loaded_at: datetime,
) -> dict[date, tuple[int, int]]:
    """One attempt over the readable files: (records, rows loaded) per day."""
    try:
        _parse_records(spark, fmt, paths)
        rows = spark.sql(
            "SELECT dt, count(*), count_if(loads), count(DISTINCT file_index, line_number) "
            "FROM _parsed GROUP BY dt"
        ).collect()
        if any(dt is None for dt, *_ in rows):
            stray = spark.sql("SELECT file_index FROM _parsed WHERE dt IS NULL LIMIT 1").collect()
            raise RuntimeError(
                f"Spark read lines it could not match to a landing file ({stray[0][0]})"
            )
        if any(records != numbered for _, records, _, numbered in rows):
            raise RuntimeError(
                "Spark read a landing file in more than one task, so its line numbers repeat: "
                f"keep {ONE_TASK_PER_FILE[0]} and {ONE_TASK_PER_FILE[1]} as this module sets them"
            )
        counts = {dt: (records, loaded) for dt, records, loaded, _ in rows}
        _replace_partitions(spark, fmt, dts, unreadable, loaded_at, counts)
    finally:
        _drop_parsed(spark)  # the cache lives in the cluster, beyond this session
    return counts


def ingest_file_partitions_on_spark(
    spark: SparkSession,
    landing: LandingZone,
    fmt: FileFormat,
    dts: list[date],
    loaded_at: datetime,
) -> list[PartitionStats]:
    """Replace the given days of `fmt`'s raw table and dead letters with their files' records."""
    ensure_spark_tables(spark, (fmt.table, DEAD_LETTER))
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
    # DuckDB reads a JSON object with a repeated key as valid JSON; so must Spark.
    spark.conf.set("spark.sql.variant.allowDuplicateKeys", "true")
    files = files_for(landing, fmt, set(dts))
    unreadable = {f.key: reason for f in files if (reason := fmt.misnamed(f))}
    readable = [f.key for f in files if f.key not in unreadable]
    with _local_paths(landing, readable, unreadable) as all_paths:
        while True:
            paths = {k: p for k, p in all_paths.items() if k not in unreadable}
            try:
                counts = _ingest(spark, fmt, dts, paths, unreadable, loaded_at)
                break
            except Exception as error:
                key = _failed_file(error, paths)
                reason = _read_failure_reason(paths[key]) if key else None
                if reason is None:
                    raise
                unreadable[key] = reason
    stats = []
    for dt in sorted(dts):
        records, loaded = counts.get(dt, (0, 0))
        records += sum(partition_of(key) == dt for key in unreadable)  # one record per file
        day_files = sum(partition_of(f.key) == dt for f in files)
        stats.append(PartitionStats(dt, day_files, records, loaded, records - loaded))
    return stats
