"""Rows loaded and dead-lettered per source and day, read from the warehouse at each scrape.

DuckDB lets no second process open a file a writer holds, and a reader that holds the file
blocks the next writer. So a scrape waits at most `LOCK_WAIT_SECONDS` for the lock, reads
three small GROUP BYs and closes at once; when a run is writing, the scrape reports
`data_platform_warehouse_up 0` and no warehouse figures rather than block Prometheus.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
from prometheus_client.core import GaugeMetricFamily, Metric

from data_platform.resources.duckdb_lock import connect_with_lock_wait
from data_platform.resources.warehouse import existing_tables

LOCK_WAIT_SECONDS = 0.5
FILE_SOURCES = ("events", "payments")


def day_counts(warehouse: Path) -> dict[str, dict[tuple[str, str], int]]:
    """{"loaded"|"dead_lettered": {(source, dt): rows}}; raises duckdb.Error when unreadable."""
    conn = connect_with_lock_wait(str(warehouse), read_only=True, timeout=LOCK_WAIT_SECONDS)
    try:
        tables = existing_tables(conn)
        loaded = {}
        for source in FILE_SOURCES:
            if f"raw.{source}" in tables:
                rows = conn.execute(f"SELECT dt, count(*) FROM raw.{source} GROUP BY dt")
                loaded.update({(source, str(dt)): n for dt, n in rows.fetchall()})
        dead = {}
        if "raw.dead_letter" in tables:
            rows = conn.execute("SELECT source, dt, count(*) FROM raw.dead_letter GROUP BY ALL")
            dead = {(source, str(dt)): n for source, dt, n in rows.fetchall()}
    finally:
        conn.close()
    return {"loaded": loaded, "dead_lettered": dead}


def collect_warehouse(warehouse: Path) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "data_platform_warehouse_up",
        "1 when this scrape read the warehouse; 0 when it was locked by a writer or unreadable.",
    )
    try:
        # A missing file is not created by a read-only open: DuckDB raises instead.
        counts = day_counts(warehouse)
    except duckdb.Error:
        up.add_metric([], 0)
        yield up
        return
    up.add_metric([], 1)
    yield up
    for kind, doc in (
        ("loaded", "Rows of the raw table for the source and arrival day (dt)."),
        ("dead_lettered", "Rows of raw.dead_letter for the source and arrival day (dt)."),
    ):
        family = GaugeMetricFamily(f"data_platform_rows_{kind}", doc, labels=["source", "dt"])
        for (source, dt), n in sorted(counts[kind].items()):
            family.add_metric([source, dt], n)
        yield family
