"""Rows loaded and dead-lettered per source and day, read from the warehouse at each scrape.

The counts are read through `Warehouse.reader()`, so the same queries answer on both engines;
what differs is when a scrape may read and how it knows the figures are still current.

On DuckDB, the file: DuckDB lets no second process open a file a writer holds, and a reader that holds the file
blocks the next writer. So a scrape waits at most `LOCK_WAIT_SECONDS` for the lock, reads
three small GROUP BYs and closes at once; when a run is writing, the scrape reports
`data_platform_warehouse_up 0` and the last counts it read rather than block Prometheus.

On a year of history (7.7M raw rows) the GROUP BYs were most of a scrape (~0.13 s of CPU),
while the warehouse changes only when a run writes it. So the counts are kept with the stamp
of the file (and its WAL) they were read from, and a scrape that finds the same stamp reuses
them: it still opens the file, so `warehouse_up` still says whether it could be read.

On Spark, the cluster: no stamp tells that a table changed, and a query costs a session and a
second or more. So the counts are read at most every `SPARK_MAX_AGE_SECONDS`, by a thread of
their own, and a scrape waits for a read at most `SPARK_WAIT_SECONDS`: a cluster that is down or
slow gives `warehouse_up 0` at once, never a scrape that hangs on gRPC's retries.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as WaitedTooLong
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Protocol

import duckdb
from prometheus_client.core import GaugeMetricFamily, Metric

from data_platform.resources.duckdb_lock import connect_with_lock_wait, is_lock_conflict
from data_platform.resources.warehouse import Warehouse, warehouse_of
from data_platform.resources.warehouse_reader import DuckDBReader, WarehouseReader
from data_platform.settings import METRICS_DAYS, Settings
from data_platform.sql_engines import first_line

LOCK_WAIT_SECONDS = 0.5
SPARK_MAX_AGE_SECONDS = 30.0
SPARK_WAIT_SECONDS = 5.0
FILE_SOURCES = ("events", "payments")
# A stamp is trusted once its newest write is this old when it is read: a write within the
# filesystem clock's granularity (a few ms) of another could otherwise leave mtime unchanged.
SETTLE_SECONDS = 1.0

DayCounts = dict[str, dict[tuple[str, str], int]]


@dataclass(frozen=True)
class FileStamp:
    """What a DuckDB write changes: (inode, size, mtime, ctime) of the file and of its WAL
    (None when absent), and the newest of those times in nanoseconds."""

    files: tuple[tuple[int, int, int, int] | None, ...]
    newest_ns: int


def file_stamp(path: Path) -> FileStamp:
    """The stamp of the DuckDB file at `path` and its `.wal`, as they are now."""
    files = []
    for part in (path, path.with_name(f"{path.name}.wal")):
        try:
            st = os.stat(part)
        except FileNotFoundError:
            files.append(None)
            continue
        files.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return FileStamp(tuple(files), max((t for f in files if f for t in f[2:]), default=0))


class DayCountsCache:
    """The last counts read and the stamp of the file they were read from.

    `get` must be called while the caller holds the file (a read-only connection: no writer
    can change it between the stamp and the read), so the counts are the file's as stamped.
    They are kept only when the stamp had settled (`SETTLE_SECONDS`) at the read, so that any
    later write moves the stamp.
    """

    def __init__(self, settle_seconds: float = SETTLE_SECONDS) -> None:
        self._settle_ns = int(settle_seconds * 1e9)
        self._stamp: FileStamp | None = None
        self._counts: DayCounts = {}
        self._lock = threading.Lock()  # prometheus_client may serve two scrapes at once

    def get(self, stamp: FileStamp, now_ns: int, read: Callable[[], DayCounts]) -> DayCounts:
        with self._lock:
            if stamp == self._stamp:
                return self._counts
            counts = read()
            settled = stamp.newest_ns <= now_ns - self._settle_ns
            self._stamp, self._counts = (stamp, counts) if settled else (None, {})
            return counts


class WarehouseUnreadable(Exception):
    """This scrape could not read the warehouse (locked, missing, down, too slow): why.
    `held_by_writer`: a run writing the DuckDB file holds it, as every run does for a while."""

    def __init__(self, why: str, held_by_writer: bool = False) -> None:
        super().__init__(why)
        self.held_by_writer = held_by_writer


class WarehouseDayCounts(Protocol):
    def read(self) -> DayCounts:
        """{"loaded"|"dead_lettered": {(source, dt): rows}}; raises WarehouseUnreadable."""
        ...


def _read_counts(reader: WarehouseReader) -> DayCounts:
    loaded = {}
    for source in FILE_SOURCES:
        if reader.has_table(f"raw.{source}"):
            rows = reader.frame(
                f"SELECT CAST(dt AS VARCHAR) AS dt, count(*) AS n FROM raw.{source} GROUP BY dt"
            )
            loaded.update({(source, dt): int(n) for dt, n in rows.itertuples(index=False)})
    dead = {}
    if reader.has_table("raw.dead_letter"):
        # The file sources' only: an app table's dead letters have no loaded rows per day, and
        # its `dead_letters` check reports them.
        sources = ", ".join(f"'{source}'" for source in FILE_SOURCES)
        rows = reader.frame(
            "SELECT source, CAST(dt AS VARCHAR) AS dt, count(*) AS n FROM raw.dead_letter "
            f"WHERE source IN ({sources}) GROUP BY source, dt"
        )
        dead = {(source, dt): int(n) for source, dt, n in rows.itertuples(index=False)}
    return {"loaded": loaded, "dead_lettered": dead}


class DuckDBDayCounts:
    """The counts of the DuckDB file at `path`, read again only when the file changed."""

    def __init__(self, path: Path, cache: DayCountsCache | None = None) -> None:
        self._path = path
        self._cache = cache or DayCountsCache()

    def read(self) -> DayCounts:
        try:
            # A missing file is not created by a read-only open: DuckDB raises instead.
            conn = connect_with_lock_wait(
                str(self._path), read_only=True, timeout=LOCK_WAIT_SECONDS
            )
        except duckdb.Error as error:
            raise WarehouseUnreadable(str(error), is_lock_conflict(error)) from error
        try:
            # Stamped while the connection holds the file: no writer can change it until close.
            return self._cache.get(
                file_stamp(self._path), time.time_ns(), lambda: _read_counts(DuckDBReader(conn))
            )
        except duckdb.Error as error:
            raise WarehouseUnreadable(str(error)) from error
        finally:
            conn.close()


class BackgroundRead:
    """A value read by a thread of its own, at most every `max_age` seconds; a caller waits
    for a read at most `wait` seconds. One read at a time: callers during a read share it."""

    def __init__(
        self,
        read: Callable[[], DayCounts],
        max_age: float,
        wait: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read, self._max_age, self._wait, self._clock = read, max_age, wait, clock
        self._lock = threading.Lock()
        self._last: tuple[float, DayCounts] | None = None  # (read at, value) of the last success
        self._pending: Future[DayCounts] | None = None

    def _run(self, future: Future[DayCounts]) -> None:
        try:
            value = self._read()
        except BaseException as error:  # handed to the waiting scrape, which reports it
            future.set_exception(error)
            return
        with self._lock:
            self._last = (self._clock(), value)
        future.set_result(value)

    def _start(self) -> Future[DayCounts]:
        """The read under way, or a new one; called holding the lock."""
        if self._pending is None or self._pending.done():
            self._pending = Future()
            # A daemon: a read stuck on an unreachable cluster must not hold up exit.
            threading.Thread(target=self._run, args=(self._pending,), daemon=True).start()
        return self._pending

    def start(self) -> None:
        """Begin a read now, so that the first `get` may find it done."""
        with self._lock:
            self._start()

    def get(self) -> DayCounts:
        with self._lock:
            if self._last and self._clock() - self._last[0] < self._max_age:
                return self._last[1]
            pending = self._start()
        try:
            return pending.result(timeout=self._wait)
        except WaitedTooLong:
            raise WarehouseUnreadable(f"no answer within {self._wait:g} s") from None
        except Exception as error:
            raise WarehouseUnreadable(str(error)) from error


class SparkDayCounts:
    """The counts of the Spark warehouse, at most `SPARK_MAX_AGE_SECONDS` old."""

    def __init__(
        self,
        warehouse: Warehouse,
        max_age: float = SPARK_MAX_AGE_SECONDS,
        wait: float = SPARK_WAIT_SECONDS,
    ) -> None:
        self._warehouse = warehouse
        self._background = BackgroundRead(self._read_cluster, max_age, wait)
        self._background.start()  # a session takes seconds: the first scrape should not wait

    def _read_cluster(self) -> DayCounts:
        with self._warehouse.reader(fail_fast=True) as reader:
            return _read_counts(reader)

    def read(self) -> DayCounts:
        return self._background.get()


def warehouse_day_counts(settings: Settings) -> WarehouseDayCounts:
    """The day counts of the warehouse of the engine the settings name."""
    if settings.engine == "spark":
        return SparkDayCounts(warehouse_of(settings))
    return DuckDBDayCounts(settings.warehouse)


def recent_days(counts: DayCounts, days: int) -> DayCounts:
    """`counts` of the last `days` arrival days, back from the newest day of any source.

    A series per source and day grew by one a day, forever: Prometheus' memory and every
    query over rows_* grew with the platform's age. Back from the newest day the data holds,
    not from today's date: the window is as full when the feeds stop (or the clock is off), and
    an old day loaded late is still a day of the window if it is in it.
    """
    dates = [dt for kind in counts.values() for _, dt in kind if dt]
    if not dates:
        return counts
    first = (date.fromisoformat(max(dates)) - timedelta(days=days - 1)).isoformat()
    return {
        kind: {(source, dt): n for (source, dt), n in rows.items() if dt and dt >= first}
        for kind, rows in counts.items()
    }


class WarehouseMetrics:
    """The warehouse's series, for the last `days` arrival days (`recent_days`). A scrape that
    cannot read it serves the last counts it read, with `data_platform_warehouse_up` 0: rows_*
    series that vanished whenever a run held the file made the dead-letter alert resolve, then
    fire again, on every writing run."""

    def __init__(self, day_counts: WarehouseDayCounts, days: int = METRICS_DAYS) -> None:
        self._day_counts = day_counts
        self._days = days
        self._last: DayCounts = {}
        self._unreadable: str | None = None  # why the last scrape could not read it

    def _report(self, error: WarehouseUnreadable) -> None:
        """One log line when the warehouse becomes unreadable, or for another reason: a file
        missing or corrupt read as `warehouse_up 0` alone, like a run holding it, and its
        cause was nowhere. A writer's lock, which every run takes, is not logged."""
        why = first_line(error)
        if not error.held_by_writer and why != self._unreadable:
            print(f"data-platform metrics: the warehouse is unreadable: {why}", file=sys.stderr)
        self._unreadable = why

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "data_platform_warehouse_up",
            "1 when this scrape read the warehouse; 0 when it was locked by a writer, unreadable "
            "or (Spark) did not answer in time (the rows_* series are then the last read).",
        )
        try:
            self._last = counts = recent_days(self._day_counts.read(), self._days)
            self._unreadable = None
            up.add_metric([], 1)
        except WarehouseUnreadable as error:
            counts = self._last
            up.add_metric([], 0)
            self._report(error)
        yield up
        for kind, doc in (
            ("loaded", "Rows of the raw table for the source and arrival day (dt)."),
            ("dead_lettered", "Rows of raw.dead_letter for the source and arrival day (dt)."),
        ):
            if kind not in counts:
                continue
            family = GaugeMetricFamily(f"data_platform_rows_{kind}", doc, labels=["source", "dt"])
            for (source, dt), n in sorted(counts[kind].items()):
                family.add_metric([source, dt], n)
            yield family
