"""The lines a fast path does not vouch for, handed over by the one statement that reads them.

A fast path's INSERT reads each file once and loads the lines it vouches for; the others (a
few in a thousand on a day with defects) go to the diagnosing query. A DuckDB statement has
one output, so those lines leave it through a function with side effects, `park_line`, which
the fast path calls in the ELSE of a CASE: DuckDB evaluates it on exactly the rows that reach
it, and on none of a chunk whose lines are all vouched for (a NULL line, a blank one, it skips:
no record). Reading the files a second time for them, an anti join against the rows loaded,
cost 0.31 s of 1.55 on the simulator's defective day of 1M events, 0.13 s of it gunzipping
again; this costs ~2 us a line parked.

The lines are written to a Parquet file a batch at a time, so memory holds one batch: a day
whose every line is left over (a new field in every event) parks the whole day. A batch is
bounded in characters as well as lines: Python holds it outside DuckDB's memory limit, and
_BATCH_LINES lines of 4 KB events are 200 MB.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from data_platform.ingestion.file_lines import sql_string
from data_platform.scratch import scratch_folder

# What the fast path calls on a line it does not vouch for; it returns false (not loaded).
PARK_LINE = "park_line"
# Lines held before they are written: ~10 MB of the simulator's lines.
_BATCH_LINES = 50_000
# Or characters (a UTF-8 byte or more each), whichever comes first: a batch of long lines is
# written early (one line may be up to MAX_RECORD_BYTES on its own).
_BATCH_CHARS = 8_000_000


class ParkedLines:
    """Lines parked during one statement: `sql` reads them, once `close`d."""

    def __init__(self, path: Path):
        self._path = path
        self._batch: list[tuple[int, int, str]] = []
        self._batch_chars = 0
        self._writer = None  # a pyarrow.parquet.ParquetWriter, once a batch is written
        self._closed = False
        # DuckDB calls the function from each of its threads.
        self._lock = threading.Lock()
        # What parking raised, if anything: DuckDB reports it as a failed read of the files.
        self.error: BaseException | None = None

    def park(self, file_index: int, line_number: int, line: str) -> bool:
        try:
            with self._lock:
                self._batch.append((file_index, line_number, line))
                self._batch_chars += len(line)
                if len(self._batch) >= _BATCH_LINES or self._batch_chars >= _BATCH_CHARS:
                    self._write()
        except BaseException as error:
            self.error = error
            raise
        return False

    def _write(self) -> None:
        # Imported here: loading the Definitions defers the dataframe stack.
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema(
            [("file_index", pa.int32()), ("line_number", pa.int64()), ("line", pa.string())]
        )
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._path, schema)
        if self._batch:
            columns = list(zip(*self._batch, strict=True))
            self._writer.write_table(pa.table(columns, schema=schema))
            self._batch, self._batch_chars = [], 0

    def close(self) -> None:
        """Write what is left; the file then holds every line parked (none: an empty one)."""
        with self._lock:
            if self._closed:
                return
            self._write()
            self._writer.close()
            self._closed = True

    @property
    def sql(self) -> str:
        """`(file_index, line_number, line)` of every line parked."""
        return f"FROM read_parquet({sql_string(str(self._path))})"


class LineParking:
    """`park_line` on one connection, parking into the ParkedLines of the statement running."""

    def __init__(self) -> None:
        self._parked: ParkedLines | None = None

    def park(self, file_index: int, line_number: int, line: str) -> bool:
        if self._parked is None:
            raise RuntimeError(f"{PARK_LINE}() called outside LineParking.lines()")
        return self._parked.park(file_index, line_number, line)

    @contextmanager
    def lines(self) -> Iterator[ParkedLines]:
        """Where the lines parked until the block ends go; they are gone after it."""
        with scratch_folder("parked") as folder:
            self._parked = ParkedLines(folder / "lines.parquet")
            try:
                yield self._parked
            finally:
                self._parked = None


@contextmanager
def parking_lines(conn: duckdb.DuckDBPyConnection) -> Iterator[LineParking]:
    """`park_line(file_index, line_number, line)` on `conn` while the block runs. Registered
    outside any transaction: removing a function fails in an aborted one, which would hide the
    error that aborted it (a file's failed read, that the ingestion recovers from)."""
    parking = LineParking()
    conn.create_function(
        PARK_LINE, parking.park, ["INTEGER", "BIGINT", "VARCHAR"], "BOOLEAN", side_effects=True
    )
    try:
        yield parking
    finally:
        conn.remove_function(PARK_LINE)
