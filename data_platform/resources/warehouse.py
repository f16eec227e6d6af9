"""The warehouse: an embedded DuckDB file (DATA_PLATFORM_WAREHOUSE), or a Spark cluster
(DATA_PLATFORM_ENGINE=spark) reached through its Spark Connect endpoint."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import duckdb
from pydantic import PrivateAttr

from data_platform.resources.duckdb_lock import connect_with_lock_wait
from data_platform.resources.run_pinned import RunPinnedResource, spark_endpoint, warehouse_pin
from data_platform.resources.spark_retries import retry_policy
from data_platform.resources.spark_sessions import announce_session, with_session_id
from data_platform.settings import DEFAULT_MEMORY_LIMIT, SPARK_RETRY_SECONDS, Settings, size_bytes

if TYPE_CHECKING:
    from pyspark.sql.connect.session import SparkSession

    from data_platform.resources.warehouse_reader import WarehouseReader


def scaled_size(size: str, factor: float) -> str:
    """A DuckDB size such as `512MB` or `1GiB` times `factor`, in KB (DuckDB: KB = 1000 B)."""
    size_in_bytes = size_bytes(size.strip())
    if size_in_bytes is None:
        raise ValueError(f"{size!r} is not a size like 512MB or 1GiB")
    return f"{int(size_in_bytes * factor) // 1000}KB"


def existing_tables(conn: duckdb.DuckDBPyConnection) -> set[str]:
    """Every `schema.table` (tables and views) of the warehouse."""
    rows = conn.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_type IN ('BASE TABLE', 'VIEW')"
    ).fetchall()
    return {f"{schema}.{table}" for schema, table in rows}


# What a caller that would rather report the cluster down waits: 2 retries, 0.25 s.
FAIL_FAST_SECONDS = 0.25
# Spark Connect's conditions for a session the endpoint no longer has (it restarted).
_SESSION_GONE = (
    "NO_ACTIVE_SESSION",
    "INVALID_HANDLE.SESSION_NOT_FOUND",
    "INVALID_HANDLE.SESSION_CHANGED",
)


def endpoint_lost(error: Exception) -> str | None:
    """Why the Spark Connect endpoint is lost to this session, if `error` says it is: it did
    not answer (through every retry), or it no longer knows the session (restarted). Told by
    pyspark's condition, or by the text of an error that quotes one (a dbt step's, whose
    session was dbt-spark's)."""
    condition = getattr(error, "getCondition", lambda: None)()
    text = str(error)
    if condition in _SESSION_GONE or any(f"[{gone}]" in text for gone in _SESSION_GONE):
        return "it restarted: this session is gone"
    if "StatusCode.UNAVAILABLE" in text:
        return "it does not answer"
    return None


class SparkEndpointLost(RuntimeError):
    """The Spark Connect endpoint went away mid-step; the message is one actionable line."""

    def __init__(self, remote: str, why: str):
        super().__init__(
            f"the Spark Connect endpoint {spark_endpoint(remote)} was lost ({why}): "
            "start it (the local cluster: `SERVICES=spark make services-up`), then run the step "
            "again: every step's writes are safe to repeat"
        )


class Warehouse(RunPinnedResource):
    """A DuckDB file; `connect()` gives a UTC connection that waits out a competing writer.

    `memory_limit` bounds what a connection holds before DuckDB spills to `<file>.tmp/`: left
    at DuckDB's default (80% of the machine), a day's ingestion kept every block it wrote in
    memory, and its footprint grew with the day.
    """

    path: str
    memory_limit: str = DEFAULT_MEMORY_LIMIT
    engine: str = "duckdb"
    # sc://host:port of the cluster's Spark Connect endpoint when `engine` is spark.
    spark_remote: str | None = None
    # How long a session waits for an endpoint that does not answer (resources/spark_retries).
    spark_retry_seconds: int = SPARK_RETRY_SECONDS

    PIN = "warehouse"
    # The run whose steps use this resource, where its Spark sessions are announced.
    _run_log: tuple[dg.DagsterInstance, dg.DagsterRun] | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        super().setup_for_execution(context)
        if context.dagster_run is not None and context.instance is not None:
            self._run_log = (context.instance, context.dagster_run)

    @property
    def pin(self) -> str:
        return warehouse_pin(self.engine, self.path, self.spark_remote)

    @contextmanager
    def connect(
        self, read_only: bool = False, memory_share: float = 1.0
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """`memory_share`: the part of `memory_limit` this connection may hold."""
        self.require_run_pin()
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = connect_with_lock_wait(self.path, read_only=read_only)
        # Inside the `try`: a limit DuckDB refuses must still close the connection, which
        # holds the warehouse file's lock until closed.
        try:
            limit = (
                self.memory_limit
                if memory_share == 1.0
                else scaled_size(self.memory_limit, memory_share)
            )
            conn.execute(f"SET memory_limit = '{limit}'")
            yield conn
        finally:
            conn.close()

    def _announce(self, session_id: str) -> None:
        """Name the Spark session in the run's log, so that a dead run's statements can be
        interrupted (resources/spark_sessions.py); outside a run, nothing to name it to."""
        if self._run_log is not None:
            announce_session(*self._run_log, session_id, self.pin)

    def session_remote(self) -> str:
        """The endpoint's URL naming a new session, announced as `spark()`'s are: for one that
        another process makes (dbt-spark's, in dbt's process)."""
        session_id = str(uuid.uuid4())
        self._announce(session_id)
        return with_session_id(self.spark_remote or "", session_id)

    @contextmanager
    def reader(self, fail_fast: bool = False) -> Iterator[WarehouseReader]:
        """Reads in DuckDB's dialect on the configured engine (see warehouse_reader);
        `fail_fast` as for `spark()`."""
        # Imported here: the readers build on this module's existing_tables.
        from data_platform.resources.warehouse_reader import DuckDBReader, SparkReader

        if self.engine == "spark":
            with self.spark(fail_fast) as spark:
                yield SparkReader(spark)
        else:
            with self.connect() as conn:
                yield DuckDBReader(conn)

    def endpoint_lost_error(self, error: Exception) -> SparkEndpointLost | None:
        """The one-line error to raise instead of `error` when it says this warehouse's Spark
        endpoint was lost (a step's session or dbt-spark's); None otherwise."""
        lost = endpoint_lost(error) if self.engine == "spark" else None
        return SparkEndpointLost(self.spark_remote or "", lost) if lost else None

    @contextmanager
    def spark(self, fail_fast: bool = False) -> Iterator[SparkSession]:
        """A session on the Spark cluster (`engine` spark), its clock in UTC: raw timestamps
        are naive UTC, and Spark reads a TIMESTAMP in the session's time zone.

        An endpoint that stops answering is retried for `spark_retry_seconds` (a cluster still
        starting, a network blip), then the step fails in one line (`SparkEndpointLost`), as it
        does at once when the endpoint restarted, which loses the session. pyspark's own retries
        ran 10 minutes, the step silent, only to fail on the lost session with a stack trace.
        `fail_fast` gives up within a second, for a caller that would rather report the
        cluster down (the metrics exporter)."""
        from pyspark.errors import PySparkException
        from pyspark.sql.connect.client.retries import DefaultPolicy
        from pyspark.sql.connect.session import SparkSession

        self.require_run_pin()
        session = SparkSession.builder.remote(self.spark_remote).create()
        self._announce(session.session_id)
        waits = FAIL_FAST_SECONDS if fail_fast else self.spark_retry_seconds
        session.client.set_retry_policies([retry_policy(waits)])
        try:
            session.conf.set("spark.sql.session.timeZone", "UTC")
            yield session
        except PySparkException as error:
            lost = self.endpoint_lost_error(error)
            if lost is None:
                raise
            # Releasing the session would be retried as long again, for a session gone.
            session.client.set_retry_policies([DefaultPolicy(max_retries=0)])
            raise lost from None
        except BaseException:
            # Ctrl-C, SIGTERM or `materialize --timeout` land in a retry's sleep as an
            # interrupt: releasing the session retried the silent endpoint for
            # spark_retry_seconds again, the run's stop (exit 130 or 3) held that long.
            session.client.set_retry_policies([DefaultPolicy(max_retries=0)])
            raise
        finally:
            session.stop()  # ends this client's session; the cluster runs on


def warehouse_of(settings: Settings, spark_remote: str | dg.EnvVar | None = None) -> Warehouse:
    """The warehouse the settings name. `spark_remote`, when given, stands for the settings'
    URL: Definitions pass it as a `dg.EnvVar` (it may carry a token), which only Dagster
    resolves; the operations commands (backup, metrics) take the settings' own."""
    return Warehouse(
        path=str(settings.warehouse),
        memory_limit=settings.duckdb_memory_limit,
        engine=settings.engine,
        spark_remote=spark_remote or settings.spark_remote,
        spark_retry_seconds=settings.spark_retry_seconds,
    )
