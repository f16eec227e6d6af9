"""Benchmarks of the quality gates on 1,000,000 rows, against bare DuckDB doing the same work.

`run()` returns (what, seconds, bare DuckDB seconds). The Pandera gate must stay well under
5 s for a million rows: it runs inside every ingestion run, before downstream steps may start.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from data_platform.checks.conservation import count_records
from data_platform.checks.pandera_gate import Gate, fetch_frame, gate_query, validate
from data_platform.checks.scope import WHOLE_TABLE
from data_platform.ingestion.tables import EVENTS, ensure_raw_tables

ROWS = 1_000_000
DAYS = 10
# 10 days x 10 files of 10,000 lines, realistic shapes (ids, types, session ids, file keys).
FAKE_EVENTS = f"""
INSERT INTO raw.events
SELECT 'evt_' || printf('%024x', hash(i)), i % 5000,
    ['page_view', 'product_view', 'add_to_cart', 'purchase'][1 + i % 4],
    TIMESTAMP '2026-01-01' + to_seconds(i % 86400) + to_days((i // {ROWS // DAYS})::INTEGER),
    'sess_' || (i // 20)::VARCHAR, '{{"page": "/"}}', NULL,
    'events/dt=' || strftime(DATE '2026-01-01' + (i // {ROWS // DAYS})::INTEGER, '%Y-%m-%d')
        || '/f' || (i // 10000 % 10)::VARCHAR || '.jsonl',
    i % 10000 + 1, TIMESTAMP '2026-02-01', DATE '2026-01-01' + (i // {ROWS // DAYS})::INTEGER
FROM range({ROWS}) AS t(i)
"""
# The raw.events gate's rules, written as one SQL aggregate: the floor for the same verdict.
RULES_IN_SQL = """
SELECT count(*) FILTER (event_id IS NULL OR user_id IS NULL OR event_type IS NULL
        OR occurred_at IS NULL OR _source_file IS NULL OR _loaded_at IS NULL OR dt IS NULL
        OR _line_number < 1
        OR NOT starts_with(_source_file, 'events/dt=' || strftime(dt, '%Y-%m-%d') || '/')),
    count(*) - count(DISTINCT (_source_file, _line_number))
FROM raw.events
"""


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def bench_pandera_gate(conn: duckdb.DuckDBPyConnection) -> tuple[str, float, float]:
    gate = Gate(None, "RawEvents", "raw.events", partitioned=True)
    sql, params = gate_query(gate, WHOLE_TABLE)

    def check() -> None:
        outcome = validate(gate.model_class, fetch_frame(conn, sql, params), shown=10)
        assert outcome.passed and outcome.rows == ROWS, outcome.failing_checks

    return (
        "pandera gate raw.events (fetch + validate)",
        timed(check),
        timed(lambda: conn.execute(RULES_IN_SQL).fetchall()),
    )


def bench_conservation_recount(conn: duckdb.DuckDBPyConnection, folder: Path):
    path = folder / "events.jsonl"
    conn.execute(f"COPY (SELECT * EXCLUDE (_rescued) FROM raw.events) TO '{path}' (FORMAT json)")

    def recount() -> None:
        assert count_records(path, header_lines=0).records == ROWS

    baseline = timed(
        lambda: conn.execute(
            "SELECT count(*) FROM read_csv(?, columns = {'line': 'VARCHAR'}, delim = '\\0', "
            "quote = '', escape = '', header = false)",
            [str(path)],
        ).fetchall()
    )
    return ("conservation recount of a 1M-line JSONL file", timed(recount), baseline)


def run() -> list[tuple[str, float, float]]:
    with tempfile.TemporaryDirectory(prefix="bench-checks-") as tmp:
        conn = duckdb.connect(str(Path(tmp) / "bench.duckdb"))
        ensure_raw_tables(conn, (EVENTS,))
        conn.execute(FAKE_EVENTS)
        try:
            return [bench_pandera_gate(conn), bench_conservation_recount(conn, Path(tmp))]
        finally:
            conn.close()


if __name__ == "__main__":
    for what, seconds, bare in run():
        print(f"{what}: {seconds:.2f}s (bare DuckDB {bare:.2f}s, x{seconds / bare:.1f})")
