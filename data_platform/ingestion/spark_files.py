"""Landing files -> raw tables on Spark: the ingestion path of `files`, run on the cluster.

The same days in, the same rows out: each record of the days' files becomes a row of the raw
table or a dead letter with its reason (`spark_formats` renders `record_rules` for Spark), line
numbers count blank and header lines, and a file that cannot be read at all becomes one dead
letter of its own. What differs is how a run replaces its days:

- The raw file tables are parquet tables partitioned by `dt`, the dead letters by
  (`source`, `dt`). A run replaces exactly its partitions with a dynamic INSERT OVERWRITE per
  table and drops those of its days that are now empty. The raw table's INSERT is the job that
  parses the files, into lazily cached tables (the lines' verdicts, the diagnoses), and counts
  each day's records and rows as it goes (an observation); the dead letters are read from
  those caches, and not written at all when the run has none: two actions on the data where
  there were four (an eager CACHE TABLE, a GROUP BY for the counts, the two INSERTs). Each
  table's replacement is committed by Spark's file commit protocol; the two tables are two
  commits, so a run killed between them leaves the dead letters one run behind until the
  day is re-run (and the conservation check says so meanwhile); so does a day whose files now
  load no row, killed before its old partition is dropped. A re-run gives the same rows. Writes
  go by the tables' own column order, which a column added later changes (`spark_tables`).
- Each file is read whole by one task (files are neither split nor packed together), so a
  line's number is its position in the task's output: no shuffle, and the files of a run are
  parsed in parallel. A line read by a task that did not start at its file's first byte (a
  file read by two tasks, whose numbers would repeat) fails the job before anything is written.
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
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from data_platform.ingestion.file_formats import FileFormat
from data_platform.ingestion.file_lines import (
    MAX_RECORD_BYTES,
    NOT_UTF8,
    OVERSIZED_KEPT_CHARS,
    OVERSIZED_LINE,
    UNREADABLE,
    unreadable_reason,
)
from data_platform.ingestion.files import PartitionStats, files_for, partition_of
from data_platform.ingestion.spark_formats import spark_fast_sql, spark_parse_sql, spark_string
from data_platform.ingestion.spark_tables import ensure_spark_tables
from data_platform.ingestion.tables import DEAD_LETTER
from data_platform.resources.landing import LandingZone
from data_platform.scratch import scratch_folder

if TYPE_CHECKING:
    from pyspark.sql import Column, Observation
    from pyspark.sql.connect.session import SparkSession

# A file is split in blocks of at most maxPartitionBytes, and small files are packed into one
# task while their sizes plus openCostInBytes each stay under it: both this large, every file
# is one task of its own.
ONE_TASK_PER_FILE = ("spark.sql.files.maxPartitionBytes", "spark.sql.files.openCostInBytes")
NEVER_SPLIT_BYTES = 1 << 50
SPLIT_FILE = (
    "Spark read a landing file in more than one task, so its line numbers repeat: "
    f"keep {ONE_TASK_PER_FILE[0]} and {ONE_TASK_PER_FILE[1]} as this module sets them"
)
# The run's lazily cached tables: every line's fast-path verdict, and the diagnosis of the
# lines it did not vouch for.
CACHES = ("_diagnosed", "_cached")
# A partitioned INSERT sorts each task's rows by partition so that one file is open at a time;
# a task here reads one file, all of one day, so the sort only copies every row once more.
# Writers kept open per partition instead (the sort comes back past this many in a task):
# 1M events outside Dagster, nine alternations, quiet: median 13.45 -> 12.90 s, JVM CPU 24.6 ->
# 22.9 s; seven pairs of nine faster.
UNSORTED_WRITES = {
    "spark.sql.optimizer.plannedWrite.enabled": "false",
    "spark.sql.maxConcurrentOutputFileWriters": "4",
}
STRAY_LINE = "Spark read lines it could not match to a landing file"
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
    """Why Python cannot read the file either (its dead letter), or None when it can. Read as
    a stream, as DuckDB's ingestion reads such a file (`file_lines.python_copy`): the reasons
    are then the same text on both engines (gzip.decompress said "CRC check failed" where the
    stream says "CRC check failed 0x... != 0x...")."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as file:
            while file.read(1 << 20):
                pass
    except UNREADABLE as error:
        return unreadable_reason(error)
    return None


def _gunzipped_copy(path: Path) -> Path:
    """A plain copy of a gzipped file Python reads and Spark's codec does not, beside its link:
    Hadoop's gzip decoder takes bytes after the last member for a new member's header, so a
    file padded with zeros (block-padded uploads, which Python's gzip and DuckDB's read) failed
    the job, and the run, on every attempt (a fuzz found it)."""
    copy = path.with_suffix("")
    with gzip.open(path, "rb") as source, copy.open("wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
    return copy


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
        links = stack.enter_context(scratch_folder("spark-files"))
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
    `_landed_files(file_path, source_file, dt)`. A line read by a task that did not start at
    its file's first byte fails the job: its number would restart at 1 mid-file."""
    files = [(spark_file_path(p), key, partition_of(key)) for key, p in paths.items()]
    spark.createDataFrame(
        files, "file_path STRING, source_file STRING, dt DATE"
    ).createOrReplaceTempView("_landed_files")
    for setting in ONE_TASK_PER_FILE:
        spark.conf.set(setting, str(NEVER_SPLIT_BYTES))
    # monotonically_increasing_id() is the task's index << 33 plus the row's place in the task.
    # Lines end at LF, a CR ending one dropped, as DuckDB's reader and the conservation check
    # have it: Spark's default would also end a line at a lone CR. `endswith` compares bytes;
    # `right(value, 1)` counted every line's characters to find its last (1M events: 0.9 s of
    # a task's time against 0.16 s).
    lines = spark.read.option("lineSep", "\n").text([hadoop_literal(p) for p in paths.values()])
    lines.selectExpr(
        "_metadata.file_path AS file_path",
        f"CASE WHEN _metadata.file_block_start > 0 THEN raise_error({spark_string(SPLIT_FILE)}) "
        "ELSE (monotonically_increasing_id() & 8589934591) + 1 END AS line_number",
        "if(endswith(value, char(13)), substr(value, 1, length(value) - 1), value) AS line",
    ).createOrReplaceTempView("_read_lines")
    spark.sql(
        "CREATE OR REPLACE TEMP VIEW _numbered_lines AS SELECT "
        "coalesce(f.source_file, 'not a landing file: ' || r.file_path) AS file_index, "
        "r.line_number, r.line "
        "FROM _read_lines r LEFT JOIN _landed_files f ON r.file_path = f.file_path"
    )
    # A header is the first non-blank line (`FileFormat.header_lines`): blank lines before it
    # are ignored, as anywhere. Its number per file is an aggregate, for formats with one only.
    non_blank = "line RLIKE '\\\\S'"
    header_numbers = (
        f"SELECT file_index, min(line_number) AS header_number FROM _numbered_lines "
        f"WHERE {non_blank} GROUP BY file_index"
        if fmt.header_lines
        else "SELECT source_file AS file_index, 0 AS header_number FROM _landed_files WHERE false"
    )
    spark.sql(f"CREATE OR REPLACE TEMP VIEW _header_numbers AS {header_numbers}")
    after_header = (
        "SELECT n.* FROM _numbered_lines n JOIN _header_numbers h USING (file_index) "
        "WHERE n.line_number > h.header_number"
        if fmt.header_lines
        else "SELECT * FROM _numbered_lines"
    )
    spark.sql(
        f"CREATE OR REPLACE TEMP VIEW _file_lines AS SELECT * FROM ({after_header}) "
        f"WHERE {non_blank}"
    )
    spark.sql(
        "CREATE OR REPLACE TEMP VIEW _file_header AS SELECT n.file_index, n.line_number, n.line "
        "FROM _numbered_lines n JOIN _header_numbers h "
        "ON n.file_index = h.file_index AND n.line_number = h.header_number"
    )


def _drop_caches(spark: SparkSession) -> None:
    for cache in CACHES:
        spark.sql(f"UNCACHE TABLE IF EXISTS {cache}")
        spark.sql(f"DROP VIEW IF EXISTS {cache}")


def _with_day(records: str) -> str:
    """`records` and each one's day, `dt`: a line of no landing file fails the job reading it."""
    stray = f"raise_error({spark_string(STRAY_LINE + ' (')} || p.file_index || ')')"
    return (
        f"SELECT p.*, coalesce(f.dt, {stray}) AS dt "
        f"FROM ({records}) p LEFT JOIN _landed_files f ON p.file_index = f.source_file"
    )


# A line a record may be (DuckDB's rule, file_lines.MAX_RECORD_BYTES); NULL: vouched for.
_FITS = f"coalesce(octet_length(line) <= {MAX_RECORD_BYTES}, true)"


def _with_verdict(records: str) -> str:
    """`records` as `_parsed` has them: `loads`, `reason`, and the line only when not loaded
    (an oversized one's start). A NULL line is one the fast path vouched for and found not
    oversized, so valid UTF-8 too (see _parse_records)."""
    utf8 = "coalesce(is_valid_utf8(line), true)"
    kept = f"CASE WHEN {_FITS} THEN line ELSE left(line, {OVERSIZED_KEPT_CHARS}) END"
    return (
        f"SELECT * EXCEPT (line, is_valid, error), CASE WHEN NOT loads THEN {kept} END AS line "
        f"FROM (SELECT *, is_valid AND {utf8} AND {_FITS} AS loads, "
        f"CASE WHEN NOT {utf8} THEN {spark_string(NOT_UTF8)} "
        f"WHEN NOT {_FITS} THEN {spark_string(OVERSIZED_LINE)} ELSE error END AS reason "
        f"FROM ({records}))"
    )


def _parse_records(spark: SparkSession, fmt: FileFormat, paths: dict[str, Path]) -> None:
    """View `_parsed`: every record with its day, `loads` and `reason`, over a lazily cached
    table `_cached` that the raw table's INSERT fills as it parses the files (an eager CACHE
    TABLE was a job of its own). The cache is built whole, every line checked, before that
    INSERT writes a row; the dead letters then read it from memory.

    With a fast path, what is cached is the fast path's verdict on every line, the line kept
    only where it may be needed (not vouched for, or not UTF-8): the lines vouched for are read
    from the cache, the others diagnosed from it, so the files are read and the fast path run
    once. Caching the union instead read the files and ran the fast path twice, once for each
    side (measured: 4.2 against 1.9 task-seconds for 200k events). The diagnosis is cached too,
    `_diagnosed`: its plan is large, and each query running it paid 0.7-1 s however few its
    lines (1 or 1,000 alike), so the dead letters' INSERT ran it a second time for ~1 s of a
    7-8 s run."""
    _expose_records(spark, fmt, paths)
    fast = spark_fast_sql(fmt, "_file_lines")
    if fast is None:
        spark.sql(
            "CACHE LAZY TABLE _cached AS "
            + _with_verdict(_with_day(spark_parse_sql(fmt, "_file_lines")))
        )
        spark.sql("CREATE OR REPLACE TEMP VIEW _parsed AS SELECT * FROM _cached")
        return
    # The diagnosing query's columns in its order, `vouched`, then `dt`: a vouched line's row
    # lines up with a diagnosed line's (a UNION is by position). A vouched line is valid UTF-8:
    # json_tuple decodes a bad byte as U+FFFD, so such a line differs from its spelling (the
    # odd-files test's Latin-1 line); testing it again cost 2% of the executor's time.
    spark.sql(
        "CACHE LAZY TABLE _cached AS SELECT file_index, line_number, "
        f"CASE WHEN NOT (vouched AND {_FITS}) THEN line END AS line, "
        f"* EXCEPT (file_index, line_number, line) FROM ({_with_day(fast)})"
    )
    spark.sql(
        "CREATE OR REPLACE TEMP VIEW _undecided_lines AS "
        "SELECT file_index, line_number, line FROM _cached WHERE NOT vouched"
    )
    spark.sql(
        "CACHE LAZY TABLE _diagnosed AS " + _with_day(spark_parse_sql(fmt, "_undecided_lines"))
    )
    records = "SELECT * EXCEPT (vouched) FROM _cached WHERE vouched UNION ALL TABLE _diagnosed"
    spark.sql(f"CREATE OR REPLACE TEMP VIEW _parsed AS {_with_verdict(records)}")


def _observation(spark: SparkSession) -> tuple[Observation, Callable[[str], Column]]:
    """A new Observation and `expr` of the session's own API: Spark Connect's (the platform's
    session) or classic Spark's (the local session of the engine comparison test); neither API
    takes the other's objects."""
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    if isinstance(spark, ConnectSession):
        from pyspark.sql.connect.functions import expr
        from pyspark.sql.connect.observation import Observation as ConnectObservation

        return ConnectObservation(), expr
    from pyspark.sql.functions import expr as classic_expr
    from pyspark.sql.observation import Observation as ClassicObservation

    return ClassicObservation(), classic_expr


def _day_counts(dts: list[date], expr: Callable[[str], Column]) -> list[Column]:
    """Aggregates of `_parsed` giving each day's records (`r<n>`) and rows loaded (`l<n>`):
    the days are known, so no GROUP BY (which an observation cannot hold) is needed."""
    return [
        expr(f"count_if({loaded}dt = DATE '{dt.isoformat()}')").alias(f"{name}{n}")
        for n, dt in enumerate(dts)
        for name, loaded in (("r", ""), ("l", "loads AND "))
    ]


def _in_layout(values: dict[str, str], layout: list[str]) -> list[str]:
    """`values` (column -> SQL) as a select list in the table's own column order."""
    return [f"{values[column]} AS `{column}`" for column in layout]


def _insert_raw(
    spark: SparkSession, fmt: FileFormat, dts: list[date], stamp: str, layout: list[str]
) -> dict[date, tuple[int, int]]:
    """Overwrite the run's partitions of the raw table with the loaded records of `_parsed`:
    (records, rows loaded) per day, counted by the same job (an observation), not a query of
    its own."""
    counted, expr = _observation(spark)
    values = {c: f"`{c}`" for c in [*fmt.contract_columns, "_rescued", "dt"]}
    values |= {"_source_file": "file_index", "_line_number": "line_number", "_loaded_at": stamp}
    # insertInto is INSERT OVERWRITE ... PARTITION (dt): by position (so in `layout`), dynamic
    # (the session's partitionOverwriteMode), and the observation comes back with the write.
    spark.table("_parsed").observe(counted, *_day_counts(dts, expr)).where("loads").selectExpr(
        *_in_layout(values, layout)
    ).write.insertInto(fmt.table.qualified_name, overwrite=True)
    figures = counted.get
    counts = {dt: (figures[f"r{n}"], figures[f"l{n}"]) for n, dt in enumerate(dts)}
    return {dt: pair for dt, pair in counts.items() if pair[0]}


def _drop_emptied(spark: SparkSession, table: str, partitions: list[str]) -> None:
    """Drop the partitions an overwrite left alone: it writes no empty partition, so a day
    whose files now hold no row for the table kept its old rows."""
    for partition in partitions:
        spark.sql(f"ALTER TABLE {table} DROP IF EXISTS PARTITION ({partition})")


def _insert_dead_letters(
    spark: SparkSession,
    fmt: FileFormat,
    unreadable: dict[str, str],
    stamp: str,
    parsed: bool,
    layout: list[str],
) -> None:
    """Overwrite the run's partitions of the dead letters: `_parsed`'s refused records (when
    files were `parsed`) and one row per unreadable file."""
    unreadable_rows = [(key, reason, partition_of(key)) for key, reason in unreadable.items()]
    spark.createDataFrame(
        unreadable_rows, "source_file STRING, error STRING, dt DATE"
    ).createOrReplaceTempView("_unreadable")
    common = {"rejected_at": stamp, "source": spark_string(fmt.source), "dt": "dt"}
    whole_file = common | {"source_file": "source_file", "error": "error"}
    whole_file |= {"line_number": "CAST(NULL AS BIGINT)", "raw_record": "CAST(NULL AS STRING)"}
    letters = f"SELECT {', '.join(_in_layout(whole_file, layout))} FROM _unreadable"
    if parsed:
        refused = common | {"source_file": "file_index", "line_number": "line_number"}
        refused |= {"raw_record": "make_valid_utf8(line)", "error": "reason"}
        letters = (
            f"SELECT {', '.join(_in_layout(refused, layout))} FROM _parsed WHERE NOT loads "
            f"UNION ALL {letters}"
        )
    spark.sql(
        f"INSERT OVERWRITE TABLE {DEAD_LETTER.qualified_name} PARTITION (source, dt) {letters}"
    )


def _ingest(
    spark: SparkSession,
    fmt: FileFormat,
    dts: list[date],
    paths: dict[str, Path],
    unreadable: dict[str, str],
    loaded_at: datetime,
    layouts: dict[str, list[str]],
) -> dict[date, tuple[int, int]]:
    """One attempt over the readable files: (records, rows loaded) per day.

    The raw table first, its emptied days dropped right after, then the dead letters: a run
    killed between them leaves the dead letters one run behind, and one killed between the
    raw INSERT and the drop also a day whose files now load no row with its previous rows
    (an overwrite writes no empty partition). Re-running the day mends both; the
    conservation check reports them meanwhile. The raw
    table's INSERT parses (and counts, and checks every line); the dead letters' reads the
    parse from the cache, and runs only when some day has one."""
    stamp = f"TIMESTAMP '{loaded_at.isoformat(sep=' ')}'"
    try:
        counts: dict[date, tuple[int, int]] = {}
        if paths:
            _parse_records(spark, fmt, paths)
            counts = _insert_raw(spark, fmt, dts, stamp, layouts[fmt.table.name])
        raw_empty = [dt for dt in dts if not counts.get(dt, (0, 0))[1]]
        _drop_emptied(
            spark, fmt.table.qualified_name, [f"dt = '{dt.isoformat()}'" for dt in raw_empty]
        )
        unread_days = {partition_of(key) for key in unreadable}
        refused = {dt for dt, (records, loaded) in counts.items() if records > loaded}
        lettered = [dt for dt in dts if dt in unread_days | refused]
        if lettered:
            _insert_dead_letters(
                spark, fmt, unreadable, stamp, bool(paths), layouts[DEAD_LETTER.name]
            )
        source = spark_string(fmt.source)
        _drop_emptied(
            spark,
            DEAD_LETTER.qualified_name,
            [f"source = {source}, dt = '{dt.isoformat()}'" for dt in dts if dt not in lettered],
        )
    finally:
        _drop_caches(spark)  # the caches live in the cluster, beyond this session
    return counts


def ingest_file_partitions_on_spark(
    spark: SparkSession,
    landing: LandingZone,
    fmt: FileFormat,
    dts: list[date],
    loaded_at: datetime,
) -> list[PartitionStats]:
    """Replace the given days of `fmt`'s raw table and dead letters with their files' records."""
    layouts = ensure_spark_tables(spark, (fmt.table, DEAD_LETTER))
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
    # DuckDB reads a JSON object with a repeated key as valid JSON; so must Spark.
    spark.conf.set("spark.sql.variant.allowDuplicateKeys", "true")
    # A SQL temp view keeps its text and is analyzed again by every query that reads it; the
    # views here stack the fast path, the diagnosis and the verdict, 0.5-0.7 s of analysis per
    # query (the raw INSERT, the dead letters'). Kept analyzed, a run took 4.0 s instead of 5.2.
    # The views are made anew by each run, in order, over its own files.
    spark.conf.set("spark.sql.legacy.storeAnalyzedPlanForView", "true")
    # The run's caches live for two statements: compressing them costs more than it saves.
    # Not compressed, the ingestion in a new session took 14.09 s against 14.90 for 1M events
    # (three alternations, every pair alike) and 6.56 s against 7.49 for 200k (five); through
    # Dagster, 200k: 6.52 s against 6.69 (six, within the runs' spread).
    spark.conf.set("spark.sql.inMemoryColumnarStorage.compressed", "false")
    for setting, value in UNSORTED_WRITES.items():
        spark.conf.set(setting, value)
    files = files_for(landing, fmt, set(dts))
    unreadable = {f.key: reason for f in files if (reason := fmt.misnamed(f))}
    readable = [f.key for f in files if f.key not in unreadable]
    with _local_paths(landing, readable, unreadable) as all_paths:
        unreadable |= {
            key: reason
            for key, path in all_paths.items()
            if key not in unreadable and (reason := fmt.headerless(path))
        }
        while True:
            paths = {k: p for k, p in all_paths.items() if k not in unreadable}
            try:
                counts = _ingest(spark, fmt, dts, paths, unreadable, loaded_at, layouts)
                break
            except Exception as error:
                key = _failed_file(error, paths)
                reason = _read_failure_reason(paths[key]) if key else None
                if reason is None:
                    if key and paths[key].suffix == ".gz":
                        all_paths[key] = _gunzipped_copy(paths[key])
                        continue
                    raise
                unreadable[key] = reason
    stats = []
    for dt in sorted(dts):
        records, loaded = counts.get(dt, (0, 0))
        records += sum(partition_of(key) == dt for key in unreadable)  # one record per file
        day_files = sum(partition_of(f.key) == dt for f in files)
        stats.append(PartitionStats(dt, day_files, records, loaded, records - loaded))
    return stats
