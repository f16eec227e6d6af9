"""`data-platform sql` on Spark, through the cluster's Spark Connect endpoint.

Read-only by construction, since Spark Connect has no read-only mode and runs a command (INSERT,
CREATE, DROP, SET, a `BEGIN ... END` script) the moment `spark.sql` receives it. Nothing the user
wrote reaches `spark.sql` before Spark's own parser has said what it is:

1. `EXPLAIN EXTENDED <text>` parses it. EXPLAIN never executes its statement (Spark plans it in
   SKIP mode), and the parser accepts exactly one statement, so `SELECT 1; DROP TABLE x` is a
   syntax error here; comments are Spark's to read, not ours.
2. A statement whose parsed root is SHOW..., DESCRIBE... or EXPLAIN runs as it is: those only read.
3. Anything else runs as `SELECT * FROM (\\n<text>\\n)`. Only a query parses inside a subquery,
   so INSERT, CTAS, DROP, `WITH ... INSERT`, scripts, a second statement after a `)`, all fail to
   parse and are refused, and what runs is exactly the text Spark parsed as a SELECT. (Running the
   wrapped text, not the original, matters: `USE db` also parses as a relation named USE.)
4. Queries that run code on the cluster are refused too, by the plan's node names: a script
   transform (`SELECT TRANSFORM(...) USING 'cmd'` runs a shell command on the executors) and Java
   reflection (`reflect`, `java_method`, `try_reflect` call any static method).
5. Files read by path (``SELECT * FROM text.`/etc/passwd` ``, json., csv., parquet., binaryFile.
   ...) are refused: they read any file the cluster's user can, on the cluster's host, where DuckDB
   refuses file access outright. The session runs with `spark.sql.runSQLOnFiles=false` (Spark then
   resolves such a name as a table and finds none, wherever it hides: a CTE, a subquery,
   `IDENTIFIER('...')`, `DESCRIBE QUERY`), and the parsed plan is screened for a data-source
   prefix first, so that the common case is refused in words that say why.
An allow-list of leading keywords was not enough: `WITH a AS (...) INSERT ...` and
`FROM t INSERT ...` are writes that start like queries, and a comment lexer of our own that
disagreed with Spark's on one detail (nested `/* */`) would let a write through.

Rows stream: `toLocalIterator` receives Arrow batches as the executors produce them. The session
time zone is UTC and timestamps are read as wall-clock UTC (`timestamp_ntz`), so they print like
DuckDB's naive UTC timestamps whatever the client machine's time zone.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Generator, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from data_platform.resources.spark_retries import retry_policy
from data_platform.settings import SPARK_REMOTE_VARIABLE, Settings
from data_platform.sql_engines import READ_ONLY_HINT, QueryError, QueryResult, first_line

if TYPE_CHECKING:
    from pyspark.sql.connect.dataframe import DataFrame
    from pyspark.sql.connect.session import SparkSession

DEFAULT_PORT = 15002  # Spark Connect's, when the URL names none
# Checked before pyspark connects: its client retries a refused connection for minutes.
CONNECT_TIMEOUT_SECONDS = 5.0
# Parsed-plan roots that run as they are: they only read (EXPLAIN plans without executing).
READ_COMMANDS = re.compile(r"(Show|Describe)\w*|ExplainCommand")
QUERY_KINDS = "SELECT, WITH, VALUES, TABLE or FROM queries, SHOW, DESCRIBE, EXPLAIN"
# Queries that run code of the user's choosing on the cluster (see the module docstring, 4.).
RUNS_CODE = re.compile(r"ScriptTransformation|\b(reflect|java_method|try_reflect)\(", re.IGNORECASE)
# A relation named `<data source>.`<path>``, optionally under spark_catalog: a file read by path
# (see the module docstring, 5.). The sources Spark ships, or a class name (dotted).
READS_A_FILE = re.compile(
    r"'Unresolved(?:Relation|TableOrView) \[(?:spark_catalog, )?"
    r"(?:text|json|csv|parquet|orc|avro|xml|binaryFile|libsvm|image|[\w$]+(?:\.[\w$]+)+), ",
    re.IGNORECASE,
)
# Off for the command's session: Spark refuses every file read by path, the screen above aside.
FILE_QUERIES_OFF = ("spark.sql.runSQLOnFiles", "false")
# pyspark logs every failed query with its JVM stack trace on stderr; the CLI prints one line.
NOISY_LOGGERS = ("SQLQueryContextLogger", "DataFrameQueryContextLogger")


def _check_reachable(remote: str) -> None:
    """Fail at once, in one line, when nothing listens at the endpoint."""
    parsed = urlparse(remote)
    host, port = parsed.hostname or "", parsed.port or DEFAULT_PORT
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_SECONDS).close()
    except OSError as err:
        reason = (err.strerror or str(err) or type(err).__name__).lower()
        # host:port only: the URL may carry a token.
        raise QueryError(
            f"the Spark Connect endpoint sc://{host}:{port} does not answer ({reason}): start the "
            f"local cluster with `SERVICES=spark make services-up`, or set {SPARK_REMOTE_VARIABLE} "
            "to a running endpoint"
        ) from None


def _parsed_plan(spark: SparkSession, text: str) -> tuple[str, str]:
    """Spark's EXPLAIN EXTENDED of `text` and the root node of its parsed plan (e.g. Project,
    ShowTables, DropTable)."""
    plan = spark.sql(f"EXPLAIN EXTENDED {text}").collect()[0][0]
    found = re.search(r"== Parsed Logical Plan ==\n'?(\w+)", plan)
    return plan, found[1] if found else ""


def read_only_statement(spark: SparkSession, sql: str) -> DataFrame:
    """The DataFrame of `sql` if Spark's parser says it only reads; a QueryError otherwise."""
    from pyspark.errors import ParseException

    text = sql.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    if not text:
        raise QueryError("the query is empty: pass one SQL query, e.g. 'SHOW TABLES'")
    plan, root = _parsed_plan(spark, text)
    if RUNS_CODE.search(plan):
        raise QueryError(
            "a script transform or Java reflection runs code on the cluster: refused "
            f"({READ_ONLY_HINT})"
        )
    if READS_A_FILE.search(plan):
        raise QueryError(
            "the query reads a file of the cluster by path, not a warehouse table: refused "
            f"({READ_ONLY_HINT})"
        )
    if READ_COMMANDS.fullmatch(root):
        return spark.sql(text)
    try:
        return spark.sql(f"SELECT * FROM (\n{text}\n)")
    except ParseException:
        raise QueryError(
            f"{root or 'the statement'} is not a query: Spark answers only {QUERY_KINDS} here "
            f"({READ_ONLY_HINT})"
        ) from None


def _utc_timestamps(frame: DataFrame) -> DataFrame:
    """Timestamp columns as their UTC wall-clock time: pyspark would shift them to local time."""
    from pyspark.sql.connect import functions as F
    from pyspark.sql.types import TimestampType

    fields = frame.schema.fields
    if not any(isinstance(f.dataType, TimestampType) for f in fields):
        return frame
    positional = frame.toDF(*(f"_c{i}" for i in range(len(fields))))  # names may repeat
    return positional.select(
        *(
            (F.col(f"_c{i}").cast("timestamp_ntz") if isinstance(f.dataType, TimestampType)
             else F.col(f"_c{i}")).alias(f.name)
            for i, f in enumerate(fields)
        )
    )  # fmt: skip


def _nested_columns(frame: DataFrame) -> list[int]:
    """The positions of struct, array and map columns: the ones `_plain` has work to do on."""
    from pyspark.sql.types import ArrayType, MapType, StructType

    nested = (ArrayType, MapType, StructType)
    return [i for i, f in enumerate(frame.schema.fields) if isinstance(f.dataType, nested)]


def _plain(value: Any) -> Any:
    """A struct (pyspark Row) as a dict, recursively, so it prints as JSON like a map does."""
    from pyspark.sql import Row

    if isinstance(value, Row):
        return {k: _plain(v) for k, v in value.asDict().items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _rows(frame: DataFrame, nested: list[int]) -> Generator[tuple, None, None]:
    """The rows as tuples, an Arrow batch at a time; `nested`: the struct/array/map columns."""
    from pyspark.errors import PySparkException

    try:
        for row in frame.toLocalIterator():
            values = list(row)
            for i in nested:
                values[i] = _plain(values[i])
            yield tuple(values)
    except PySparkException as err:
        raise QueryError(first_line(err)) from None


def _quiet_pyspark_loggers() -> None:
    from pyspark.logger import PySparkLogger

    for name in NOISY_LOGGERS:
        PySparkLogger.getLogger(name).disabled = True


@contextmanager
def read_only_query(
    settings: Settings, sql: str, timeout: float, hold: float
) -> Iterator[QueryResult]:
    """`sql` on the Spark Connect endpoint of the settings. `timeout` (the DuckDB writer's lock
    wait) and `hold` (how long a read may keep DuckDB's writers out) do not apply: Spark has no
    single writer."""
    remote = settings.spark_remote or ""
    _check_reachable(remote)
    from pyspark.errors import PySparkException
    from pyspark.sql.connect.session import SparkSession

    _quiet_pyspark_loggers()
    try:
        spark = SparkSession.builder.remote(remote).create()
        spark.client.set_retry_policies([retry_policy(settings.spark_retry_seconds)])
    except PySparkException as err:
        raise QueryError(f"cannot open a Spark Connect session: {first_line(err)}") from None
    try:
        try:
            spark.conf.set("spark.sql.session.timeZone", "UTC")
            spark.conf.set(*FILE_QUERIES_OFF)  # before any text of the user's is parsed
            frame = _utc_timestamps(read_only_statement(spark, sql))
            fields = frame.schema.fields
        except PySparkException as err:
            raise QueryError(first_line(err)) from None
        rows = _rows(frame, _nested_columns(frame))
        try:
            yield QueryResult(
                columns=[f.name for f in fields],
                types=[f.dataType.simpleString() for f in fields],
                rows=rows,
            )
        finally:
            rows.close()  # a reader gone early (`| head`): end the stream while pyspark can
    finally:
        with suppress(PySparkException):  # the session ends with the server anyway
            spark.stop()
