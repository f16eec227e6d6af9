"""Opening the DuckDB warehouse while another process may hold its single-writer lock.

DuckDB lets no second process open a file a writer holds, not even read-only: a reader or a
run outside the `duckdb` pool must wait for the writer. Kept free of dagster, so that
`data-platform sql` starts in a fraction of a second.
"""

from __future__ import annotations

import time

import duckdb

# Another process (a run outside the `duckdb` pool, a notebook) may hold DuckDB's single-writer
# lock for a moment; waiting is better than failing a run that would succeed a second later.
LOCK_WAIT_SECONDS = 120.0


def is_lock_conflict(error: duckdb.Error) -> bool:
    """True for DuckDB's "Could not set lock on file" (another process holds the file)."""
    # Not any "lock": a corrupt file's "... checksum ... in block ..." holds one too, and was
    # waited on for the whole lock timeout, then reported as locked by a writer.
    return isinstance(error, duckdb.IOException) and "could not set lock" in str(error).lower()


def connect_with_lock_wait(
    path: str, read_only: bool = False, timeout: float = LOCK_WAIT_SECONDS
) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file, waiting up to `timeout` seconds while another process writes it.

    On timeout DuckDB's own IOException propagates: it names the process holding the lock.
    """
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            conn = duckdb.connect(path, read_only=read_only)
        except duckdb.IOException as err:
            if not is_lock_conflict(err) or time.monotonic() > deadline:
                raise
            time.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
            delay = min(delay * 2, 2.0)
            continue
        # Every timestamp in the warehouse is UTC; offset-less input is read as UTC too.
        conn.execute("SET TimeZone = 'UTC'")
        return conn
