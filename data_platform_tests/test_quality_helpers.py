"""The pure parts of the quality gates: arithmetic, windows, reports and the Pandera models."""

from __future__ import annotations

import gc
import gzip
import math
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from data_platform.checks import models, pandera_gate
from data_platform.checks.anomaly import days_of, days_to_judge, score_partitions
from data_platform.checks.conservation import balances, count_records, warehouse_counts
from data_platform.checks.dead_letter import judge
from data_platform.checks.pandera_gate import (
    Gate,
    _collect_only_new_objects,
    fetch_frame,
    gate_query,
    validate,
)
from data_platform.checks.report import DAYS_DESCRIBED, days_described, markdown_table
from data_platform.checks.rules import ratio_severity, robust_z, within_tolerance
from data_platform.checks.scope import WHOLE_TABLE, Window
from data_platform.checks.thresholds import QualityThresholds
from data_platform.ingestion.file_formats import EVENT_FILES
from data_platform.ingestion.tables import DEAD_LETTER, EVENTS, PAYMENTS, ensure_raw_tables
from data_platform.resources.landing import LandingZone
from data_platform.resources.warehouse_reader import DuckDBReader
from data_platform_tests.helpers import put_lines

WARN, ERROR = dg.AssetCheckSeverity.WARN, dg.AssetCheckSeverity.ERROR


@pytest.mark.parametrize(
    ("bad", "total", "expected"),
    [
        (0, 1000, None),
        (10, 1000, None),  # exactly at the warn ratio: not above it
        (11, 1000, WARN),
        (100, 1000, WARN),
        (101, 1000, ERROR),
        (30, 40, WARN),  # 75 % of a tiny partition: too few records to block on
        (6, 50, ERROR),  # min_records itself is enough to block on
        (5, 49, WARN),
        (0, 0, None),
    ],
)
def test_ratio_severity(bad, total, expected):
    assert ratio_severity(bad, total, 0.01, 0.10, min_records=50) == expected


def test_robust_z_uses_median_and_mad():
    # median 11, absolute deviations 1, 1, 0, 2, 2 -> MAD 1 -> sigma 1.4826
    assert robust_z(20, [10, 12, 11, 13, 9]) == pytest.approx(9 / 1.4826)
    assert robust_z(11, [10, 12, 11, 13, 9]) == 0.0
    # One past incident in the baseline barely moves it.
    assert robust_z(20, [10, 12, 11, 13, 9, 500]) == pytest.approx((20 - 11.5) / (1.5 * 1.4826))


def test_robust_z_on_a_constant_baseline():
    assert robust_z(5, [5, 5, 5]) == 0.0
    assert robust_z(6, [5, 5, 5]) == math.inf
    assert robust_z(4, [5, 5, 5]) == -math.inf
    assert robust_z(990 - 31, [990, 990, 990], min_scale=math.sqrt(990)) == pytest.approx(
        -31 / math.sqrt(990)
    )
    with pytest.raises(ValueError):
        robust_z(1, [])


def test_within_tolerance():
    assert within_tolerance(100.0, 100.9, 0.01)
    assert not within_tolerance(100.0, 101.1, 0.01)
    assert within_tolerance(0.0, 0.0, 0.01)
    assert not within_tolerance(0.0, 0.01, 0.01)


@pytest.mark.parametrize(
    ("overrides", "refusal"),
    [
        (
            {"dead_letter_warn_ratio": 0.2, "dead_letter_error_ratio": 0.1},
            r"^dead_letter_warn_ratio \(0\.2\) must not exceed dead_letter_error_ratio \(0\.1\)$",
        ),
        ({"orphan_user_warn_ratio": 1.5}, r"^orphan_user_warn_ratio is a fraction between 0 and 1"),
        ({"revenue_tolerance": -0.1}, r"^revenue_tolerance must not be negative"),
        # Above 1, revenue reconciliation could never fail.
        ({"revenue_tolerance": 1.5}, r"^revenue_tolerance is a fraction between 0 and 1"),
        (
            {"anomaly_min_history": 8, "anomaly_window": 7},
            r"^anomaly_min_history \(8\) must be between 1 and anomaly_window \(7\)$",
        ),
        (
            {"anomaly_min_history": 0},
            r"^anomaly_min_history \(0\) must be between 1 and anomaly_window",
        ),
        ({"max_days_from_dt": -1}, r"^max_days_from_dt must not be negative"),
    ],
)
def test_thresholds_refuse_inconsistent_values(overrides, refusal):
    """Each refusal names the threshold at fault (not some other check's ValueError)."""
    with pytest.raises(ValueError, match=refusal):
        QualityThresholds(**overrides)


def test_every_threshold_is_documented():
    source = Path(models.__file__).with_name("thresholds.py").read_text()
    for name in QualityThresholds.__dataclass_fields__:
        declaration = source.index(f"    {name}:")
        assert source[declaration:].split("\n")[1].strip().startswith('"""'), name


def test_score_partitions_flags_a_spike_and_waits_for_history():
    counts = {date(2026, 1, d): 1000 + d for d in range(1, 6)} | {date(2026, 1, 6): 3000}
    days = [date(2026, 1, d) for d in range(1, 7)]
    scores = score_partitions(counts, days, window=7, min_history=3)
    assert [s.z is None for s in scores] == [True, True, True, False, False, False]
    assert abs(scores[3].z) < 1 and abs(scores[4].z) < 1
    # baseline 1001..1005: median 1003, MAD 1 -> sigma 1.48 < sqrt(1003), which takes over
    assert scores[5].z == pytest.approx((3000 - 1003) / math.sqrt(1003))
    assert scores[5].baseline_median == 1003


def test_score_partitions_counts_a_missing_day_as_zero_rows():
    counts = {date(2026, 1, d): 1000 for d in range(1, 5)}
    [score] = score_partitions(counts, [date(2026, 1, 5)], window=7, min_history=3)
    assert score.rows == 0 and score.z == pytest.approx(-1000 / math.sqrt(1000))


def test_a_weekly_cycle_is_not_an_anomaly_once_weeks_of_history_exist():
    """Weekdays ~1000 rows, weekends ~650 (real traffic): scored against the week's other days,
    every Saturday and Sunday warned. Same-weekday baselines keep them quiet once three weeks
    exist, and still flag a weekday that drops to a weekend's size."""
    start = date(2026, 1, 5)  # a Monday
    counts = {
        start + timedelta(days=n): (650 if (start + timedelta(days=n)).weekday() >= 5 else 1000)
        + n % 3
        for n in range(35)
    }
    drop = start + timedelta(days=30)  # a Wednesday
    counts[drop] = 650
    days = sorted(counts)
    scores = {s.dt: s for s in score_partitions(counts, days, window=7, min_history=3)}
    fourth_week_on = [d for d in days if d >= start + timedelta(weeks=3)]
    flagged = [d for d in fourth_week_on if abs(scores[d].z) > 3.5]
    assert flagged == [drop]
    assert scores[start + timedelta(days=26)].baseline_median == pytest.approx(651)  # a Saturday


def test_a_source_that_grew_is_judged_at_its_new_size():
    """Weekdays 10,000 rows, weekends 6,000, until the source grows by 10 % for good (a new
    market). Against the median of the same weekday of 7 past weeks, mostly from before the
    growth, every day read as a spike for four weeks: 11,000 against 10,000 is robust z
    1,000 / sqrt(10,000) = 10. Scaled to the level of the week before each day, the past
    weeks say 11,000: the first days of the growth are flagged, the weeks after it are not."""
    start = date(2026, 1, 5)  # a Monday
    grew = start + timedelta(weeks=6)

    def size(day: date) -> int:
        return (6_000 if day.weekday() >= 5 else 10_000) * (11 if day >= grew else 10) // 10

    counts = {start + timedelta(days=n): size(start + timedelta(days=n)) for n in range(70)}
    days = sorted(counts)
    scores = {s.dt: s for s in score_partitions(counts, days, window=7, min_history=3)}
    flagged = [d for d in days if d >= start + timedelta(weeks=3) and abs(scores[d].z) > 3.5]
    # The day it grew and the next three, while the week before each is mostly the old size.
    assert flagged == [grew + timedelta(days=n) for n in range(4)]
    assert scores[grew].z == pytest.approx((11_000 - 10_000) / math.sqrt(10_000))
    three_weeks_on = grew + timedelta(weeks=3)  # a Monday: past Mondays 4 old, 3 new
    assert scores[three_weeks_on].rows == 11_000
    assert scores[three_weeks_on].baseline_median == pytest.approx(11_000)
    # A day at a tenth of its size is still an anomaly at the new level.
    counts[three_weeks_on] = 1_100
    [low] = score_partitions(counts, [three_weeks_on], window=7, min_history=3)
    assert low.z == pytest.approx((1_100 - 11_000) / math.sqrt(11_000))


def test_days_of_a_window():
    counts = {date(2026, 1, 2): 1, date(2026, 1, 4): 1}
    assert days_of(Window(date(2026, 1, 3), date(2026, 1, 4)), counts) == [
        date(2026, 1, 3),
        date(2026, 1, 4),
    ]
    assert days_of(WHOLE_TABLE, counts) == [date(2026, 1, d) for d in (2, 3, 4)]
    assert days_of(WHOLE_TABLE, {}) == []


def test_window_predicates():
    window = Window(date(2026, 1, 3), date(2026, 1, 5))
    assert window.where("dt") == ("dt BETWEEN ? AND ?", [date(2026, 1, 3), date(2026, 1, 5)])
    assert window.contains(date(2026, 1, 5)) and not window.contains(date(2026, 1, 6))
    assert window.describe() == "2026-01-03..2026-01-05"
    assert Window(date(2026, 1, 3), date(2026, 1, 3)).describe() == "2026-01-03"
    assert WHOLE_TABLE.where() == ("TRUE", []) and WHOLE_TABLE.contains(date(1999, 1, 1))


def test_markdown_table_keeps_one_line_per_row():
    frame = pd.DataFrame({"a": ["x|y", "multi\nline", None], "b": [1, 2, pd.NA]})
    assert markdown_table(frame).split("\n") == [
        "| a | b |",
        "|---|---|",
        "| x\\|y | 1 |",
        "| multi line | 2 |",
        "|  |  |",
    ]


def test_count_records_skips_header_and_blank_lines(tmp_path):
    text = "h1,h2\n1,2\n\n   \n3,4\r\n \t\n5,6"  # no newline at the end
    plain, packed = tmp_path / "a.csv", tmp_path / "b.csv.gz"
    plain.write_text(text)
    packed.write_bytes(gzip.compress(text.encode()))
    # Records at lines 2, 5 and 7; the header's line counts when it is a record.
    assert count_records(plain, header_lines=1) == (3, 2 + 5 + 7)
    assert count_records(packed, header_lines=1) == (3, 2 + 5 + 7)
    assert count_records(plain, header_lines=0) == (4, 1 + 2 + 5 + 7)
    bom_only, bom_then_blank = tmp_path / "c.jsonl", tmp_path / "d.jsonl"
    bom_only.write_bytes(b"\xef\xbb\xbf")
    bom_then_blank.write_bytes(b"\xef\xbb\xbf\n\n{}\n")
    assert count_records(bom_only, header_lines=0) == (0, 0)
    assert count_records(bom_then_blank, header_lines=0) == (1, 3)
    # The header is the first line that is not blank (line 4 here); a no-break space line is
    # no blank line (only ASCII white space is), so a record.
    late_header = tmp_path / "e.csv"
    late_header.write_bytes(b"\xef\xbb\xbf\n \t\r\n\nh1,h2\n\n1,2\n\xc2\xa0\n")
    assert count_records(late_header, header_lines=1) == (2, 6 + 7)


def test_in_dt_folder():
    files = pd.Series(["events/dt=2026-01-05/a.jsonl", "events/dt=2026-01-04/b.jsonl", None])
    dts = pd.Series(pd.to_datetime(["2026-01-05", "2026-01-05", "2026-01-05"]))
    assert models.in_dt_folder("events", files, dts).tolist() == [True, False, False]
    assert models.in_dt_folder(pd.Series(["payments"] * 3), files, dts).tolist() == [False] * 3


def raw_events_connection(rows: list[tuple]) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect()
    ensure_raw_tables(conn, (EVENTS,))
    loaded = datetime(2026, 2, 1)
    conn.executemany(
        "INSERT INTO raw.events (event_id, user_id, event_type, occurred_at, session_id, "
        "_source_file, _line_number, _loaded_at, dt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(*row, loaded, date(2026, 1, 5)) for row in rows],
    )
    return conn


def test_every_gate_names_a_pandera_model_of_checks_models():
    import pandera.pandas as pa

    from data_platform.checks.gates import GATES

    for gate in GATES:
        assert issubclass(gate.model_class, pa.DataFrameModel), gate.model
        assert gate.model_class.__name__ == gate.model


def test_the_order_total_gate_recomputes_each_line_from_quantity_and_price():
    """Order 1: 2 x 1.25, its line total and order total 2.50: passes. Order 2: a line of
    1 x 0.10 whose line total came out 0.00 (a wrong formula) and an order total that adds up
    those line totals (5.00): the mart's own line totals could not show it. Order 3 has no
    lines: total 0."""
    from data_platform.checks.gates import GATES

    [gate] = [g for g in GATES if g.table == "marts.fct_orders"]
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA marts")
    conn.execute(
        "CREATE TABLE marts.fct_order_items AS SELECT * FROM (VALUES "
        "(1, 1, 2, 1.25::DECIMAL(10,2), 2.50::DECIMAL(18,2)), (2, 2, 1, 5.00, 5.00), "
        "(3, 2, 1, 0.10, 0.00)) AS t(order_item_id, order_id, quantity, unit_price, line_total)"
    )
    conn.execute(
        "CREATE TABLE marts.fct_orders AS SELECT order_id::BIGINT AS order_id, "
        "7::BIGINT AS user_id, 'paid' AS status, TIMESTAMP '2026-01-05 10:00' AS ordered_at, "
        "DATE '2026-01-05' AS order_date, item_count::BIGINT AS item_count, "
        "order_total::DECIMAL(18,2) AS order_total "
        "FROM (VALUES (1, 1, 2.50), (2, 2, 5.00), (3, 0, 0)) AS t(order_id, item_count, order_total)"
    )
    sql, params = gate_query(gate, WHOLE_TABLE)
    outcome = validate(gate.model_class, fetch_frame(conn, sql, params), 10)
    assert (outcome.rows, outcome.failing_rows) == (3, 1)
    assert list(outcome.failing_checks["rule"]) == ["order_total_is_sum_of_items"]


def gate_outcome(conn, shown: int = 10):
    gate = Gate(dg.AssetKey(["raw", "events"]), "RawEvents", "raw.events", partitioned=True)
    sql, params = gate_query(gate, Window(date(2026, 1, 5), date(2026, 1, 5)))
    return validate(gate.model_class, fetch_frame(conn, sql, params), shown)


def test_the_raw_events_model_accepts_what_ingestion_writes():
    at = datetime(2026, 1, 5, 10)
    conn = raw_events_connection(
        [
            ("e1", 1, "page_view", at, None, "events/dt=2026-01-05/a.jsonl", 1),
            # soft rules are raw's to keep: an unknown type and an orphan-looking user
            ("e1", 900_000_001, "teleport", at, "s", "events/dt=2026-01-05/a.jsonl", 2),
        ]
    )
    outcome = gate_outcome(conn)
    assert outcome.passed and outcome.rows == 2 and outcome.failing_rows == 0


def test_the_raw_events_model_reports_every_hard_failure():
    at = datetime(2026, 1, 5, 10)
    conn = raw_events_connection(
        [
            ("e1", 1, "page_view", at, None, "events/dt=2026-01-05/a.jsonl", 1),
            ("e2", 1, "page_view", at, None, "events/dt=2026-01-05/a.jsonl", 1),  # same line
            (None, 1, "page_view", at, None, "events/dt=2026-01-05/a.jsonl", 3),  # no id
            ("e4", 1, "page_view", at, None, "events/dt=2026-01-04/b.jsonl", 1),  # wrong day
            ("e5", 1, "page_view", at, None, "events/dt=2026-01-05/a.jsonl", 0),  # line 0
        ]
    )
    outcome = gate_outcome(conn, shown=3)
    assert not outcome.passed
    assert outcome.failing_rows == 5
    rules = outcome.failing_checks.set_index("rule")["failing_rows"].to_dict()
    assert rules == {
        "event_id: not_nullable": 1,
        "filed_under_its_dt": 1,
        "_line_number: greater_than_or_equal_to(1)": 1,
        "multiple_fields_uniqueness": 2,
    }
    assert len(outcome.cases) == 3 and set(outcome.cases["rule"]) <= set(rules)


def test_a_window_streamed_in_batches_gives_the_outcome_of_one_frame(monkeypatch):
    """Uniqueness holds across batches because SQL checks it over the whole window."""
    at = datetime(2026, 1, 5, 10)
    rows = [
        (f"e{i}", 1, "page_view", at, None, f"events/dt=2026-01-05/{i % 3}.jsonl", i // 3 + 1)
        for i in range(30)
    ]
    rows += [
        ("dup", 1, "page_view", at, None, "events/dt=2026-01-05/0.jsonl", 1),  # clashes
        (None, 1, "page_view", at, None, "events/dt=2026-01-05/9.jsonl", 1),  # no id
        (None, 1, "page_view", at, None, "events/dt=2026-01-05/9.jsonl", 1),  # no id, clashes
    ]
    conn = raw_events_connection(rows)
    gate = Gate(dg.AssetKey(["raw", "events"]), "RawEvents", "raw.events", partitioned=True)
    window = Window(date(2026, 1, 5), date(2026, 1, 5))
    whole = gate_outcome(conn)
    monkeypatch.setattr(pandera_gate, "BATCH_ROWS", 4)
    streamed = pandera_gate.validate_window(conn, gate, window, shown=10)
    # The last two rows break both rules: counted once each.
    assert (streamed.rows, streamed.failing_rows) == (whole.rows, whole.failing_rows) == (33, 4)
    by_rule = {"event_id: not_nullable": 2, "multiple_fields_uniqueness": 4}
    assert whole.failing_checks.set_index("rule")["failing_rows"].to_dict() == by_rule
    assert streamed.failing_checks.equals(whole.failing_checks)
    assert set(streamed.cases["rule"]) == set(by_rule)


def test_uniqueness_of_one_column_in_sql_skips_nulls_as_pandera_does(monkeypatch):
    """A unique column: NULLs repeat nothing; its rule name and counts are Pandera's."""
    import pandera.pandas as pa

    class Model(pa.DataFrameModel):
        key: str = pa.Field(unique=True, nullable=True)
        value: int = pa.Field(ge=0)

    conn = duckdb.connect()
    conn.execute(
        "CREATE TABLE t AS SELECT key, value::BIGINT AS value, dt FROM (VALUES ('a', 1, DATE '2026-01-05'), "
        "('a', -1, DATE '2026-01-05'), ('b', 2, DATE '2026-01-05'), (NULL, 3, DATE '2026-01-05'), "
        "(NULL, 4, DATE '2026-01-05'), ('c', -5, DATE '2026-01-05')) v(key, value, dt)"
    )
    monkeypatch.setattr(models, "UniqueKeyModel", Model, raising=False)
    gate = Gate(dg.AssetKey(["t"]), "UniqueKeyModel", "t")
    whole = validate(Model, conn.sql("SELECT key, value FROM t").df(), shown=10)
    monkeypatch.setattr(pandera_gate, "BATCH_ROWS", 2)
    streamed = pandera_gate.validate_window(conn, gate, WHOLE_TABLE, shown=10)
    assert pandera_gate.uniqueness_rules(Model) == [("key: field_uniqueness", ["key"])]
    assert (streamed.rows, streamed.failing_rows) == (whole.rows, whole.failing_rows) == (6, 3)
    by_rule = {"key: field_uniqueness": 2, "value: greater_than_or_equal_to(0)": 2}
    assert whole.failing_checks.set_index("rule")["failing_rows"].to_dict() == by_rule
    assert streamed.failing_checks.equals(whole.failing_checks)


def test_a_streamed_gate_keeps_a_users_versions_in_one_batch(monkeypatch):
    """DimCustomers' one current version per user spans rows: streamed in batches of two, user 1's
    two current versions would fall in different batches and each batch would pass alone."""
    conn = duckdb.connect()
    conn.execute(
        "CREATE TABLE t AS SELECT 'k' || n AS customer_key, user_id::BIGINT AS user_id, "
        "NULL::VARCHAR AS email_hash, "
        "NULL::TIMESTAMP AS deleted_at, false AS is_deleted, "
        "TIMESTAMP '2026-01-01' + to_days(n::INTEGER) AS valid_from, "
        "CASE WHEN NOT is_current THEN TIMESTAMP '2026-01-01' + to_days(n::INTEGER + 1) END "
        "AS valid_to, is_current "
        "FROM (VALUES (1, 1, false), (2, 1, true), (3, 1, true), (4, 2, true), (5, 3, true)) "
        "v(n, user_id, is_current)"
    )
    gate = Gate(dg.AssetKey(["marts", "dim_customers"]), "DimCustomers", "t")
    whole = validate(models.DimCustomers, fetch_frame(conn, *gate_query(gate, WHOLE_TABLE)), 10)
    monkeypatch.setattr(pandera_gate, "BATCH_ROWS", 2)
    streamed = pandera_gate.validate_window(conn, gate, WHOLE_TABLE, shown=10)
    by_rule = {"one_current_version_per_user": 2}
    assert whole.failing_checks.set_index("rule")["failing_rows"].to_dict() == by_rule
    assert (streamed.rows, streamed.failing_rows) == (whole.rows, whole.failing_rows) == (5, 2)
    assert streamed.failing_checks.equals(whole.failing_checks)


def test_whole_groups_never_splits_a_key_and_keeps_every_row():
    import pyarrow

    keys = [1, 1, 1, 2, 3, 3, None, None]
    table = pyarrow.table({"k": keys, "i": list(range(len(keys)))})
    batches = table.to_batches(max_chunksize=2)
    parts = list(pandera_gate.whole_groups(iter(batches), ["k"]))
    assert [p["k"].to_pylist() for p in parts] == [[1, 1, 1], [2], [3, 3], [None, None]]
    assert pyarrow.concat_tables(parts)["i"].to_pylist() == list(range(len(keys)))
    assert [len(p) for p in pandera_gate.whole_groups(iter(batches), [])] == [2, 2, 2, 2]


def test_the_uniqueness_rules_of_a_model_and_what_holds_row_by_row():
    assert pandera_gate.uniqueness_rules(models.RawEvents) == [
        ("multiple_fields_uniqueness", ["_source_file", "_line_number"])
    ]
    assert pandera_gate.uniqueness_rules(models.FctEvents) == [
        ("event_id: field_uniqueness", ["event_id"])
    ]
    rows = pandera_gate.row_rules(models.FctEvents)
    assert not rows.unique and not rows.columns["event_id"].unique
    assert models.FctEvents.to_schema().columns["event_id"].unique  # the model is untouched


@pytest.mark.parametrize(
    ("model", "table"),
    [
        (models.RawUsers, "users"),
        (models.RawProducts, "products"),
        (models.RawOrders, "orders"),
        (models.RawOrderItems, "order_items"),
        (models.RawEvents, EVENTS.name),
        (models.RawPayments, PAYMENTS.name),
        (models.RawDeadLetter, DEAD_LETTER.name),
    ],
)
def test_raw_models_agree_with_the_raw_table_declarations(model, table):
    """The UI's column schema comes from ingestion/tables.py; the models must not drift."""
    from data_platform.ingestion.tables import SOURCE_DB_TABLES

    declared = {t.name: t for t in (*SOURCE_DB_TABLES, EVENTS, PAYMENTS, DEAD_LETTER)}[table]
    conn = duckdb.connect()
    ensure_raw_tables(conn, (declared,))
    columns = ", ".join(f'"{c}"' for c in model.to_schema().columns)
    empty = fetch_frame(conn, f"SELECT {columns} FROM {declared.qualified_name}", [])
    # Every column the model names exists, with the dtype the table's type arrives as.
    assert validate(model, empty, 1).passed


def test_dead_letter_judgement_per_partition():
    counts = pd.DataFrame(
        {
            "dt": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]),
            "records": [1000, 1000, 1000, 20],
            "dead_lettered": [5, 20, 150, 10],
        }
    )
    judged = judge(counts, QualityThresholds())
    assert judged["severity"].tolist() == ["", "WARN", "ERROR", "WARN"]
    assert judged["ratio"].tolist() == [0.005, 0.02, 0.15, 0.5]


def test_conservation_balances_files_against_the_warehouse(tmp_path):
    """A lost row, a vanished file, a file landing after the load and rows stored under other
    line numbers than their file's, in one partition."""
    landing = LandingZone(url=str(tmp_path / "landing"))
    day = "2026-01-05"
    files = (("a", ["{}", "", "{}", "{}"]), ("b", ["{}"]), ("c", ["{}", "{}"]), ("late", ["{}"]))
    for name, lines in files:
        put_lines(landing, f"events/dt={day}/{name}.jsonl", lines, tmp_path)
    conn = duckdb.connect()
    ensure_raw_tables(conn, (EVENTS, DEAD_LETTER))
    loaded = datetime.fromtimestamp(
        max(f.modified for f in landing.list_files() if "/late" not in f.key) + 0.5, UTC
    ).replace(tzinfo=None)
    # a.jsonl: lines 1 and 3 loaded, line 4 dead-lettered, nothing lost; b.jsonl: its one row
    # lost; c.jsonl: both rows, the second under line 3 (a reader counting a line break twice);
    # gone.jsonl: rows of a file no longer in the landing zone.
    rows = [("a", 1), ("a", 3), ("c", 1), ("c", 3), ("gone", 1)]
    conn.executemany(
        "INSERT INTO raw.events (event_id, user_id, event_type, occurred_at, _source_file, "
        "_line_number, _loaded_at, dt) VALUES ('e', 1, 't', ?, ?, ?, ?, ?)",
        [(loaded, f"events/dt={day}/{f}.jsonl", n, loaded, date(2026, 1, 5)) for f, n in rows],
    )
    conn.execute(
        "INSERT INTO raw.dead_letter VALUES ('events', ?, ?, 4, '{}', 'bad', ?)",
        [date(2026, 1, 5), f"events/dt={day}/a.jsonl", loaded],
    )
    late = tmp_path / "landing" / "events" / f"dt={day}" / "late.jsonl"
    os.utime(late, (loaded.replace(tzinfo=UTC).timestamp() + 60,) * 2)
    window = Window(date(2026, 1, 5), date(2026, 1, 5))
    found, landed_late = balances(
        landing, EVENT_FILES, warehouse_counts(DuckDBReader(conn), EVENT_FILES, window), window
    )
    assert landed_late == [f"events/dt={day}/late.jsonl"]
    differences = {b.key.split("/")[-1]: (b.difference, b.misnumbered) for b in found}
    assert differences == {
        "a.jsonl": (0, False),
        "b.jsonl": (1, True),
        "c.jsonl": (0, True),
        "gone.jsonl": (-1, True),
    }


def test_reconciliation_before_any_payment_is_built_warns_instead_of_crashing(tmp_path):
    import dagster as dg
    import duckdb

    from data_platform.checks.reconciliation import revenue_reconciliation_check
    from data_platform.checks.thresholds import QualityThresholds
    from data_platform.resources.warehouse import Warehouse

    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA marts")
        conn.execute("CREATE TABLE marts.daily_revenue AS SELECT DATE '2026-01-05' AS revenue_date")
        conn.execute("CREATE TABLE marts.fct_orders AS SELECT 1 AS order_id")
    check = revenue_reconciliation_check(QualityThresholds())
    result = check(warehouse=Warehouse(path=str(path)))
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["missing_tables"].value == ["marts.fct_payments"]


def test_a_run_reaching_today_judges_every_unjudged_day_of_the_look_back():
    """The oldest of the 7 days behind today was never asserted: a range one short left it
    unjudged, an empty day included."""
    today = date(2026, 1, 20)
    week = [today - timedelta(days=n) for n in range(7, 0, -1)]
    assert days_to_judge(Window(today, today), today, set()) == week
    judged = {week[0], week[3]}
    # Yesterday is judged again whatever was judged before: its day may have grown since.
    assert days_to_judge(Window(today, today), today, judged | {week[-1]}) == [
        d for d in week if d not in judged
    ]
    # A window ending before today judges only itself.
    assert days_to_judge(Window(week[2], week[3]), today, set()) == week[2:4]


def test_a_failed_checks_line_says_how_many_days_it_does_not_name():
    days = [f"2026-01-0{n}: {n} of 10 records" for n in range(1, 6)]
    assert DAYS_DESCRIBED == 3
    assert days_described(days) == "; ".join(days[:3]) + "; 2 more day(s)"
    assert days_described(days[:3]) == "; ".join(days[:3])
    assert days_described(days[:4]) == "; ".join(days[:3]) + "; 1 more day(s)"


def test_a_gate_freezes_the_process_objects_once_however_nested():
    """A streamed day of a gate judged per day opens the freeze within the days' own: the
    inner one left, the outer still holds (an unfreeze there gave the remaining days'
    collections the whole process back); the outer one left, nothing stays frozen."""
    assert gc.get_freeze_count() == 0
    with _collect_only_new_objects():
        assert gc.get_freeze_count() > 0
        with _collect_only_new_objects():
            pass
        # Still frozen (the count itself moves: a frozen object freed leaves it).
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
