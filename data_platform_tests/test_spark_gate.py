"""The Pandera gates on Spark give the DuckDB gate's outcome (README.md, "Choosing an engine").

The same rows, with known defects, go into a DuckDB table and a local Spark session (local[1],
one session for the module, no metastore). The DuckDB gate judges them with Pandera (whole, and
streamed in small batches with uniqueness in SQL); the Spark gate renders the model's rules as
SQL and counts on Spark. Both must report the rules and counts this test computes on its own,
in plain Python, from the rows it wrote; clean rows pass on both. Every gate's model either
renders or is refused naming its custom checks, at test time, never silently passed.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pytest
from pandera.typing import Series

from data_platform.checks import models, pandera_gate
from data_platform.checks.gates import GATES
from data_platform.checks.models import Text, Timestamp, day, text, timestamp
from data_platform.checks.pandera_gate import Gate, Outcome, validate_days, validate_window
from data_platform.checks.scope import WHOLE_TABLE, Window
from data_platform.checks.spark_gate import validate_spark_days, validate_spark_window
from data_platform.checks.spark_rules import UnrenderableRule, render
from data_platform.checks.vocabulary import vocabulary
from data_platform_tests.test_dbt_spark import driver_java_options, java_home

PATTERN = r"^[0-9a-f]{4}$"
REF = r"^R\d{2}'s$"  # a backslash and a quote: the SQL literal must escape both
KINDS = ["a", "b"]
EVENT_TYPES = vocabulary().event_types
SHOWN = 100


class Probe(pa.DataFrameModel):
    """Every built-in rule the gates' models use, and a few more of Pandera's."""

    id: Series[np.int64] = pa.Field(unique=True)
    kind: Series[Text] = text(isin=KINDS)
    code: Series[Text] = text(nullable=True, str_matches=PATTERN)
    ref: Series[Text] = text(nullable=True, str_matches=REF)
    name: Series[Text] = text(str_length={"min_value": 1, "max_value": 5})
    qty: Series[np.int64] = pa.Field(ge=1, le=10)
    price: Series[float] = pa.Field(in_range={"min_value": 0, "max_value": 100})
    file: Series[Text] = text()
    line: Series[np.int64] = pa.Field(gt=0)
    at: Series[Timestamp] = timestamp()
    dt: Series[Timestamp] = day()

    class Config:
        unique: ClassVar[list[str]] = ["file", "line"]


SCHEMA = pyarrow.schema(
    [
        ("id", pyarrow.int64()),
        ("kind", pyarrow.string()),
        ("code", pyarrow.string()),
        ("ref", pyarrow.string()),
        ("name", pyarrow.string()),
        ("qty", pyarrow.int64()),
        ("price", pyarrow.float64()),
        ("file", pyarrow.string()),
        ("line", pyarrow.int64()),
        ("at", pyarrow.timestamp("us")),
        ("dt", pyarrow.date32()),
    ]
)
DAYS = [dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 1, 3)]
WINDOW = Window(DAYS[0], DAYS[1])


def clean_rows(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "kind": KINDS[i % 2],
            "code": f"{i:04x}" if i % 3 else None,
            "ref": f"R{i % 100:02d}'s",
            "name": "n" * (1 + i % 5),
            "qty": 1 + i % 10,
            "price": float(i % 100),
            "file": f"f{i % 3}",
            "line": i + 1,
            "at": dt.datetime(2026, 1, 1) + dt.timedelta(minutes=17 * i),
            "dt": DAYS[i % 3],
        }
        for i in range(count)
    ]


def defective_rows() -> list[dict[str, Any]]:
    """Clean rows with defects; rows i with i % 3 == 2 lie on the day outside WINDOW."""
    rows = clean_rows(60)
    defects = {
        0: {"kind": None},  # a NULL in a required column
        1: {"kind": "c"},  # outside isin
        3: {"kind": "A", "name": ""},  # two rules on one row
        4: {"id": 6},  # a duplicated unique key (rows 4 and 6)
        7: {"qty": 0},  # below ge
        9: {"qty": 11, "price": 100.5},  # above le, out of range
        10: {"qty": None},  # a NULL in a BIGINT: Pandera's dtype rule breaks too
        12: {"price": -0.01},
        13: {"price": math.nan},  # NaN is missing to pandas
        15: {"code": "abcg"},  # wrong pattern
        16: {"code": "ABCD", "ref": r"R\1's"},
        18: {"ref": "R12s"},
        19: {"name": "toolong"},
        21: {"file": "f1", "line": 23},  # the (file, line) of row 22 too
        24: {"line": 0},
        25: {"file": "f2", "line": 27},  # the key of row 26, outside the window
        27: {"id": 29},  # the id of row 29, outside the window
        30: {"kind": None},
        32: {"kind": "z"},  # outside the window
    }
    for i, changes in defects.items():
        rows[i] = {**rows[i], **changes}
    return rows


def expected_outcome(rows: list[dict[str, Any]], window: Window) -> dict[str, Any]:
    """The rules broken in `window`, counted in plain Python from the rows themselves, with the
    failure case each failing row shows (a key of two columns as `file, line`)."""
    rows = [r for r in rows if window.contains(r["dt"])]
    missing = {c: [r[c] is None for r in rows] for c in SCHEMA.names}
    missing["price"] = [r["price"] is None or math.isnan(r["price"]) for r in rows]
    ids = Counter(r["id"] for r in rows)
    keys = Counter((r["file"], r["line"]) for r in rows)

    def value_rule(column: str, ok) -> list[bool]:
        return [not m and not ok(r[column]) for r, m in zip(rows, missing[column], strict=True)]

    def shown(column: str | None):
        return lambda r: None if column is None else str(r[column])

    per_row = {
        "kind: not_nullable": (missing["kind"], shown(None)),
        "qty: not_nullable": (missing["qty"], shown(None)),
        "qty: dtype('int64')": (missing["qty"], shown(None)),
        "price: not_nullable": (missing["price"], shown(None)),
        "kind: isin(['a', 'b'])": (value_rule("kind", lambda v: v in KINDS), shown("kind")),
        f"code: str_matches('{PATTERN}')": (
            value_rule("code", lambda v: re.match(PATTERN, v)),
            shown("code"),
        ),
        f"ref: str_matches('{REF}')": (value_rule("ref", lambda v: re.match(REF, v)), shown("ref")),
        "name: str_length(1, 5)": (value_rule("name", lambda v: 1 <= len(v) <= 5), shown("name")),
        "qty: greater_than_or_equal_to(1)": (value_rule("qty", lambda v: v >= 1), shown("qty")),
        "qty: less_than_or_equal_to(10)": (value_rule("qty", lambda v: v <= 10), shown("qty")),
        "price: in_range(0, 100)": (
            value_rule("price", lambda v: 0 <= v <= 100),
            shown("price"),
        ),
        "line: greater_than(0)": (value_rule("line", lambda v: v > 0), shown("line")),
        "id: field_uniqueness": ([ids[r["id"]] > 1 for r in rows], shown("id")),
        "multiple_fields_uniqueness": (
            [keys[(r["file"], r["line"])] > 1 for r in rows],
            lambda r: f"{r['file']}, {r['line']}",
        ),
    }
    cases_per_row = {"multiple_fields_uniqueness": 2}
    rules, values, named = {}, {}, {}
    for rule, (fails, value) in per_row.items():
        if any(fails):
            rules[rule] = (sum(fails), sum(fails) * cases_per_row.get(rule, 1))
            values[rule] = {value(r) for r, f in zip(rows, fails, strict=True) if f}
            named[rule] = {f"id={r['id']}" for r, f in zip(rows, fails, strict=True) if f}
    failing = [any(row) for row in zip(*(fails for fails, _ in per_row.values()), strict=True)]
    return {
        "rows": len(rows),
        "failing_rows": sum(failing),
        "rules": rules,
        "values": values,
        "named": named,
    }


def outcome_summary(outcome: Outcome) -> dict[str, Any]:
    return {
        "rows": outcome.rows,
        "failing_rows": outcome.failing_rows,
        "rules": {
            r.rule: (int(r.failing_rows), int(r.failure_cases))
            for r in outcome.failing_checks.itertuples()
        },
    }


@pytest.fixture(scope="module")
def spark(tmp_path_factory) -> Iterator[Any]:
    """One local Spark for the module: one core, UTC, two shuffle partitions, Spark's own
    in-memory catalog with its warehouse in a temp folder (no Derby metastore)."""
    from pyspark.sql import SparkSession

    mp = pytest.MonkeyPatch()
    mp.setenv("JAVA_HOME", java_home())
    for name in ("SPARK_REMOTE", "MASTER", "PYSPARK_SUBMIT_ARGS"):
        mp.delenv(name, raising=False)  # a local Spark, whatever the shell points at
    session = (
        SparkSession.builder.master("local[1]")
        .appName("data_platform_tests.test_spark_gate")
        .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("spark_warehouse")))
        .config("spark.sql.catalogImplementation", "in-memory")
        .config("spark.driver.extraJavaOptions", driver_java_options(tmp_path_factory))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    mp.undo()


@pytest.fixture(scope="module")
def probe_model() -> Iterator[None]:
    """Gates name their model in checks/models.py: the probe stands there for the module."""
    mp = pytest.MonkeyPatch()
    mp.setattr(models, "Probe", Probe, raising=False)
    yield
    mp.undo()


def load(conn: duckdb.DuckDBPyConnection, spark: Any, table: str, rows: list[dict], schema) -> None:
    """The same rows as a DuckDB table and a Spark temporary view of the same name."""
    data = pyarrow.Table.from_pylist(rows, schema=schema)
    conn.register("incoming", data)
    conn.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM incoming")
    conn.unregister("incoming")
    spark.createDataFrame(data).createOrReplaceTempView(table)


def probe_gate(table: str) -> Gate:
    return Gate(dg.AssetKey(table), "Probe", table, partitioned=True)


@pytest.fixture(scope="module")
def tables(spark, probe_model) -> Iterator[duckdb.DuckDBPyConnection]:
    conn = duckdb.connect()
    load(conn, spark, "defective", defective_rows(), SCHEMA)
    load(conn, spark, "clean", clean_rows(60), SCHEMA)
    load(conn, spark, "customers", customer_rows(), CUSTOMERS)
    load(conn, spark, "events", event_rows(), EVENTS)
    yield conn
    conn.close()


@pytest.mark.parametrize("window", [WINDOW, WHOLE_TABLE], ids=["window", "whole_table"])
def test_same_failures_on_duckdb_and_spark(spark, tables, window, monkeypatch) -> None:
    expected = expected_outcome(defective_rows(), window)
    assert len(expected["rules"]) >= 12 and expected["failing_rows"] < expected["rows"]
    gate = probe_gate("defective")

    duck = validate_window(tables, gate, window, SHOWN)
    monkeypatch.setattr(pandera_gate, "BATCH_ROWS", 7)  # streamed, uniqueness in SQL
    duck_streamed = validate_window(tables, gate, window, SHOWN)
    on_spark = validate_spark_window(spark, gate, window, SHOWN)

    counts = {k: v for k, v in expected.items() if k not in ("values", "named")}
    assert outcome_summary(duck) == counts
    assert outcome_summary(duck_streamed) == counts
    assert outcome_summary(on_spark) == counts
    assert not on_spark.passed
    # Every failing rule shows failure cases, each the value of a row that breaks it.
    for rule, (failing, _) in expected["rules"].items():
        cases = on_spark.cases.loc[on_spark.cases["rule"] == rule, "failure_case"]
        assert 0 < len(cases) <= failing, rule
        assert set(cases) <= expected["values"][rule], rule
    # A case names its row by the model's key (id): a row that breaks the case's rule. Only a
    # rule Pandera reports without a row (a dtype; a uniqueness counted in SQL) names none.
    rowless = {"qty: dtype('int64')", "id: field_uniqueness", "multiple_fields_uniqueness"}
    for outcome in (duck, duck_streamed, on_spark):
        for case in outcome.cases.itertuples():
            if case.row is None:
                assert case.rule in rowless, case
            else:
                assert case.row in expected["named"][case.rule], case
        assert outcome.cases["row"].notna().sum() >= len(expected["rules"]) - len(rowless)


@pytest.mark.parametrize("window", [WINDOW, WHOLE_TABLE], ids=["window", "whole_table"])
def test_same_failures_per_day_on_duckdb_and_spark(spark, tables, window, monkeypatch) -> None:
    """A gate kept per day judges each day of its window as a run of that day alone would: on
    both engines, each day's rules and counts are those computed here from that day's rows
    only (a key repeated on two days repeats nothing), and its cases are that day's."""
    rows = defective_rows()
    expected = {d: expected_outcome(rows, Window(d, d)) for d in DAYS if window.contains(d)}
    assert sum(bool(e["rules"]) for e in expected.values()) >= 2
    gate = probe_gate("defective")

    duck = validate_days(tables, gate, window, SHOWN)
    monkeypatch.setattr(pandera_gate, "BATCH_ROWS", 7)  # each day streamed, uniqueness in SQL
    duck_streamed = validate_days(tables, gate, window, SHOWN)
    on_spark = validate_spark_days(spark, gate, window, SHOWN)

    counts = {
        d: {k: v for k, v in e.items() if k not in ("values", "named")} for d, e in expected.items()
    }
    for outcomes in (duck, duck_streamed, on_spark):
        assert {d: outcome_summary(o) for d, o in outcomes.items()} == counts
        # A case names a row of its own day that breaks the case's rule.
        for d, outcome in outcomes.items():
            for case in outcome.cases.itertuples():
                assert case.row is None or case.row in expected[d]["named"][case.rule], (d, case)
    # Each day shows its own failure cases, each the value of one of its rows that breaks it.
    for d, outcome in on_spark.items():
        for rule, (failing, _) in expected[d]["rules"].items():
            cases = outcome.cases.loc[outcome.cases["rule"] == rule, "failure_case"]
            assert 0 < len(cases) <= failing, (d, rule)
            assert set(cases) <= expected[d]["values"][rule], (d, rule)


def test_clean_rows_pass_on_both(spark, tables) -> None:
    gate = probe_gate("clean")
    for outcome in (
        validate_window(tables, gate, WINDOW, SHOWN),
        validate_spark_window(spark, gate, WINDOW, SHOWN),
    ):
        assert outcome.passed and outcome.failing_rows == 0
        assert outcome.rows == sum(WINDOW.contains(r["dt"]) for r in clean_rows(60))


def test_clean_days_pass_each_with_their_rows_on_both(spark, tables) -> None:
    """A window that passes whole passes on each day, which shows that day's rows only."""
    gate = probe_gate("clean")
    per_day = Counter(r["dt"] for r in clean_rows(60) if WINDOW.contains(r["dt"]))
    assert len(per_day) == 2
    for outcomes in (
        validate_days(tables, gate, WINDOW, SHOWN),
        validate_spark_days(spark, gate, WINDOW, SHOWN),
    ):
        assert all(o.passed and o.failing_rows == 0 for o in outcomes.values())
        assert {d: o.rows for d, o in outcomes.items()} == per_day


CUSTOMERS = pyarrow.schema(
    [
        ("customer_key", pyarrow.string()),
        ("user_id", pyarrow.int64()),
        ("email_hash", pyarrow.string()),
        ("deleted_at", pyarrow.timestamp("us")),
        ("is_deleted", pyarrow.bool_()),
        ("valid_from", pyarrow.timestamp("us")),
        ("valid_to", pyarrow.timestamp("us")),
        ("is_current", pyarrow.bool_()),
    ]
)


def customer_rows() -> list[dict[str, Any]]:
    """SCD2 versions of dim_customers, two per user (closed, then current), with defects that
    break each of DimCustomers' whole-frame rules, which the renderer traces."""
    start = dt.datetime(2026, 1, 1)
    rows = []
    for user in range(12):
        changed = start + dt.timedelta(days=user + 1)
        for current in (False, True):
            rows.append(
                {
                    "customer_key": f"k{user}-{int(current)}",
                    "user_id": user,
                    "email_hash": f"{user:064x}",
                    "deleted_at": None,
                    "is_deleted": False,
                    "valid_from": changed if current else start,
                    "valid_to": None if current else changed,
                    "is_current": current,
                }
            )
    defects = {  # even rows are closed versions, odd ones current
        0: {"valid_from": dt.datetime(2027, 1, 1)},  # runs backwards
        2: {"valid_from": None},  # missing: `valid_from < valid_to` is False in pandas
        4: {"is_current": True},  # closed yet current, and a second current version of user 2
        6: {"email_hash": "F" * 64},
        7: {"deleted_at": start, "email_hash": None},  # deleted without the flag
        8: {"customer_key": "k5-0", "is_deleted": True},  # a repeated key; flag without a date
    }
    for i, changes in defects.items():
        rows[i] = {**rows[i], **changes}
    return rows


def expected_customer_outcome(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """DimCustomers' rules on `rows`, in plain Python. A whole-frame rule's failing row counts
    one failure case per column holding a value (Pandera's report)."""
    versions = Counter((r["user_id"], r["is_current"]) for r in rows)
    keys = Counter(r["customer_key"] for r in rows)
    whole_frame = {
        "valid_from_before_valid_to": lambda r: (
            r["valid_to"] is None
            or (r["valid_from"] is not None and r["valid_from"] < r["valid_to"])
        ),
        "current_exactly_when_open_ended": lambda r: r["is_current"] == (r["valid_to"] is None),
        "one_current_version_per_user": lambda r: (
            not (r["is_current"] and versions[(r["user_id"], r["is_current"])] > 1)
        ),
        "deleted_flag_matches_deleted_at": lambda r: (
            r["is_deleted"] == (r["deleted_at"] is not None)
        ),
    }
    hash_rule = "email_hash: str_matches('^[0-9a-f]{64}$')"
    per_row = {rule: [not ok(r) for r in rows] for rule, ok in whole_frame.items()}
    per_row["valid_from: not_nullable"] = [r["valid_from"] is None for r in rows]
    per_row["customer_key: field_uniqueness"] = [keys[r["customer_key"]] > 1 for r in rows]
    per_row[hash_rule] = [
        r["email_hash"] is not None and not re.match("^[0-9a-f]{64}$", r["email_hash"])
        for r in rows
    ]
    values = [sum(v is not None for v in r.values()) for r in rows]
    rules = {}
    for rule, fails in per_row.items():
        cases = [values[i] if rule in whole_frame else 1 for i, f in enumerate(fails) if f]
        if cases:
            rules[rule] = (len(cases), sum(cases))
    failing = [any(row) for row in zip(*per_row.values(), strict=True)]
    return {"rows": len(rows), "failing_rows": sum(failing), "rules": rules}


def test_traced_custom_checks_same_on_duckdb_and_spark(spark, tables) -> None:
    """The real DimCustomers gate model: its pandas whole-frame checks, traced into SQL, count
    on Spark what Pandera counts on DuckDB."""
    expected = expected_customer_outcome(customer_rows())
    assert len(expected["rules"]) == 7
    gate = Gate(dg.AssetKey("customers"), "DimCustomers", "customers")
    duck = validate_window(tables, gate, WHOLE_TABLE, SHOWN)
    on_spark = validate_spark_window(spark, gate, WHOLE_TABLE, SHOWN)
    assert outcome_summary(duck) == expected
    assert outcome_summary(on_spark) == expected
    shown = on_spark.cases.groupby("rule").size().to_dict()
    assert shown == {rule: failing for rule, (failing, _) in expected["rules"].items()}


EVENTS = pyarrow.schema(
    [
        ("event_id", pyarrow.string()),
        ("user_id", pyarrow.int64()),
        ("event_type", pyarrow.string()),
        ("occurred_at", pyarrow.timestamp("us")),
        ("occurred_date", pyarrow.date32()),
        ("is_orphan_user", pyarrow.bool_()),
        ("dt", pyarrow.date32()),
    ]
)


def event_rows() -> list[dict[str, Any]]:
    """fct_events rows: a day that is not the day of the timestamp (a date against a
    timestamp, through `.dt.floor("D")`), an unknown event type, a repeated event_id."""
    rows = [
        {
            "event_id": f"e{i}",
            "user_id": i % 4,
            "event_type": EVENT_TYPES[i % len(EVENT_TYPES)],
            "occurred_at": dt.datetime(2026, 1, 1, 23, 59) + dt.timedelta(hours=5 * i),
            "occurred_date": None,
            "is_orphan_user": i % 5 == 0,
            "dt": DAYS[0],
        }
        for i in range(16)
    ]
    for r in rows:
        r["occurred_date"] = r["occurred_at"].date()
    rows[1]["occurred_date"] = rows[1]["occurred_date"] - dt.timedelta(days=1)
    rows[2]["occurred_date"] = None  # missing: `date == floor(timestamp)` is False in pandas
    rows[3]["event_type"] = "page_vieww"
    rows[4]["event_id"] = "e5"
    return rows


def test_day_of_timestamp_and_vocabulary_same_on_duckdb_and_spark(spark, tables) -> None:
    """The real FctEvents gate model: a DATE compared with a TIMESTAMP floored to its day, and
    event types against the vocabulary, count alike on both engines."""
    rows = event_rows()
    day_rule = "occurred_date_is_day_of_occurred_at"
    wrong_day = [r["occurred_date"] != r["occurred_at"].date() for r in rows]
    cases = [
        sum(v is not None for v in r.values()) for r, w in zip(rows, wrong_day, strict=True) if w
    ]
    types = [r["event_type"] not in EVENT_TYPES for r in rows]
    ids = Counter(r["event_id"] for r in rows)
    repeated = [ids[r["event_id"]] > 1 for r in rows]
    expected = {
        "rows": len(rows),
        "failing_rows": sum(map(any, zip(wrong_day, types, repeated, strict=True))),
        "rules": {
            day_rule: (len(cases), sum(cases)),
            "occurred_date: not_nullable": (1, 1),
            f"event_type: isin({list(EVENT_TYPES)})": (sum(types), sum(types)),
            "event_id: field_uniqueness": (sum(repeated), sum(repeated)),
        },
    }
    assert expected["rules"][day_rule][0] == 2
    gate = Gate(dg.AssetKey("events"), "FctEvents", "events")
    assert outcome_summary(validate_window(tables, gate, WHOLE_TABLE, SHOWN)) == expected
    assert outcome_summary(validate_spark_window(spark, gate, WHOLE_TABLE, SHOWN)) == expected


DEAD_LETTERS = pyarrow.schema(
    [
        ("source", pyarrow.string()),
        ("dt", pyarrow.date32()),
        ("source_file", pyarrow.string()),
        ("line_number", pyarrow.int64()),
        ("raw_record", pyarrow.string()),
        ("error", pyarrow.string()),
        ("rejected_at", pyarrow.timestamp("us")),
    ]
)


def dead_letter_rows() -> list[dict[str, Any]]:
    """raw.dead_letter rows of both sources, four of them not filed under their own day."""
    rows = [
        {
            "source": source,
            "dt": DAYS[i % 2],
            "source_file": f"{source}/dt={DAYS[i % 2]}/part-{i}.jsonl",
            "line_number": i + 1,
            "raw_record": "{not json",
            "error": "not valid JSON",
            "rejected_at": dt.datetime(2026, 1, 3, 4, 5),
        }
        for i, source in enumerate(["events", "payments"] * 5)
    ]
    rows[1]["source_file"] = f"payments/dt={DAYS[2]}/late.csv"  # another day's folder
    rows[2]["source_file"] = f"payments/dt={DAYS[0]}/part-2.csv"  # another source's folder
    rows[3]["source_file"] = f"payments/dt={DAYS[1]}"  # the folder's name, not a file in it
    rows[4]["source"] = None  # no source: no folder it could be filed under
    return rows


def test_filed_under_its_dt_same_on_duckdb_and_spark(spark, tables) -> None:
    """The real RawDeadLetter gate model: a file key against the folder of its source and day,
    a test pandas makes per (source, day) and Spark per row, counts alike on both engines."""
    rows = dead_letter_rows()
    load(tables, spark, "dead_letters", rows, DEAD_LETTERS)
    gate = Gate(dg.AssetKey("dead_letters"), "RawDeadLetter", "dead_letters")
    on_duckdb = outcome_summary(validate_window(tables, gate, WHOLE_TABLE, SHOWN))
    assert outcome_summary(validate_spark_window(spark, gate, WHOLE_TABLE, SHOWN)) == on_duckdb
    misfiled = [
        r["source"] is None or not r["source_file"].startswith(f"{r['source']}/dt={r['dt']}/")
        for r in rows
    ]
    assert sum(misfiled) == 4
    assert on_duckdb["rules"]["filed_under_its_dt"][0] == sum(misfiled)


@pytest.mark.parametrize("gate", GATES, ids=[f"{g.table}:{g.model}:{g.name}" for g in GATES])
def test_every_gate_renders_every_rule(gate: Gate) -> None:
    """Every rule of every gate reaches Spark: none is ever dropped on the way (a rule the
    renderer cannot express is refused by name, see the test below)."""
    schema = gate.model_class.to_schema()
    rendering = render(schema)
    rules = {r.rule for r in rendering.row_rules}
    assert {c.name for c in schema.checks} <= rules
    assert {f"{n}: not_nullable" for n, c in schema.columns.items() if not c.nullable} <= rules
    checks = {f"{n}: {c.error or c.name}" for n, col in schema.columns.items() for c in col.checks}
    assert checks <= rules
    assert rendering.columns == tuple(schema.columns)


def test_custom_checks_are_traced_or_refused_by_name() -> None:
    """A custom check named like a built-in is traced, not taken for the built-in; one that
    uses what has no SQL form (here `.apply`, a Python function per value) is refused."""

    class LooksBuiltIn(pa.DataFrameModel):
        x: Series[np.int64]

        @pa.check("x", name="isin")
        def positive(cls, series):
            return series > 0

    class PerValue(pa.DataFrameModel):
        y: Series[np.int64]

        @pa.dataframe_check
        def per_value(cls, df):
            return df["y"].apply(lambda v: v > 0)

    [traced] = [r for r in render(LooksBuiltIn).row_rules if r.rule == "x: isin"]
    assert "(`x`) > (0)" in traced.fails and " IN (" not in traced.fails
    with pytest.raises(UnrenderableRule, match=r"^PerValue: cannot render") as refused:
        render(PerValue)
    assert refused.value.rules == ["per_value (pandas `.apply`, which the tracer does not render)"]


def test_a_nan_fails_a_builtin_check_that_judges_missing_values_as_pandas_does(spark) -> None:
    """With ignore_na=False a built-in check judges missing values too: pandas (the DuckDB
    gate) fails NaN > 0, while Spark's NaN is above every number; rendered on the column as
    pandas sees it (NaN missing), Spark fails the same rows."""

    class Priced(pa.DataFrameModel):
        price: Series[float] = pa.Field(gt=0, ignore_na=False, nullable=True)

    prices = [1.5, math.nan, -1.0, None]
    pandas_fails = ~(pd.Series(prices, dtype=float) > 0)
    [rule] = [r for r in render(Priced, {"price": "double"}).row_rules if "greater_than" in r.rule]
    frame = spark.createDataFrame([(p,) for p in prices], "price DOUBLE")
    spark_fails = [row[0] for row in frame.selectExpr(rule.fails).collect()]
    assert spark_fails == pandas_fails.tolist() == [False, True, True, True]
