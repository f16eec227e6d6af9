"""Landing files -> raw.events / raw.payments / raw.dead_letter, against the contract's file
rules (data_platform/ingestion/record_rules.py)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet
import pytest

from data_platform.assets.raw import DEAD_LETTER_SPEC, RAW_FILE_ASSETS
from data_platform.checks.conservation import conservation_check
from data_platform.checks.vocabulary import vocabulary
from data_platform.ingestion import files as file_ingestion
from data_platform.ingestion import parked_lines
from data_platform.ingestion.file_formats import (
    DUCKDB,
    EVENT_FILES,
    PAYMENT_FILES,
    SPACED_JSON,
    FileFormat,
)
from data_platform.ingestion.file_lines import (
    BLANK,
    HEAD_BYTES,
    MAX_RECORD_BYTES,
    OVERSIZED_KEPT_CHARS,
    OVERSIZED_LINE,
    FileLines,
    expose_leftovers,
    expose_lines,
    has_lone_cr,
)
from data_platform.ingestion.parked_lines import parking_lines
from data_platform.ingestion.record_rules import (
    EVENT_FIELD_NAMES,
    INVALID_JSON,
    MAX_DEPTH,
    NON_NUMERIC_LINE,
    SPACE_CODE_POINTS,
    TIMESTAMP_GRAMMAR,
    TRAILING_COMMA_LINE,
    TRAILING_TEXT_LINE,
    UNICODE_SPACES,
    spelled_event_line,
)
from data_platform.resources.build import build_resources
from data_platform.resources.warehouse import Warehouse
from data_platform_tests.helpers import (
    classify_landing_file,
    count_records,
    materialize_days,
    put_lines,
    query,
)

DAY = date(2026, 1, 5)
FILE_ASSETS = [*RAW_FILE_ASSETS, DEAD_LETTER_SPEC]


def event(event_id: str, **overrides) -> str:
    record = {
        "event_id": event_id,
        "user_id": 7,
        "event_type": "page_view",
        "occurred_at": "2026-01-05T10:00:00Z",
        "session_id": "s1",
        "properties": {"page": "/"},
    }
    record.update(overrides)
    return json.dumps({k: v for k, v in record.items() if v is not ...})


def nested(event_id: str, arrays: int) -> str:
    """An event whose extra field `x` is `arrays` empty arrays deep: the line, one deeper."""
    return event(event_id)[:-1] + ', "x": ' + "[" * arrays + "]" * arrays + "}"


# (line, expected error fragment or None when the record must load)
EVENT_LINES = [
    (event("ok-1"), None),
    (event("digits", user_id="123"), None),
    (event("offset", occurred_at="2026-01-05T10:00:00+02:00"), None),
    (event("naive", occurred_at="2026-01-05T10:00:00"), None),
    (event("drift", browser="firefox", screen={"w": 1}), None),
    (event("ok-1"), None),  # an exact duplicate: raw keeps it
    (event("unknown-type", event_type="teleport"), None),  # soft rule: kept
    ("", None),
    ("   \t", None),
    ('{"event_id": "trunc", "user_id": 1', "not valid JSON"),
    ("[1, 2, 3]", "not a JSON object (got array)"),
    ('"just a string"', "not a JSON object (got string)"),
    (event("missing", event_type=...), "event_type: required"),
    (event("null-user", user_id=None), "user_id: required"),
    (event("bad-user", user_id="abc"), "user_id: expected a 64-bit integer"),
    (event("float-user", user_id=5.5), "user_id: expected a 64-bit integer"),
    (event("whole-float", user_id=12.0), "user_id: expected a 64-bit integer"),
    (event("huge-user", user_id=2**63), "user_id: expected a 64-bit integer"),
    (event("max-digits", user_id=str(2**63 - 1)), None),  # 19 digits: BIGINT's largest
    (event("huge-digits", user_id=str(2**63)), "user_id: expected a 64-bit integer"),
    (event("bad-time", occurred_at="yesterday"), "occurred_at: expected an ISO-8601 timestamp"),
    # DuckDB's cast reads both words as timestamps; neither is ISO-8601 (nor one on Spark).
    (event("epoch", occurred_at="epoch"), "occurred_at: expected an ISO-8601 timestamp"),
    (event("infinity", occurred_at="infinity"), "occurred_at: expected an ISO-8601 timestamp"),
    # No zone is 18 hours or more from UTC: DuckDB's cast applied +99:00 (four days off).
    (
        event("offset-99", occurred_at="2026-01-05T10:00:00+99:00"),
        "occurred_at: expected an ISO-8601 timestamp",
    ),
    (
        event("offset-25", occurred_at="2026-01-05T10:00:00.5-25:00"),
        "occurred_at: expected an ISO-8601 timestamp",
    ),
    (event("offset-14", occurred_at="2026-01-05T10:00:00+14:00"), None),
    # A line break after the offset (JSON's \n): RE2's $ did not match before it, Java's did.
    (
        event("offset-99-nl", occurred_at="2026-01-05T10:00:00+99:00\n"),
        "occurred_at: expected an ISO-8601 timestamp",
    ),
    (event("offset-14-nl", occurred_at="2026-01-05T10:00:00+14:00\n"), None),
    # One grammar before either engine's cast (TIMESTAMP_GRAMMAR): DuckDB's read a time without
    # seconds, 24:00:00, year 10000, +01:60 and single-digit fields, Spark's a zone name; a time
    # without seconds is the grammar's, on both.
    (event("no-seconds", occurred_at="2026-01-05T10:00Z"), None),
    # Spaces the grammar allows after a time without zone: DuckDB's cast refused them.
    (event("spaces-after", occurred_at="2026-01-05T10:00:00 \t"), None),
    (event("date-space", occurred_at="2026-01-05 "), None),
    (event("no-seconds-offset", occurred_at="2026-01-05T11:00+01:00"), None),
    (event("date-only", occurred_at="2026-01-05"), None),
    (event("hour-24", occurred_at="2026-01-05T24:00:00Z"), "occurred_at: expected an ISO-8601"),
    (event("year-10000", occurred_at="10000-01-05T10:00:00Z"), "occurred_at: expected an ISO"),
    (event("minute-60", occurred_at="2026-01-05T10:00:00+01:60"), "occurred_at: expected an"),
    (event("one-digit", occurred_at="2026-1-5T10:00:00Z"), "occurred_at: expected an ISO-8601"),
    (event("zone", occurred_at="2026-01-05T10:00:00Europe/Paris"), "occurred_at: expected an"),
    (event("zone-spaced", occurred_at="2026-01-05 10:00:00 Europe/Paris"), "occurred_at: expect"),
    (event("zone-utc", occurred_at="2026-01-05T10:00:00UTC"), "occurred_at: expected an ISO"),
    # The reason says what is expected: the field, the form, no zone name.
    (
        event("spaced-year", occurred_at=" 202-01-05T10:00:00.000Z"),
        "occurred_at: expected an ISO-8601 timestamp such as 2026-01-05T10:00:00Z: YYYY-MM-DD",
    ),
    (event("repeated")[:-1] + ', "user_id": 8}', 'keys given more than once ("user_id")'),
    (
        event("bad-props", properties=["jane@example.com"]),
        "properties: expected a JSON object or null, got array (its text is not shown: it may "
        "hold personal data)",
    ),
    # JSON has no NaN, Infinity or trailing comma: DuckDB's lenient reader took them (Spark not).
    # NaN and Infinity, as json.dumps writes them, are named (they were "truncated or malformed").
    (event("nan", properties={"amount": float("nan")}), NON_NUMERIC_LINE),
    (event("inf", properties={"amount": float("-inf")}), NON_NUMERIC_LINE),
    # In any ASCII case, as DuckDB's reader takes them.
    (event("nan-case", properties={"amount": 1.5}).replace("1.5", "nAn"), NON_NUMERIC_LINE),
    (event("inf-case", properties={"x": [1.5]}).replace("1.5", "-iNfInItY"), NON_NUMERIC_LINE),
    (event("comma")[:-1] + ", }", TRAILING_COMMA_LINE),
    (event("inner-comma", properties={"page": "/"}).replace('"/"}', '"/",}'), TRAILING_COMMA_LINE),
    (event("list-comma", properties={"ids": [1]}).replace("[1]", "[1,\t]"), TRAILING_COMMA_LINE),
    # A comma and a brace inside a string are text: this line is only cut short.
    (event("cut-comma", properties={"note": "a, }"})[:-1], INVALID_JSON),
    # Records run together, or text after one: named too. A brace in a string closes nothing.
    (event("two") + event("two-b"), TRAILING_TEXT_LINE),
    (event("tail") + " // sent", TRAILING_TEXT_LINE),
    (event("quoted-tail") + ' "x"', TRAILING_TEXT_LINE),
    (event("cut-brace", properties={"note": "} x"})[:-1], INVALID_JSON),
    # A number beyond a 64-bit float: DuckDB's reader kept it as written, Spark's wrote the
    # string "Infinity"; refused on both. An integer is kept as written, however long.
    (
        event("huge", properties={"x": 1.5}).replace("1.5", "1e400"),
        'the number "1e400" is beyond the range of a 64-bit float',
    ),
    (event("huge-extra", big=1.5).replace("1.5", "-1E+400"), 'the number "-1E+400" is beyond'),
    (event("huge-list", properties={"x": [1, 2.5]}).replace("2.5", "2.5e400"), '"2.5e400" is'),
    (event("long-float", properties={"x": 1.5}).replace("1.5", "9" * 400 + ".5"), "is beyond"),
    (event("huge-int", properties={"x": 10**400}), None),
    (event("hex-id", session_id="a1e400ff", properties={"note": ": 1e400"}), None),
    (event("max-double", properties={"x": 1.7976931348623157e308, "tiny": 5e-324}), None),
    (event("nan-text", properties={"note": "NaN, Infinity,]"}), None),  # text, not numbers
    (event("num-id").replace('"num-id"', "42"), "event_id: expected a string"),
    # Two causes "truncated or malformed" hid: named.
    ("\ufeff" + event("bom"), "not valid JSON: the line starts with a byte order mark"),
    # A raw NUL (json.dumps escapes one as \u0000, which is valid JSON and loads).
    (event("nul").replace("nul", "n\x00ul"), "not valid JSON: the line holds a NUL character"),
    # Spark's parser reads no line nested 1000 deep (DuckDB's any): past MAX_DEPTH, refused on
    # both; MAX_DEPTH itself loads, and so do brackets in a string, escaped quotes among them.
    (nested("deep-1000", 999), f"nested deeper than {MAX_DEPTH} levels"),
    (nested("deep-901", MAX_DEPTH), f"nested deeper than {MAX_DEPTH} levels"),
    (nested("deep-900", MAX_DEPTH - 1), None),
    (event("brackets", properties={"note": '\\"[' * 2 * MAX_DEPTH}), None),
    # Only ASCII white space makes a line blank, on both sources: a no-break space line is a
    # record, refused with its cause named (it read "truncated or malformed").
    ("\u00a0 ", "the line holds only spaces, U+00A0 among them"),
    ("\t" + event("tab-first"), None),  # JSON's whitespace before the object: a valid line
    ("\x0b\x0c", None),  # blank, as Python's strip() and Java's \s have it: no record
]

PAYMENT_HEADER = "status,amount,payment_id,created_at,currency,order_id,note"
# Columns in a non-standard order plus an extra one (`note`), as the contract allows.
PAYMENT_LINES = [
    ("succeeded,12.50,p1,2026-01-05T10:00:00Z,EUR,1,", None),
    ('refunded,3.00,p2,2026-01-05T11:00:00+01:00,EUR,2,"late, really"', None),
    ("succeeded,12.50,p1,2026-01-05T10:00:00Z,EUR,1,", None),  # duplicate kept in raw
    ("succeeded,-99999.00,p3,2026-01-05T10:00:00Z,EUR,3,", None),  # out of range: soft
    ("", None),
    ("failed,1.00,p4,2026-01-05T10:00:00Z,EUR,x12,", "order_id: expected an integer"),
    ("failed,12,3a,p5,2026-01-05T10:00:00Z,EUR,5,", "row has 8 fields but the header names 7"),
    ("failed,,p6,2026-01-05T10:00:00Z,EUR,6,", "amount: required, empty"),
    ("failed,1.00,p7,yesterday,EUR,7,", "created_at: expected an ISO-8601 timestamp"),
    ("failed,1.00,p21,2026-01-05T10:00Z,EUR,21,", None),  # no seconds: the grammar's
    ("failed,1.00,p22,2026-01-05T24:00:00Z,EUR,22,", "created_at: expected an ISO-8601"),
    ("failed,1.00,p23,2026-01-05T10:00:00Europe/Paris,EUR,23,", "created_at: expected an"),
    ("failed,1.00,p8", "row has 3 fields"),
    # Quoting a reader could guess at: refused, not loaded as a guess ('"p9"x' as p9, '"125' as 12)
    ('failed,1.00,"p9"x,2026-01-05T10:00:00Z,EUR,9,', "malformed CSV quoting"),
    ('failed,"125,p10,2026-01-05T10:00:00Z,EUR,10,', "malformed CSV quoting"),
    (",1.00,p11,2026-01-05T10:00:00Z,EUR,11,", "status: required, empty"),  # first field empty
    # Numbers DuckDB's cast would take (12.50 as the integer 13, 1_000, 0x10), Spark's not.
    ("failed,1.00,p12,2026-01-05T10:00:00Z,EUR,12.50,", "order_id: expected an integer"),
    ("failed,1_000.50,p13,2026-01-05T10:00:00Z,EUR,13,", "amount: expected a decimal number"),
    ("failed,1.00,p14,2026-01-05T10:00:00Z,EUR,0x10,", "order_id: expected an integer"),
    # Numbers spelled right that the column would change: refused, not rounded or overflowed.
    (
        "failed,1.00,p15,2026-01-05T10:00:00Z,EUR,99999999999999999999,",
        'order_id: "99999999999999999999" is beyond the 64-bit integer range',
    ),
    (
        "failed,12.12345,p16,2026-01-05T10:00:00Z,EUR,16,",
        'amount: "12.12345" has more than 14 digits before the point or 4 after it',
    ),
    ("refunded,-0.00001,p17,2026-01-05T10:00:00Z,EUR,17,", 'amount: "-0.00001" has more than'),
    (
        "failed,123456789012345,p18,2026-01-05T10:00:00Z,EUR,18,",
        'amount: "123456789012345" has more than',
    ),
    ("failed,1e-27,p20,2026-01-05T10:00:00Z,EUR,20,", 'amount: "1e-27" has more than'),
    ("failed,99999999999999.9999,p19,2026-01-05T10:00:00Z,EUR,19,", None),  # the largest held
    # A no-break space is no space to trim (DuckDB's trim() took it off, Spark's not).
    ("failed,\u00a01.00,p24,2026-01-05T10:00:00Z,EUR,24,", "amount: expected a decimal number"),
    # Below a DOUBLE's least value: every cast read it as 0, and a payment of 0 was stored.
    ("failed,0." + "0" * 400 + "1,p25,2026-01-05T10:00:00Z,EUR,25,", 'amount: "0.000'),
    ("failed,-0.0e-300,p26,2026-01-05T10:00:00Z,EUR,26,", None),  # a zero spelled as one
    ("failed,0e999999,p27,2026-01-05T10:00:00Z,EUR,27,", "amount: expected a decimal number"),
]


@pytest.fixture
def landed(settings, resources, tmp_path):
    landing = resources["landing"]
    put_lines(landing, f"events/dt={DAY}/a.jsonl", [line for line, _ in EVENT_LINES], tmp_path)
    put_lines(landing, f"events/dt={DAY}/b.jsonl.gz", [event("gz-1"), event("gz-2")], tmp_path)
    put_lines(
        landing,
        f"payments/dt={DAY}/export.csv",
        [PAYMENT_HEADER, *(line for line, _ in PAYMENT_LINES)],
        tmp_path,
    )
    return settings


def test_every_record_lands_where_the_contract_says(landed, resources):
    result = dg.materialize(FILE_ASSETS, resources=resources, partition_key=DAY.isoformat())
    assert result.success
    wh = landed.warehouse

    dead = dict(query(wh, "SELECT line_number, error FROM raw.dead_letter WHERE source = 'events'"))
    expected_dead = {n: err for n, (_, err) in enumerate(EVENT_LINES, start=1) if err}
    assert set(dead) == set(expected_dead)
    for line_number, fragment in expected_dead.items():
        assert fragment in dead[line_number], (line_number, dead[line_number])

    loaded = query(
        wh,
        "SELECT event_id, user_id, occurred_at, _rescued, _line_number FROM raw.events WHERE _source_file LIKE '%a.jsonl'",
    )
    by_id = {}
    for event_id, user_id, occurred_at, rescued, line_number in loaded:
        by_id.setdefault(event_id, []).append((user_id, occurred_at, rescued, line_number))
    assert len(by_id["ok-1"]) == 2  # duplicates stay in raw
    assert [line for *_, line in by_id["tab-first"]] == [len(EVENT_LINES) - 1]
    assert by_id["digits"][0][0] == 123
    assert by_id["max-digits"][0][0] == 2**63 - 1
    assert by_id["offset"][0][1] == datetime(2026, 1, 5, 8, 0)  # normalised to UTC
    assert by_id["naive"][0][1] == datetime(2026, 1, 5, 10, 0)  # no offset means UTC
    assert by_id["no-seconds"][0][1] == by_id["no-seconds-offset"][0][1] == by_id["naive"][0][1]
    assert by_id["date-only"][0][1] == datetime(2026, 1, 5)
    assert json.loads(by_id["drift"][0][2]) == {"browser": "firefox", "screen": {"w": 1}}
    assert by_id["drift"][0][3] == 5
    assert "teleport" in {r[0] for r in query(wh, "SELECT event_type FROM raw.events")}

    raw_record = query(
        wh, "SELECT raw_record FROM raw.dead_letter WHERE line_number = 10 AND source = 'events'"
    )
    assert raw_record == [(EVENT_LINES[9][0],)]

    payments_dead = dict(
        query(wh, "SELECT line_number, error FROM raw.dead_letter WHERE source = 'payments'")
    )
    # line 1 is the header, so record i sits on line i + 1
    expected_payments = {n + 1: err for n, (_, err) in enumerate(PAYMENT_LINES, start=1) if err}
    assert set(payments_dead) == set(expected_payments)
    for line_number, fragment in expected_payments.items():
        assert fragment in payments_dead[line_number]
    payments = query(
        wh,
        "SELECT payment_id, amount, created_at, _rescued FROM raw.payments ORDER BY _line_number",
    )
    assert [p[0] for p in payments] == ["p1", "p2", "p1", "p3", "p21", "p19", "p26"]
    assert payments[1][2] == payments[4][2] == datetime(2026, 1, 5, 10, 0)
    assert json.loads(payments[1][3]) == {"note": "late, really"}
    assert float(payments[3][1]) == -99999.0
    assert str(payments[5][1]) == "99999999999999.9999"
    assert payments[6][1] == 0


def test_conservation_is_reported_and_holds(landed, resources, tmp_path):
    result = dg.materialize(FILE_ASSETS, resources=resources, partition_key=DAY.isoformat())
    landing_root = landed.home / "landing"
    for source, header in (("events", 0), ("payments", 1)):
        files = sorted((landing_root / source / f"dt={DAY}").iterdir())
        independent = sum(count_records(f, header) for f in files)
        [meta] = [
            e.materialization.metadata
            for e in result.get_asset_materialization_events()
            if e.asset_key == dg.AssetKey(["raw", source])
        ]
        assert meta["records_read"].value == independent
        assert meta["rows_loaded"].value + meta["rows_dead_lettered"].value == independent
        in_tables = query(
            landed.warehouse,
            f"SELECT (SELECT count(*) FROM raw.{source} WHERE dt = ?) "
            "+ (SELECT count(*) FROM raw.dead_letter WHERE source = ? AND dt = ?)",
            [DAY, source, DAY],
        )[0][0]
        assert in_tables == independent


CONTENT = {
    "raw.events": "SELECT * EXCLUDE (_loaded_at) FROM raw.events ORDER BY ALL",
    "raw.payments": "SELECT * EXCLUDE (_loaded_at) FROM raw.payments ORDER BY ALL",
    "raw.dead_letter": "SELECT * EXCLUDE (rejected_at) FROM raw.dead_letter ORDER BY ALL",
}


def snapshot(warehouse) -> dict[str, list[tuple]]:
    """Everything but the load timestamps, which say when, not what."""
    return {table: query(warehouse, sql) for table, sql in CONTENT.items()}


def test_rematerializing_a_partition_is_idempotent(landed, resources):
    dg.materialize(FILE_ASSETS, resources=resources, partition_key=DAY.isoformat())
    first = snapshot(landed.warehouse)
    dg.materialize(FILE_ASSETS, resources=resources, partition_key=DAY.isoformat())
    assert snapshot(landed.warehouse) == first
    assert len(first["raw.events"]) > 0 and len(first["raw.dead_letter"]) > 0


def test_a_failure_mid_ingest_leaves_the_previous_partition_intact(
    landed, resources, tmp_path, monkeypatch
):
    dg.materialize(FILE_ASSETS, resources=resources, partition_key=DAY.isoformat())
    before = snapshot(landed.warehouse)
    put_lines(resources["landing"], f"events/dt={DAY}/c.jsonl", [event("new")], tmp_path)

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash after the raw table was rewritten")

    monkeypatch.setattr(file_ingestion, "_diagnose_leftover_records", crash)
    result = dg.materialize(
        FILE_ASSETS, resources=resources, partition_key=DAY.isoformat(), raise_on_error=False
    )
    assert not result.success
    assert snapshot(landed.warehouse) == before

    monkeypatch.undo()
    assert dg.materialize(FILE_ASSETS, resources=resources, partition_key=DAY.isoformat()).success
    assert ("new",) in query(landed.warehouse, "SELECT event_id FROM raw.events")


def test_file_that_is_not_utf8_dead_letters_only_its_bad_lines(settings, resources, tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(event("fine").encode() + b"\n" + b'{"event_id": "caf\xe9"}\n')
    resources["landing"].upload_file(path, f"events/dt={DAY}/latin1.jsonl")
    assert dg.materialize(FILE_ASSETS, resources=resources, partition_key=DAY.isoformat()).success
    assert query(settings.warehouse, "SELECT event_id FROM raw.events") == [("fine",)]
    dead = query(settings.warehouse, "SELECT line_number, error FROM raw.dead_letter")
    assert dead == [(2, "not valid UTF-8 text: re-export the file as UTF-8")]


def test_lines_longer_than_the_readers_limit_are_records_like_any_other(
    settings, resources, tmp_path
):
    """DuckDB's line reader stops at 2 MB a line, which failed the whole day (Spark has no such
    limit): a long valid event loads whole, a long broken one is a dead letter holding the
    whole line, plain or gzipped, and the day's other files load as usual."""
    blob = "x" * 3_000_000
    long_event = event("long", properties={"blob": blob})
    long_broken = event("long-broken", properties={"blob": blob})[:-1]
    landing = resources["landing"]
    put_lines(landing, f"events/dt={DAY}/long.jsonl", [event("a"), long_event, long_broken], tmp_path)  # fmt: skip
    put_lines(landing, f"events/dt={DAY}/long.jsonl.gz", [long_event, event("b")], tmp_path)
    put_lines(landing, f"events/dt={DAY}/short.jsonl", [event("c")], tmp_path)
    assert dg.materialize(FILE_ASSETS, resources=resources, partition_key=DAY.isoformat()).success
    loaded = query(
        settings.warehouse,
        "SELECT _source_file, _line_number, event_id, length(properties->>'$.blob') "
        "FROM raw.events ORDER BY ALL",
    )
    folder = f"events/dt={DAY}"
    assert loaded == [
        (f"{folder}/long.jsonl", 1, "a", None),
        (f"{folder}/long.jsonl", 2, "long", len(blob)),
        (f"{folder}/long.jsonl.gz", 1, "long", len(blob)),
        (f"{folder}/long.jsonl.gz", 2, "b", None),
        (f"{folder}/short.jsonl", 1, "c", None),
    ]
    dead = query(settings.warehouse, "SELECT source_file, line_number, raw_record, error FROM raw.dead_letter")  # fmt: skip
    assert [row[:3] for row in dead] == [(f"{folder}/long.jsonl", 3, long_broken)]
    assert dead[0][3].startswith("not valid JSON")


def test_a_line_over_the_record_limit_is_a_dead_letter_keeping_its_start(settings, resources):
    """Past DuckDB's 32 MB CSV buffer its reader raised NotImplementedException, which failed
    the day on every run; read from the Python copy, a 25 MB line needed ~20 times its length,
    an out-of-memory error under the default 512MB limit, on every run. Past MAX_RECORD_BYTES a
    line is a dead letter keeping its start, valid or not, plain or gzipped (Spark alike:
    test_dbt_spark), and the day loads."""
    oversized = event("big", properties={"blob": "x" * (MAX_RECORD_BYTES + 1)})
    landing = resources["landing"]
    folder = f"events/dt={DAY}"
    plain = "\n".join([event("a"), oversized, oversized[:-1], event("b")]) + "\n"
    landing.write_bytes(f"{folder}/big.jsonl", plain.encode())
    landing.write_bytes(f"{folder}/big.jsonl.gz", gzip.compress(f"{oversized}\n".encode()))
    evaluation = conservation_of_the_day(resources)
    assert evaluation.passed, evaluation.metadata
    assert query(settings.warehouse, "SELECT event_id FROM raw.events ORDER BY 1") == [
        ("a",),
        ("b",),
    ]
    dead = query(
        settings.warehouse,
        "SELECT source_file, line_number, raw_record, error FROM raw.dead_letter ORDER BY 1, 2",
    )
    start = oversized[:OVERSIZED_KEPT_CHARS]
    assert dead == [
        (f"{folder}/big.jsonl", 2, start, OVERSIZED_LINE),
        (f"{folder}/big.jsonl", 3, start, OVERSIZED_LINE),
        (f"{folder}/big.jsonl.gz", 1, start, OVERSIZED_LINE),
    ]


def conservation_of_the_day(resources, fmt: FileFormat = EVENT_FILES) -> dg.AssetCheckEvaluation:
    """A source's conservation check, evaluated with a run of DAY's file assets."""
    check = conservation_check(fmt)
    result = dg.materialize(
        [*FILE_ASSETS, check], resources=resources, partition_key=DAY.isoformat(),
        raise_on_error=False,
    )  # fmt: skip
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_a_payments_file_whose_first_line_is_no_header_and_no_record_follows_is_a_dead_letter(
    settings, resources
):
    """A one-row export without its header (the row read as the header), and a file whose
    lines end in CR only (one line, all of it the header), held payments that were in no
    table, no dead letter and no check: 0 records read, conservation 0 = 0."""
    row = "p1,1,12.50,EUR,succeeded,2026-01-05T10:00:00Z"
    header = "payment_id,order_id,amount,currency,status,created_at"
    landing = resources["landing"]
    folder = f"payments/dt={DAY}"
    landing.write_bytes(f"{folder}/headless.csv", f"{row}\n".encode())
    landing.write_bytes(f"{folder}/mac.csv", f"{header}\r{row}\r{row}\r".encode())
    landing.write_bytes(f"{folder}/zero-bytes.csv", b"")
    # Still no dead letter: a header alone (a day without payments), and a header lacking a
    # column with rows after it (each row says what is wrong with it).
    landing.write_bytes(f"{folder}/empty-day.csv", f"\ufeff{header.upper()}\r\n".encode())
    landing.write_bytes(f"{folder}/no-status.csv", f"{header[:-11]}\n{row[:-21]}\n".encode())
    evaluation = conservation_of_the_day(resources, PAYMENT_FILES)
    assert evaluation.passed, evaluation.metadata
    dead = query(
        settings.warehouse,
        "SELECT source_file, line_number, error FROM raw.dead_letter ORDER BY source_file",
    )
    assert [row[:2] for row in dead] == [
        (f"{folder}/headless.csv", None),
        (f"{folder}/mac.csv", None),
        (f"{folder}/no-status.csv", 2),
        (f"{folder}/zero-bytes.csv", None),
    ]
    assert dead[0][2].startswith(
        "the file has no record, and its first line, read as the header, lacks payment_id, "
        "order_id, amount, currency, status, created_at: a data row where the header should be"
    )
    assert dead[1][2].startswith("the file has no record after its first line, which holds CRs")
    assert dead[3][2].startswith("the file is empty (no header line and no record)")
    assert query(settings.warehouse, "SELECT count(*) FROM raw.payments") == [(0,)]
    assert evaluation.metadata["records_in_files"].value == 4


# Every way of ending lines: (file name, bytes, the contract's lines). Lines end at LF, and a CR
# that ends a line (a CRLF's, or the file's last byte) is not part of it; any other CR is text.
LINE_ENDINGS = [
    ("lf.jsonl", b"A\nB\n\nC\n", ["A", "B", "", "C"]),
    ("crlf.jsonl", b"A\r\nB\r\n\r\nC", ["A", "B", "", "C"]),
    ("lf-then-crlf.jsonl", b"A\nB\r\n{broken\nC\n", ["A", "B", "{broken", "C"]),
    ("crlf-then-lone-cr.jsonl", b"A\r\nB\rC\r\nD\r\n", ["A", "B\rC", "D"]),
    ("lone-cr-late.jsonl", b"A\n" * 40_000 + b"B\rC\nD\n", ["A"] * 40_000 + ["B\rC", "D"]),
    ("cr-only.jsonl.gz", b"A\rB\rC\r", ["A\rB\rC"]),
    ("crlf-blank-cr.jsonl", b"A\r\n\r\r\nB\r\n", ["A", "\r", "B"]),
]


def test_every_line_ending_is_numbered_as_the_contract_counts_lines(settings, resources):
    """DuckDB's line reader numbers a file that mixes LF and CRLF, or holds a lone CR, its own
    way: a CRLF after LF lines counted as two breaks, a lone CR as a break or, after CRLF lines,
    the text after it dropped. Such files are read as the contract counts lines (at LF, a CR
    ending a line dropped, any other CR text), so every record keeps its line number and text,
    and conservation holds file by file."""
    folder = settings.home / "landing" / "events" / f"dt={DAY}"
    folder.mkdir(parents=True)
    good = {"A": event("a"), "B": event("b"), "C": event("c"), "D": event("d")}
    expected_rows, expected_letters = [], []
    for name, template, lines in LINE_ENDINGS:
        data = template
        for letter, line in good.items():
            data = data.replace(letter.encode(), line.encode())
        path = folder / name
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        for number, line in enumerate(lines, start=1):
            text = "".join(good.get(c, c) for c in line)
            key = f"events/dt={DAY}/{name}"
            if line in good:
                expected_rows.append((key, number, json.loads(text)["event_id"]))
            elif line.strip():
                expected_letters.append((key, number, text))
    evaluation = conservation_of_the_day(resources)
    assert evaluation.passed, evaluation.description
    rows = query(settings.warehouse, "SELECT _source_file, _line_number, event_id FROM raw.events")
    assert sorted(rows) == sorted(expected_rows)
    letters = query(
        settings.warehouse, "SELECT source_file, line_number, raw_record FROM raw.dead_letter"
    )
    assert sorted(letters) == sorted(expected_letters)


def test_records_stored_under_the_wrong_line_fail_conservation(
    settings, resources, tmp_path, monkeypatch
):
    """Counts alone miss records put under the wrong line number (a reader numbering lines its
    own way, as DuckDB's did on mixed line endings): the check compares the sum of the line
    numbers too, so a file read one line off fails it although its counts balance, and the
    file beside it still balances."""
    put_lines(resources["landing"], f"events/dt={DAY}/a.jsonl", [event("a"), "", event("b")], tmp_path)  # fmt: skip
    put_lines(resources["landing"], f"events/dt={DAY}/b.jsonl", [event("c")], tmp_path)
    numbered = FileLines.numbered_sql

    def one_line_off(lines: FileLines) -> str:
        sql = numbered.fget(lines)
        return sql.replace("row_number() OVER ()", "row_number() OVER () + 1") if lines.path.name == "a.jsonl" else sql  # fmt: skip

    monkeypatch.setattr(FileLines, "numbered_sql", property(one_line_off))
    evaluation = conservation_of_the_day(resources)
    assert not evaluation.passed
    assert evaluation.metadata["files_unbalanced"].value == 1
    assert evaluation.metadata["files_misnumbered"].value == 1
    assert "a.jsonl" in evaluation.metadata["unbalanced_files"].value
    assert "b.jsonl" not in evaluation.metadata["unbalanced_files"].value
    assert "line numbers" in evaluation.description


def _spaced(line: str) -> str:
    """A minified line as json.dumps writes it: a space after every ':' and ',' outside strings."""
    return json.dumps(json.loads(line))


_CANONICAL = (
    '{{"event_id":"{}","user_id":{},"event_type":"page_view",'
    '"occurred_at":"2026-01-05T10:00:00Z"{}}}'
)
# Lines the fast path vouches for once spaces between tokens are set aside, and lines close to
# them that it must leave to the diagnosis (an escape, a key with a space, a second value).
SPACED_LINES = {
    "vouched": [
        _spaced(_CANONICAL.format("s1", 1, "")),
        _spaced(_CANONICAL.format("s2", 2, ',"session_id":"x","properties":{"q":"red shoes"}')),
        _CANONICAL.format("s 3", 3, ',"properties": {"a" : [1, 2] , "b":{ }}'),
        "  " + _CANONICAL.format("s4", 4, "") + "  ",
        _CANONICAL.format("s5", 5, "").replace("page_view", "page view"),
        _CANONICAL.format("s8", 8, "").replace('"user_id"', '"user_id" '),  # still the key
        # json.dumps's spacing, where the spaced spelling adds a space in a string (`\":`) or
        # none where json.dumps puts one (`[1, 2]`, `}, {`): vouched by the whole comparison.
        _spaced(_CANONICAL.format("s15", 15, ',"properties":{"q":"a\\":b","n":{"m":[1,2]}}')),
        _spaced(_CANONICAL.format("s16", 16, ',"properties":{"l":[{"a":"x,\\"y"},{"b":2}]}')),
        _spaced(_CANONICAL.format("s17", 17, ',"session_id":"a: b, c"')),
    ],
    "diagnosed": [
        _CANONICAL.format("s\\u00206", 6, ""),  # an escaped space
        _CANONICAL.format("s7", 7, "").replace('"event_id"', '"event _id"'),
        _CANONICAL.format("s9", 9, "") + " " + _CANONICAL.format("s10", 10, ""),
        _CANONICAL.format("  ", 11, "").replace('"event_id"', '"event _id"'),
        _CANONICAL.format("s12", 12, ', "extra": 1'),
        _CANONICAL.format("s13", '"13"', ""),  # digits in a string
        _CANONICAL.format("s14", 14, "").replace(",", ",\t"),  # a tab is not a space
    ],
}


def _ingested(warehouse: Path, landing, fmt) -> dict[str, list[tuple]]:
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        file_ingestion.ingest_file_partitions(conn, landing, fmt, [DAY], datetime(2026, 1, 6))
        return {
            "events": conn.execute("FROM raw.events ORDER BY ALL").fetchall(),
            "dead_letter": conn.execute(
                "SELECT * EXCLUDE (rejected_at) FROM raw.dead_letter ORDER BY ALL"
            ).fetchall(),
        }


def test_lines_as_json_dumps_writes_them_equal_their_spaced_spelling():
    """What the spaced day's speed rests on (`record_rules.spelled_back`): such a line is vouched
    for by the exact comparison with its spaced spelling, not by the replace() of its spaces;
    one whose properties hold a list of numbers, spaced otherwise, is not."""
    lines = [
        *SPACED_LINES["vouched"][:2],
        _spaced(_CANONICAL.format("l", 1, ',"properties":{"a":[1,2]}')),
    ]
    values = [f"v[{i}]" for i in range(1, len(EVENT_FIELD_NAMES) + 1)]
    paths = [f'$."{name}"' for name in EVENT_FIELD_NAMES]
    spelling = spelled_event_line(values, concat_skips_nulls=True, spaced=True)
    with duckdb.connect() as conn:
        equal = conn.execute(
            f"SELECT line = {spelling} FROM (SELECT line, json_extract_string(line, ?) AS v "
            "FROM unnest(?) AS t(line))",
            [paths, lines],
        ).fetchall()
    assert equal == [(True,), (True,), (False,)]


def test_a_group_of_files_mostly_written_spaced_is_compared_spaced_first(tmp_path):
    """The fast path's guess (`SPACED_JSON`) follows most of a group's files by their first
    line, gzipped or not; a Python copy (quoted lines) or a file that cannot be read counts as
    not spaced, and a format without a spaced start never guesses spaced."""
    minified, spaced = _CANONICAL.format("a", 1, ""), _spaced(_CANONICAL.format("b", 2, ""))
    files = {"m.jsonl": minified, "s.jsonl": spaced, "s2.jsonl": spaced}
    for name, line in files.items():
        (tmp_path / name).write_text(line + "\n")
    with gzip.open(tmp_path / "s3.jsonl.gz", "wt") as gz:
        gz.write(spaced + "\n")
    (tmp_path / "broken.jsonl.gz").write_bytes(b"not gzip")

    def guess(names: list[str], fmt: FileFormat = EVENT_FILES, quoted: bool = False) -> bool:
        lines = [FileLines(tmp_path / n, quoted=quoted) for n in names]
        with duckdb.connect() as conn:
            file_ingestion._guess_spacing(conn, fmt, lines)
            return conn.execute(f"SELECT getvariable('{SPACED_JSON}')").fetchone()[0]

    assert guess(["s.jsonl", "s3.jsonl.gz", "m.jsonl"]) is True
    assert guess(["s.jsonl", "m.jsonl"]) is False
    assert guess(["s.jsonl", "s2.jsonl", "broken.jsonl.gz", "m.jsonl"]) is False
    assert guess(["s.jsonl"], quoted=True) is False
    assert guess(["s.jsonl"], dataclasses.replace(EVENT_FILES, spaced_start=None)) is False


def test_the_fast_path_vouches_only_for_what_the_diagnosis_loads_alike(resources, tmp_path):
    """Lines spaced as most writers space them are vouched for by the fast path (measured: a
    day of json.dumps lines took 8.6 CPU-s per 1M events through the diagnosis), and whatever
    it vouches for lands exactly as the diagnosis alone would land it: same rows, same dead
    letters, for every line of the contract tests and the near misses above. Every other line
    it parks, once."""
    lines = [
        *SPACED_LINES["vouched"],
        *SPACED_LINES["diagnosed"],
        *(line for line, _ in EVENT_LINES),
    ]
    put_lines(resources["landing"], f"events/dt={DAY}/a.jsonl", lines, tmp_path)
    with duckdb.connect() as conn:
        conn.execute("SET disabled_optimizers = 'filter_pushdown'")
        with resources["landing"].local_path(f"events/dt={DAY}/a.jsonl") as path:
            expose_lines(conn, [FileLines(path)])
            # The guess of the lines' spacing changes what they cost, never what is vouched for.
            conn.execute(f"SET VARIABLE {SPACED_JSON} = true")
            with parking_lines(conn) as parking, parking.lines():
                spaced_first = conn.execute(
                    f"SELECT line_number FROM ({EVENT_FILES.fast_sql})"
                ).fetchall()
            conn.execute(f"SET VARIABLE {SPACED_JSON} = false")
            with parking_lines(conn) as parking, parking.lines() as parked:
                vouched = conn.execute(
                    f"SELECT line_number FROM ({EVENT_FILES.fast_sql})"
                ).fetchall()
                parked.close()
                parked_lines = conn.execute(f"SELECT line_number, line {parked.sql}").fetchall()
            assert sorted(spaced_first) == sorted(vouched)
            # Over the lines its parse does not raise on, the trusting fast path vouches alike,
            conn.execute("CREATE TEMP TABLE every_line AS FROM _file_lines")
            conn.execute(
                "CREATE OR REPLACE TEMP VIEW _file_lines AS FROM every_line WHERE json_valid(line)"
            )
            # it leaves lines padded outside their braces to the diagnosis.
            with parking_lines(conn) as parking, parking.lines():
                trusted = conn.execute(
                    f"SELECT line_number FROM ({EVENT_FILES.trusting_fast_sql})"
                ).fetchall()
            padded = {n for n, line in enumerate(lines, 1) if line != line.strip(" ")}
            assert {n for (n,) in trusted} == {n for (n,) in vouched} - padded
    written = {n: line for n, line in enumerate(lines, 1) if line}
    assert sorted(parked_lines) == [(n, line) for n, line in written.items() if (n,) not in vouched]
    near_misses = len(SPACED_LINES["vouched"]) + len(SPACED_LINES["diagnosed"])
    vouched_near = sorted(n for (n,) in vouched if n <= near_misses)
    assert vouched_near == list(range(1, len(SPACED_LINES["vouched"]) + 1))
    diagnosis_only = dataclasses.replace(EVENT_FILES, fast_sql=None)
    fast = _ingested(tmp_path / "fast.duckdb", resources["landing"], EVENT_FILES)
    assert fast == _ingested(tmp_path / "diagnosis.duckdb", resources["landing"], diagnosis_only)
    assert len(fast["events"]) > len(vouched) and len(fast["dead_letter"]) > 0


def test_a_day_with_no_line_vouched_for_is_parked_in_batches(
    settings, resources, tmp_path, monkeypatch
):
    """A new field in every event: the fast path vouches for no line, and parks every one for
    the diagnosis, a batch at a time (here 1,000 lines), from several of DuckDB's chunks and
    two files, one gzipped: each record lands once, its field rescued, and the day conserves."""
    monkeypatch.setattr(parked_lines, "_BATCH_LINES", 1_000)
    plain = [event(f"a{i}", campaign="winter") for i in range(4_500)]
    plain[2_000:2_000] = ["", event("vouched")]
    put_lines(resources["landing"], f"events/dt={DAY}/a.jsonl", plain, tmp_path)
    gzipped = [event(f"b{i}", campaign="winter") for i in range(3_000)]
    put_lines(resources["landing"], f"events/dt={DAY}/b.jsonl.gz", gzipped, tmp_path)
    evaluation = conservation_of_the_day(resources)
    assert evaluation.passed, evaluation.metadata
    numbered = [n for n, line in enumerate(plain, 1) if line]
    assert query(
        settings.warehouse,
        "SELECT _source_file, count(*), count(_rescued), sum(_line_number), "
        "count(DISTINCT _line_number) FROM raw.events GROUP BY 1 ORDER BY 1",
    ) == [
        (f"events/dt={DAY}/a.jsonl", 4_501, 4_500, sum(numbered), 4_501),
        (f"events/dt={DAY}/b.jsonl.gz", 3_000, 3_000, 3_000 * 3_001 // 2, 3_000),
    ]


def test_parked_lines_are_written_before_their_batch_outgrows_its_bytes(tmp_path, monkeypatch):
    """A batch held _BATCH_LINES lines whatever their length, outside DuckDB's memory limit: a
    day of 4 KB events with a new field each held 200 MB in Python before its first write
    (measured: 25,000 such lines, a 100 MB file, peaked at 1.0 GB RSS against 628 MB before
    parking). Long lines are written in batches of at most _BATCH_CHARS characters (and the
    line that crosses it), every line once."""
    written: list[int] = []
    write_table = pyarrow.parquet.ParquetWriter.write_table

    def recorded(self, table) -> None:
        written.append(sum(len(line) for line in table["line"].to_pylist()))
        write_table(self, table)

    monkeypatch.setattr(pyarrow.parquet.ParquetWriter, "write_table", recorded)
    line = "x" * 100_000
    parked = parked_lines.ParkedLines(tmp_path / "lines.parquet")
    for number in range(1, 301):
        parked.park(0, number, line)
    parked.close()
    assert max(written) <= parked_lines._BATCH_CHARS + len(line)
    with duckdb.connect() as conn:
        read = conn.execute(f"SELECT count(DISTINCT line_number), sum(length(line)) {parked.sql}")
        assert read.fetchone() == (300, 300 * len(line))


def test_a_line_that_cannot_be_parked_fails_the_run_not_the_file(resources, tmp_path, monkeypatch):
    """Parking fails (a full disk): the platform's trouble, not the file's. DuckDB reports an
    error of the function as a failed read, which would send the file to be read again and
    dead-lettered as unreadable; the run fails with the error itself, its day as it was."""
    put_lines(resources["landing"], f"events/dt={DAY}/a.jsonl", [event("a")], tmp_path)
    warehouse = tmp_path / "w.duckdb"
    before = _ingested(warehouse, resources["landing"], EVENT_FILES)
    put_lines(resources["landing"], f"events/dt={DAY}/b.jsonl", [event("b"), "{"], tmp_path)

    def full_disk(self, table) -> None:
        raise OSError(28, "No space left on device")

    # Each line written as it is parked, inside the statement.
    monkeypatch.setattr(parked_lines, "_BATCH_LINES", 1)
    monkeypatch.setattr(pyarrow.parquet.ParquetWriter, "write_table", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        _ingested(warehouse, resources["landing"], EVENT_FILES)
    monkeypatch.undo()
    with duckdb.connect(str(warehouse)) as conn:
        assert conn.execute("FROM raw.events ORDER BY ALL").fetchall() == before["events"]
        assert conn.execute("SELECT count(*) FROM raw.dead_letter").fetchone() == (0,)


def test_only_a_format_with_a_fast_path_parks_lines(resources, tmp_path, monkeypatch):
    """Payments have no fast path, so nothing of theirs is parked: their ingestion registers no
    function and makes no scratch folder (it did both, for nothing); events do both."""
    registered, folders = [], []
    register = file_ingestion.parking_lines
    scratch_folder = parked_lines.scratch_folder

    def registering(conn):
        registered.append(conn)
        return register(conn)

    def making(kind):
        folders.append(kind)
        return scratch_folder(kind)

    monkeypatch.setattr(file_ingestion, "parking_lines", registering)
    monkeypatch.setattr(parked_lines, "scratch_folder", making)
    put_lines(resources["landing"], f"payments/dt={DAY}/a.csv", [PAYMENT_HEADER, "p1"], tmp_path)
    put_lines(resources["landing"], f"events/dt={DAY}/a.jsonl", [event("a"), "{"], tmp_path)
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        [payments] = file_ingestion.ingest_file_partitions(
            conn, resources["landing"], PAYMENT_FILES, [DAY], datetime(2026, 1, 6)
        )
        assert (registered, folders, payments.rows_dead_lettered) == ([], [], 1)
        [events] = file_ingestion.ingest_file_partitions(
            conn, resources["landing"], EVENT_FILES, [DAY], datetime(2026, 1, 6)
        )
    assert (len(registered), folders) == (1, ["parked"])
    assert (events.rows_loaded, events.rows_dead_lettered) == (1, 1)


# Lines JSON's strict grammar refuses, in the ways DuckDB's lenient reader might not.
ODD_JSON = [
    '{"a":"x\ty"}', '{"a":NaN}', '{"a":Infinity}', '{"a":1,}', '{"a":1/*c*/}', "{'a':1}",
    '{"a":"\\q"}', '{"a":"\\ud800"}', '{"a":01}', '{"a":1.}', '{"a":.5}', '{"a":+1}',
    '{"a":true,"a":2}', '{"a":"x\ny"}', "{a:1}", '{"a":1}//c', '{"a":[1,]}', '{"a":"\x00"}',
    '{"a":1e999}', '{"a":-}', '{"a":1} {"b":2}', "{}", "{ }", "{\t}", '{"a":{"b":}}', "{broken}",
]  # fmt: skip


def test_the_trusting_fast_path_fails_exactly_where_json_valid_refuses():
    """The trusting fast path parses a line with no json_valid() first, counting on the parser
    to raise on any line json_valid() refuses (and the run then starts over validating): both
    must agree on every line, or a line could be vouched for that the validating path would
    not."""
    with duckdb.connect() as conn:
        for line in [*ODD_JSON, *(line for line, _ in EVENT_LINES), *SPACED_LINES["diagnosed"]]:
            [(valid,)] = conn.execute("SELECT json_valid(?)", [line]).fetchall()
            try:
                conn.execute("SELECT json_extract_string(?, ['$.a', '$.b'])", [line]).fetchall()
                parsed = True
            except duckdb.InvalidInputException:
                parsed = False
            assert parsed == bool(valid), line


def test_the_lines_left_over_are_not_held_in_memory_at_once(tmp_path):
    """A payments file has no fast path, so every line of it is left over for the diagnosis:
    gathered into one list per file, a 400 MB file failed its day with an out-of-memory error
    under the default 512MB limit. Written as a temp table's rows, they spill past the limit:
    here 2,000,000 short lines (a list of ~200 MB) under a 64MB limit, with each file's header,
    records and line numbers as before."""
    big, small = tmp_path / "big.csv", tmp_path / "small.csv"
    # The header after a blank line; every 1,000th line blank: not a record, but numbered.
    written = ["", " h", *("" if i % 1000 == 0 else str(i % 10) for i in range(2_000_000))]
    big.write_text("".join(f"{line}\n" for line in written))
    small.write_text("h,2\n\n x\ny\n")
    records = [(n, line) for n, line in enumerate(written, 1) if n > 2 and line]
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        conn.execute("SET memory_limit = '64MB'")
        counts = expose_leftovers(conn, [FileLines(big), FileLines(small)], 1, None)
        lines = conn.execute(
            "SELECT file_index, count(*), sum(line_number), sum(length(line)) FROM _file_lines "
            "GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        headers = conn.execute("FROM _file_header ORDER BY ALL").fetchall()
    assert counts == [len(records), 2]
    assert lines == [
        (0, len(records), sum(n for n, _ in records), sum(len(line) for _, line in records)),
        (1, 2, 3 + 4, 3),
    ]
    assert headers == [(0, 2, " h", True), (1, 1, "h,2", True)]


@pytest.mark.parametrize(
    ("content", "lone"),
    [
        (b"{1}\r\n{2}\r\n", False),  # Windows line endings, the file under HEAD_BYTES
        (b"{1}\r\n{2}", False),
        (b"{1}\n{2}\r", False),  # a CR as the file's last byte ends its last line
        (b"{1}\r{2}\n", True),
        (b"{1}\r\n{2}\r{3}\r\n", True),
        (b"{1}\r", False),
    ],
)
def test_only_a_cr_that_ends_no_crlf_sends_a_file_to_the_python_copy(content, lone, tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_bytes(content)
    assert has_lone_cr(path) is lone


def test_a_crlf_split_by_the_head_is_no_lone_cr(tmp_path):
    path = tmp_path / "f.jsonl"
    first = b"{" + b"x" * (HEAD_BYTES - 3) + b"}\r"  # the head ends with the CR, its LF next
    path.write_bytes(first + b"\n{2}\r\n")
    assert not has_lone_cr(path)
    path.write_bytes(first + b"{2}\r\n")
    assert has_lone_cr(path)


def test_file_names_with_glob_characters_are_read_as_written(settings, resources, tmp_path):
    """Both engines read `*`, `?` and `[` in a path as a pattern: `a[1].jsonl` would read
    `a1.jsonl`, and `b?.jsonl` every two-letter `b` file. Each file is read as itself, once."""
    ids = {"a1": ["one"], "a[1]": ["two", "three"], "b?": ["four"], "bx": ["five"], "c*": ["six"]}
    for name, event_ids in ids.items():
        put_lines(
            resources["landing"],
            f"events/dt={DAY}/{name}.jsonl",
            [event(i) for i in event_ids],
            tmp_path,
        )
    assert dg.materialize(FILE_ASSETS, resources=resources, partition_key=DAY.isoformat()).success
    expected = sorted(
        (f"events/dt={DAY}/{name}.jsonl", number, event_id)
        for name, event_ids in ids.items()
        for number, event_id in enumerate(event_ids, start=1)
    )
    loaded = "SELECT _source_file, _line_number, event_id FROM raw.events ORDER BY ALL"
    assert query(settings.warehouse, loaded) == expected
    assert query(settings.warehouse, "SELECT count(*) FROM raw.dead_letter") == [(0,)]


def test_a_header_naming_a_column_twice_refuses_its_rows(settings, resources, tmp_path):
    """Which of two `note` (or `amount`) values is meant cannot be told: each row of such a file
    is a dead letter saying so (an extra column given twice failed the whole day; a contract
    column given twice loaded the first value and dropped the second). Unnamed columns are no
    repeated name: a value under one is refused for that (`payment_header_cases`)."""
    landing, fields = resources["landing"], "payment_id,order_id,amount,currency,status,created_at"
    row = "2026-01-05T10:00:00Z"
    put_lines(landing, f"payments/dt={DAY}/note.csv", [f"{fields},note,note", f"p1,1,1.00,EUR,succeeded,{row},a,b"], tmp_path)  # fmt: skip
    put_lines(landing, f"payments/dt={DAY}/amount.csv", [f"{fields},Amount", f"p2,2,1.00,EUR,succeeded,{row},99.00"], tmp_path)  # fmt: skip
    put_lines(landing, f"payments/dt={DAY}/fine.csv", [fields, f"p3,3,1.00,EUR,succeeded,{row}"], tmp_path)  # fmt: skip
    # A spreadsheet's export: two columns without a name (failed the whole day on both engines,
    # then every row was refused as naming "" twice).
    put_lines(landing, f"payments/dt={DAY}/unnamed.csv", [f"{fields},,", f"p4,4,1.00,EUR,succeeded,{row},x,"], tmp_path)  # fmt: skip
    assert dg.materialize(FILE_ASSETS, resources=resources, partition_key=DAY.isoformat()).success
    assert query(settings.warehouse, "SELECT payment_id FROM raw.payments") == [("p3",)]
    dead = query(
        settings.warehouse, "SELECT source_file, line_number, error FROM raw.dead_letter ORDER BY 1"
    )
    assert [(key.rsplit("/", 1)[1], line) for key, line, _ in dead] == [
        ("amount.csv", 2),
        ("note.csv", 2),
        ("unnamed.csv", 2),
    ]
    assert dead[0][2].startswith('the header names "amount" more than once')
    assert dead[1][2].startswith('the header names "note" more than once')
    assert dead[2][2].startswith('column 7 has no name in the header (line 1) but holds "x"')


_HEADER = "payment_id,order_id,amount,currency,status,created_at"


def _row(n: int) -> str:
    return f"p{n},{n},12.50,EUR,succeeded,2026-01-05T10:00:00Z"


# Payments files whose header is not simply line 1, or names columns with no name or in bytes
# that are not UTF-8: (name, bytes; `.gz` names gzipped). Shared with the engines' parity test
# (test_dbt_spark).
PAYMENT_HEADER_CASES = [
    # Blank lines (ASCII white space) before the header are ignored: the header is the first
    # line that is not blank, and numbers count every line. Line 1 was the header: every row,
    # and the real header, refused as "row has 6 fields but the header names 1".
    ("blank-first.csv", f"\n{_HEADER}\n{_row(1)}\n".encode()),
    ("spaces-first.csv", f"  \r\n\t\r\n{_HEADER}\r\n\r\n{_row(2)}\r\n".encode()),
    ("blank-first.csv.gz", f"\n\n{_HEADER}\n{_row(3)}\n".encode()),
    ("blank-then-header-only.csv", f"\n{_HEADER}\n".encode()),  # a day without payments
    ("blank-only.csv", b"\n \n\t\n"),  # no header: the file is empty
    # Unicode spaces make no line blank (as for events): each such line is refused, named.
    (
        "unicode-spaces.csv",
        f"{_HEADER}\n\u00a0\n{_row(4)}\n\u2028 \n\u3000\t\n".encode(),
    ),
    ("nbsp-before-header.csv", f"\u00a0\n{_HEADER}\n{_row(5)}\n".encode()),
    # Unnamed columns (a spreadsheet's trailing `,,`): their empty cells are nothing; a value in
    # one is refused. Each row was refused as naming "" twice.
    (
        "unnamed.csv",
        f"{_HEADER},,\n{_row(6)},,\n{_row(7)},x,\n{_row(8)}, ,\n".encode(),
    ),
    ("one-unnamed.csv", f"{_HEADER},\n{_row(12)},\n".encode()),  # rescued {"": ""} before
    # An unnamed column mid-header, and the unquoted comma (12,50) that shifts a row onto it.
    (
        "unnamed-middle.csv",
        (
            b"payment_id,order_id,,amount,currency,status,created_at,note\n"
            b"p9,9,,12.50,EUR,succeeded,2026-01-05T10:00:00Z,hi\n"
            b"p10,10,12,50,EUR,succeeded,2026-01-05T10:00:00Z,\n"
        ),
    ),
    # A Latin-1 header (`réf`): rescued as `r\ufffdf`, with no report.
    (
        "latin1-header.csv",
        f"\n{_HEADER},r\xe9f\n{_row(11)},x\n".encode("latin-1"),
    ),
]
_SPACES = "among them (a no-break space, a line separator, or another Unicode space"
# (file, line, payment_id, _rescued) of raw.payments, and (file, line, reason's start) of the
# dead letters, worked out from the contract by hand.
PAYMENT_HEADER_ROWS = [
    ("blank-first.csv", 3, "p1", None),
    ("blank-first.csv.gz", 4, "p3", None),
    ("one-unnamed.csv", 2, "p12", None),
    ("spaces-first.csv", 5, "p2", None),
    ("unicode-spaces.csv", 3, "p4", None),
    ("unnamed-middle.csv", 2, "p9", {"note": "hi"}),
    ("unnamed.csv", 2, "p6", None),
    ("unnamed.csv", 4, "p8", None),
]
PAYMENT_HEADER_LETTERS = [
    ("blank-only.csv", None, "the file is empty (no header line and no record)"),
    (
        "latin1-header.csv",
        3,
        "the header (line 2) is not valid UTF-8 text, so its column names cannot be read",
    ),
    ("nbsp-before-header.csv", 2, f"the header (line 1) holds only spaces, U+00A0 {_SPACES}"),
    ("nbsp-before-header.csv", 3, f"the header (line 1) holds only spaces, U+00A0 {_SPACES}"),
    ("unicode-spaces.csv", 2, f"the line holds only spaces, U+00A0 {_SPACES}"),
    ("unicode-spaces.csv", 4, f"the line holds only spaces, U+2028 {_SPACES}"),
    ("unicode-spaces.csv", 5, f"the line holds only spaces, U+3000 {_SPACES}"),
    (
        "unnamed-middle.csv",
        3,
        'column 3 has no name in the header (line 1) but holds "12" on this row',
    ),
    ("unnamed.csv", 3, 'column 7 has no name in the header (line 1) but holds "x" on this row'),
]


def land_payment_header_cases(landing_root: Path, day: date) -> Path:
    """PAYMENT_HEADER_CASES in `day`'s payments folder under `landing_root`."""
    folder = landing_root / "payments" / f"dt={day}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in PAYMENT_HEADER_CASES:
        (folder / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return folder


def test_a_payments_header_is_the_first_line_that_is_not_blank(settings, resources):
    """Blank lines before the header, lines of Unicode spaces, unnamed columns and a header
    that is not UTF-8: each row lands or is refused with a reason naming its cause, numbered
    as the contract counts lines, and conservation holds against an independent count."""
    folder = land_payment_header_cases(settings.home / "landing", DAY)
    result = dg.materialize(
        [*FILE_ASSETS, conservation_check(PAYMENT_FILES)], resources=resources,
        partition_key=DAY.isoformat(), raise_on_error=False,
    )  # fmt: skip
    assert result.success
    rows = query(
        settings.warehouse,
        "SELECT _source_file, _line_number, payment_id, _rescued FROM raw.payments ORDER BY 1, 2",
    )
    assert [
        (key.rsplit("/", 1)[1], line, pid, rescued and json.loads(rescued))
        for key, line, pid, rescued in rows
    ] == PAYMENT_HEADER_ROWS
    letters = query(
        settings.warehouse,
        "SELECT source_file, line_number, error, raw_record FROM raw.dead_letter "
        "WHERE source = 'payments' ORDER BY 1, 2",
    )
    assert [(key.rsplit("/", 1)[1], line) for key, line, _, _ in letters] == [
        (name, line) for name, line, _ in PAYMENT_HEADER_LETTERS
    ]
    for (_, _, error, _), (name, line, reason) in zip(letters, PAYMENT_HEADER_LETTERS, strict=True):
        assert error.startswith(reason), (name, line, error)
    assert letters[0][3] is None  # the empty file's letter has no line
    # Conservation: every non-blank line after the first one is a record (count_records, its
    # own reading), and the empty file counts as its one dead letter.
    independent = sum(count_records(path, 1) for path in folder.iterdir()) + 1
    [meta] = [
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["raw", "payments"])
    ]
    assert independent == 17 == len(PAYMENT_HEADER_ROWS) + len(PAYMENT_HEADER_LETTERS)
    assert meta["records_read"].value == independent
    assert (meta["rows_loaded"].value, meta["rows_dead_lettered"].value) == (8, 9)
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.passed, evaluation.metadata
    assert evaluation.metadata["records_in_files"].value == independent


def test_a_line_looks_blank_by_unicodes_white_space_beyond_the_blank_ascii():
    """One definition of blank (ASCII white space) on every reader; a line of Unicode's other
    White_Space characters, the space separators staging trims among them, is named."""
    white_space = {c for c in map(chr, range(0x110000)) if c.isspace()} - set("\x1c\x1d\x1e\x1f")
    assert set(UNICODE_SPACES) == white_space - set(BLANK)
    assert set(vocabulary().space_separators) <= set(UNICODE_SPACES) | {" "}


def land_three_days(landing, tmp_path) -> list[date]:
    days = [date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)]
    for i, day in enumerate(days):
        lines = [event(f"{day}-{n}", user_id=n) for n in range(i + 2)] + ["{oops"]
        put_lines(landing, f"events/dt={day}/part-0.jsonl", lines, tmp_path)
        put_lines(
            landing,
            f"payments/dt={day}/p.csv",
            [
                "payment_id,order_id,amount,currency,status,created_at",
                f"p{i},{i},1.5,EUR,succeeded,{day}T09:00:00Z",
                "bad",
            ],
            tmp_path,
        )
    return days


def events_metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    """raw/events' materialization metadata by partition, values unwrapped."""
    return {
        e.partition: {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["raw", "events"])
    }


def test_single_run_range_equals_day_by_day(settings, resources, tmp_path, monkeypatch):
    """A range of days in one run gives the tables of a run per day. Its figures are the run's
    (each day showed the range's sums as its own, and as its partition row count), a day's own
    only when the run is that day's."""
    days = land_three_days(resources["landing"], tmp_path)
    ranged_run = materialize_days(FILE_ASSETS, resources, days)
    assert ranged_run.success
    ranged = snapshot(settings.warehouse)
    per_day = events_metadata(ranged_run)
    assert sorted(per_day) == [d.isoformat() for d in days]
    for figures in per_day.values():  # 2, 3 and 4 events and a bad line a day
        assert (figures["run_records_read"], figures["run_rows_loaded"]) == (12, 9)
        assert not {"records_read", "rows_loaded", "dagster/partition_row_count"} & set(figures)
    # raw/dead_letter's figures, as the last of the two steps left them: a day's bad event
    # line and bad payment line, the table's six.
    dead_letter = {
        e.partition: {k: v.value for k, v in e.materialization.metadata.items()}
        for e in ranged_run.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["raw", "dead_letter"])
    }
    assert sorted(dead_letter) == [d.isoformat() for d in days]
    for figures in dead_letter.values():
        assert (figures["dagster/partition_row_count"], figures["dagster/row_count"]) == (2, 6)

    monkeypatch.setenv("DATA_PLATFORM_WAREHOUSE", str(tmp_path / "by_day.duckdb"))
    from data_platform.settings import load_settings

    by_day_settings = load_settings()
    by_day_resources = build_resources(by_day_settings)
    for i, day in enumerate(days):
        one_day = dg.materialize(
            FILE_ASSETS, resources=by_day_resources, partition_key=day.isoformat()
        )
        [figures] = events_metadata(one_day).values()
        assert (figures["records_read"], figures["dagster/partition_row_count"]) == (i + 3, i + 2)
    assert snapshot(by_day_settings.warehouse) == ranged
    assert {r[-1] for r in ranged["raw.events"]} == set(days)


def test_s3_landing_gives_the_same_tables_as_a_local_folder(
    settings, resources, s3_landing, tmp_path, monkeypatch
):
    days = land_three_days(resources["landing"], tmp_path)
    land_three_days(s3_landing, tmp_path)
    assert materialize_days(FILE_ASSETS, resources, days).success
    local = snapshot(settings.warehouse)

    s3_resources = {
        **build_resources(settings),
        "landing": s3_landing,
        "warehouse": Warehouse(path=str(tmp_path / "s3.duckdb")),
    }
    assert materialize_days(FILE_ASSETS, s3_resources, days).success
    assert snapshot(tmp_path / "s3.duckdb") == local
    assert len(local["raw.events"]) == 2 + 3 + 4


def test_simulated_defects_land_where_the_contract_says(settings, resources, tmp_path):
    from data_platform.simulator import SimulationConfig, simulate

    config = SimulationConfig(
        seed=11, days=3, end_date=date(2026, 1, 7), users=60, events_per_day=600, defect_rate=0.05
    )
    simulate(config, resources["landing"], settings.source_db_url)
    days = [date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)]
    result = materialize_days(FILE_ASSETS, resources, days)
    assert result.success

    root = settings.home / "landing"
    verdicts = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            verdicts |= classify_landing_file(path, path.relative_to(root).as_posix())
    dead = {
        (f, n)
        for f, n in query(
            settings.warehouse, "SELECT source_file, line_number FROM raw.dead_letter"
        )
    }
    loaded = {
        (f, n)
        for table in ("events", "payments")
        for f, n in query(settings.warehouse, f"SELECT _source_file, _line_number FROM raw.{table}")
    }
    assert dead == {k for k, ok in verdicts.items() if not ok}
    assert loaded == {k for k, ok in verdicts.items() if ok}
    assert len(dead) > 20  # the defect rate really produced rejects

    for source in ("events", "payments"):
        per_day = query(
            settings.warehouse,
            f"SELECT dt, count(*) FROM (SELECT dt FROM raw.{source} UNION ALL "
            "SELECT dt FROM raw.dead_letter WHERE source = ?) GROUP BY dt ORDER BY dt",
            [source],
        )
        expected = {}
        for (key, _), _ok in verdicts.items():
            if key.startswith(f"{source}/"):
                day = date.fromisoformat(key.split("/")[1].removeprefix("dt="))
                expected[day] = expected.get(day, 0) + 1
        assert dict(per_day) == expected


def test_line_numbers_hold_in_files_read_by_several_threads(settings, resources, tmp_path):
    # Large enough for DuckDB to read each file in many chunks on every thread it has (rows
    # are inserted without keeping their order): each record names its own line, and a few
    # lines are blank or broken, so both the fast path and the diagnosis number them.
    lines_per_file = 150_000
    for name in ("a.jsonl", "b.jsonl.gz"):
        lines = [
            "" if n % 50_000 == 7 else "{oops" if n % 40_000 == 3 else event(f"{name}:{n}")
            for n in range(1, lines_per_file + 1)
        ]
        put_lines(resources["landing"], f"events/dt={DAY}/{name}", lines, tmp_path)
    assert dg.materialize(FILE_ASSETS, resources=resources, partition_key=DAY.isoformat()).success
    misplaced = query(
        settings.warehouse,
        "SELECT count(*) FILTER (WHERE event_id <> "
        "  regexp_extract(_source_file, '[^/]+$') || ':' || _line_number), count(*) "
        "FROM raw.events",
    )
    blank = [n for n in range(1, lines_per_file + 1) if n % 50_000 == 7]
    broken = [n for n in range(1, lines_per_file + 1) if n % 40_000 == 3]
    assert misplaced == [(0, 2 * (lines_per_file - len(blank) - len(broken)))]
    dead = query(
        settings.warehouse,
        "SELECT regexp_extract(source_file, '[^/]+$'), line_number FROM raw.dead_letter "
        "ORDER BY ALL",
    )
    assert dead == [(name, n) for name in ("a.jsonl", "b.jsonl.gz") for n in broken]


def test_rerunning_a_day_of_large_files_does_not_grow_the_warehouse(settings, resources, tmp_path):
    # Files of more lines than a row group holds (122,880) leave partly filled row groups,
    # which ingestion's checkpoint does not merge: what a re-run deletes must still be freed.
    for name in ("a.jsonl", "b.jsonl"):
        lines = [event(f"{name}:{n}") for n in range(130_000)]
        put_lines(resources["landing"], f"events/dt={DAY}/{name}", lines, tmp_path)
    sizes = []
    for _ in range(4):
        assert dg.materialize(
            FILE_ASSETS, resources=resources, partition_key=DAY.isoformat()
        ).success
        sizes.append(settings.warehouse.stat().st_size)
    assert query(settings.warehouse, "SELECT count(*) FROM raw.events") == [(260_000,)]
    # A re-run writes its rows before the old ones are freed: at most twice the first size.
    assert max(sizes) <= 2.2 * sizes[0], sizes


def test_ids_are_stored_uncompressed_in_new_tables_and_added_columns(settings, resources, tmp_path):
    # A warehouse whose raw.payments predates payment_id: the column is added with the hint.
    settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.warehouse)) as conn:
        conn.execute("CREATE SCHEMA raw")
        conn.execute("CREATE TABLE raw.payments (order_id BIGINT)")
    put_lines(resources["landing"], f"events/dt={DAY}/a.jsonl", [event("e1")], tmp_path)
    assert dg.materialize(FILE_ASSETS, resources=resources, partition_key=DAY.isoformat()).success
    ddl = dict(query(settings.warehouse, "SELECT table_name, sql FROM duckdb_tables()"))
    assert "event_id VARCHAR USING COMPRESSION Uncompressed," in ddl["events"]
    assert "payment_id VARCHAR USING COMPRESSION Uncompressed" in ddl["payments"]
    compression = "SELECT DISTINCT compression FROM pragma_storage_info('raw.events') "
    assert query(
        settings.warehouse,
        compression + "WHERE column_name = 'event_id' AND segment_type = 'VARCHAR'",
    ) == [("Uncompressed",)]


def test_a_cr_only_file_whose_first_line_passes_the_head_is_one_line(settings, resources):
    """Lines end at LF only: a file whose lines all end in CR is one line by the contract.
    has_lone_cr looks at the first 1 MB only (a CR as its last byte may end a CRLF), so a CR-only
    file whose first line is 1 MB or longer goes to DuckDB's strict reader, which takes every CR
    for a line end: three records loaded where the contract has one line that is not JSON."""
    folder = settings.home / "landing" / "events" / f"dt={DAY}"
    folder.mkdir(parents=True)
    first = event("first", properties={"blob": ""})
    first = event("first", properties={"blob": "x" * (HEAD_BYTES - 1 - len(first))})
    assert len(first) == HEAD_BYTES - 1  # its CR is the head's last byte
    text = "\r".join([first, event("a"), event("b")])
    for name in ("cr-only.jsonl", "cr-only.jsonl.gz"):
        data = (text + "\r").encode()
        (folder / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    evaluation = conservation_of_the_day(resources)
    assert query(settings.warehouse, "SELECT _source_file, _line_number FROM raw.events") == []
    letters = query(
        settings.warehouse,
        "SELECT source_file, line_number, raw_record FROM raw.dead_letter ORDER BY ALL",
    )
    assert letters == [
        (f"events/dt={DAY}/cr-only.jsonl", 1, text),
        (f"events/dt={DAY}/cr-only.jsonl.gz", 1, text),
    ]
    assert evaluation.passed, evaluation.description


def test_a_byte_order_mark_is_read_alike_whatever_the_line_endings(settings, resources):
    """DuckDB's line reader drops a UTF-8 byte order mark (as Excel's 'CSV UTF-8' writes it),
    so a BOM'd file whose lines all end alike loads; the Python copy that a file with mixed
    endings now takes keeps it, so the same header no longer names payment_id (every row dead-
    lettered) and the same first event is 'not valid JSON'. One file's fate must not hang on
    another line's ending."""
    bom = b"\xef\xbb\xbf"
    header = b"payment_id,order_id,amount,currency,status,created_at"
    rows = [f"p{i},{i},1.50,EUR,succeeded,2026-01-05T10:00:00Z".encode() for i in (1, 2)]
    payments = settings.home / "landing" / "payments" / f"dt={DAY}"
    payments.mkdir(parents=True)
    (payments / "all-crlf.csv").write_bytes(bom + header + b"\r\n" + rows[0] + b"\r\n" + rows[1] + b"\r\n")  # fmt: skip
    (payments / "last-lf.csv").write_bytes(bom + header + b"\r\n" + rows[0] + b"\r\n" + rows[1] + b"\n")  # fmt: skip
    events = settings.home / "landing" / "events" / f"dt={DAY}"
    events.mkdir(parents=True)
    lines = [event("a").encode(), event("b").encode()]
    (events / "all-lf.jsonl").write_bytes(bom + lines[0] + b"\n" + lines[1] + b"\n")
    (events / "mixed.jsonl").write_bytes(bom + lines[0] + b"\r\n" + lines[1] + b"\n")
    assert dg.materialize(FILE_ASSETS, resources=resources, partition_key=DAY.isoformat()).success
    loaded = query(settings.warehouse, "SELECT _source_file, _line_number FROM raw.payments")
    assert sorted(loaded) == [
        (f"payments/dt={DAY}/{name}", n) for name in ("all-crlf.csv", "last-lf.csv") for n in (2, 3)
    ]
    loaded = query(settings.warehouse, "SELECT _source_file, _line_number FROM raw.events")
    assert sorted(loaded) == [
        (f"events/dt={DAY}/{name}", n) for name in ("all-lf.jsonl", "mixed.jsonl") for n in (1, 2)
    ]


# Malformed, and DuckDB's message about it quotes its start cut inside the é, which DuckDB's
# Python client cannot decode: a UnicodeDecodeError, not an InvalidInputException, failed the day.
HALF_A_CHARACTER_QUOTED = (
    '{"event_id":"e1","user_id":1,"event_type":"xxxé","occurred_at":"2025-06-01T10:00:00.000Z" x}'
)
# Where a file's lines are left over by the fast path decides how it is read again (a defect
# before its last vouched line: read again at once; otherwise its lines are counted first).
LEFTOVERS_BY_PLACE = {
    "clean.jsonl": [event("c1"), event("c2"), event("c3")],
    "defect-inside.jsonl": [event("i1"), "{broken", event("i2")],
    "defect-last.jsonl": [event("l1"), event("l2"), "{broken"],
    "blank-inside-and-last.jsonl": [event("b1"), "", event("b2"), "  "],
    "defect-first.jsonl.gz": ["{broken", event("f1")],
    "nothing-vouched.jsonl": ["{broken", "[1]"],
    "empty.jsonl": [],
    # Begins and ends as a record does, so the trusting fast path parses it: and fails.
    "looks-whole-last.jsonl": [event("w1"), "{broken}"],
    # Its last line's text is vouched for wherever it stands.
    "ends-as-it-began.jsonl": [event("r1"), event("r2"), event("r1")],
    "clean.jsonl.gz": [event("g1"), event("g2")],
}


def test_a_malformed_line_whose_error_quotes_half_a_character_is_a_dead_letter(
    settings, resources, tmp_path
):
    """The trusting fast path fails its statement on this line, as on any malformed line that
    looks like a record, and the run starts over validating; but DuckDB's message quotes the
    line cut inside the é, and the UnicodeDecodeError its client raised instead failed the day
    on every run (a fuzz found it)."""
    key = f"events/dt={DAY}/a.jsonl"
    put_lines(resources["landing"], key, [event("h1"), HALF_A_CHARACTER_QUOTED], tmp_path)
    dg.materialize(FILE_ASSETS, resources=resources, partition_key=DAY.isoformat())
    assert query(settings.warehouse, "SELECT event_id FROM raw.events") == [("h1",)]
    dead = "SELECT source_file, line_number, raw_record, error FROM raw.dead_letter"
    assert query(settings.warehouse, dead) == [(key, 2, HALF_A_CHARACTER_QUOTED, INVALID_JSON)]


def test_leftovers_are_found_wherever_they_are_in_a_file(settings, resources, tmp_path):
    """Whatever the place of a file's leftover lines (before, after or around the lines the fast
    path loads, blank or not, none at all, or every line), every record lands once, under its
    own line, and the day's records add up."""
    landing = resources["landing"]
    for name, lines in LEFTOVERS_BY_PLACE.items():
        put_lines(landing, f"events/dt={DAY}/{name}", lines, tmp_path)
    result = dg.materialize(FILE_ASSETS, resources=resources, partition_key=DAY.isoformat())
    [read] = [
        e.materialization.metadata["records_read"].value
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["raw", "events"])
    ]
    expected_rows, expected_dead = [], []
    for name, lines in LEFTOVERS_BY_PLACE.items():
        for number, line in enumerate(lines, start=1):
            if line.startswith("{broken") or line == "[1]":
                expected_dead.append((f"events/dt={DAY}/{name}", number, line))
            elif line.strip():
                expected_rows.append(
                    (f"events/dt={DAY}/{name}", number, json.loads(line)["event_id"])
                )
    rows = "SELECT _source_file, _line_number, event_id FROM raw.events ORDER BY ALL"
    dead = "SELECT source_file, line_number, raw_record FROM raw.dead_letter ORDER BY ALL"
    assert query(settings.warehouse, rows) == sorted(expected_rows)
    assert query(settings.warehouse, dead) == sorted(expected_dead)
    assert read == len(expected_rows) + len(expected_dead) == 22
    assert conservation_of_the_day(resources).passed


FILE_SIZE_LIMITED = """
import resource, signal, sys
from datetime import date, datetime
import duckdb
from data_platform.ingestion.file_formats import EVENT_FILES
from data_platform.ingestion.files import ingest_file_partitions
from data_platform.resources.landing import LandingZone
warehouse, landing, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
with duckdb.connect(warehouse) as conn:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    ingest_file_partitions(conn, LandingZone(url=landing), EVENT_FILES, [date.fromisoformat(
        sys.argv[4])], datetime(2026, 1, 6))
"""


def test_a_commit_that_cannot_be_written_fails_with_its_cause_and_leaves_the_day_as_it_was(
    resources, tmp_path
):
    """A COMMIT that failed (a disk full: here a file-size limit, which needs no root) ended
    the transaction itself, and the ROLLBACK after it raised "cannot rollback - no
    transaction is active": the run said that instead of why. The day stays as it was, and
    the next run loads it."""
    landing, warehouse = resources["landing"], tmp_path / "warehouse.duckdb"
    put_lines(landing, f"events/dt={DAY}/a.jsonl", [event("first")], tmp_path)
    before = _ingested(warehouse, landing, EVENT_FILES)
    lines = [event(f"e{i}") for i in range(5_000)]
    put_lines(landing, f"events/dt={DAY}/b.jsonl", lines, tmp_path)
    limit = warehouse.stat().st_size  # no write may grow it: the WAL starts empty
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            FILE_SIZE_LIMITED,
            str(warehouse),
            landing.url,
            str(limit),
            str(DAY),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "File too large" in last and "cannot rollback" not in done.stderr, done.stderr[-2000:]
    with duckdb.connect(str(warehouse)) as conn:
        assert conn.execute("SELECT event_id FROM raw.events").fetchall() == [("first",)]
    after = _ingested(warehouse, landing, EVENT_FILES)
    assert len(after["events"]) == 5_001 and before["dead_letter"] == after["dead_letter"] == []


def _common_spelling_mutations() -> list[str]:
    """A timestamp in the spelling DuckDB tells without the grammar's regexp, each of its
    characters replaced by every ASCII character and a few others, and its first two replaced
    by pairs: where DuckDB's cast is lenient (a year opening with a space or a sign, an hour
    opening with a space, hour 24)."""
    common = "2026-01-05T10:00:00.000Z"
    others = [chr(code) for code in range(1, 128)] + ["\u00a0", "\u0660", "\uff11"]
    mutated = {common[:i] + c + common[i + 1 :] for i in range(len(common)) for c in others}
    mutated |= {a + b + common[2:] for a in others for b in "0123456789 +-"}
    mutated |= {f"2026-01-05T{hour:02}:00:00.000Z" for hour in range(100)}
    return sorted(mutated)


def test_the_common_timestamp_spelling_is_told_as_the_grammar_tells_it():
    """DuckDB vouches for the common spelling (2026-01-05T10:00:00.000Z) without the grammar's
    regexp, on every line of a clean day: wherever its shallower test passes, the grammar
    alone must give the same timestamp or none, or DuckDB would load text Spark refuses."""
    spaces = " || ".join(f"chr({c})" for c in SPACE_CODE_POINTS)
    grammar_only = (
        f"CASE WHEN {DUCKDB.full_match('s', TIMESTAMP_GRAMMAR)} "
        f"THEN make_timestamp(epoch_us(TRY_CAST(trim(s, {spaces}) AS TIMESTAMPTZ))) END"
    )
    with duckdb.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("CREATE TABLE t AS SELECT unnest(?) AS s", [_common_spelling_mutations()])
        differing = conn.execute(
            f"SELECT s FROM t WHERE ({DUCKDB.try_utc_timestamp('s')}) "
            f"IS DISTINCT FROM ({grammar_only})"
        ).fetchall()
        [(loaded, refused)] = conn.execute(
            f"SELECT count(x), count(*) - count(x) FROM (SELECT {DUCKDB.try_utc_timestamp('s')} "
            "AS x FROM t)"
        ).fetchall()
    assert differing == []
    assert loaded > 100 and refused > 1000  # both outcomes are put to the test


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("2026-01-05T10:00:00Z", True),
        ("2026-01-05 10:00:00.123456789-05:30", True),
        ("2026-01-05T10:00+0100", True),
        ("2026-01-05T10:00:00-05", True),
        ("\t2026-01-05T10:00:00Z\n", True),
        ("2026-01-05", True),
        ("2026-01-05T10:00:00.1234567890Z", False),  # past nanoseconds
        ("2026-01-05T10:00:00.Z", False),
        ("2026-01-05T10", False),
        ("2026-01-05T23:59:60Z", False),
        ("2026-01-05T10:00:00+18:00", False),
        ("2026-01-05T10:00:00+14:00:30", False),
        ("2026-01-05T10:00:00 +01:00", False),
        ("2026-01-05t10:00:00z", False),
        ("2026-01-05T10:00:00\u00a0", False),
    ],
)
def test_the_timestamp_grammar(text, matches):
    """The forms both engines' casts read alike, and no other (see TIMESTAMP_GRAMMAR)."""
    with duckdb.connect() as conn:
        [(found,)] = conn.execute(
            f"SELECT {DUCKDB.full_match('?', TIMESTAMP_GRAMMAR)}", [text]
        ).fetchall()
    assert found is matches


def test_repeated_names_of_a_wide_header_are_found_in_one_sort():
    """Each name was compared with every other (5.1 s for 40,000 columns, inside the day's
    write transaction); equal neighbours once sorted give the same reason's names."""
    from data_platform.ingestion.file_formats import _repeated

    names = [f"x{j}" for j in range(40_000)] + ["x7", "", "B", "x7", "", "b"]
    with duckdb.connect() as conn:
        [(found,)] = conn.execute(
            f"SELECT {_repeated('n')} FROM (SELECT ?::VARCHAR[] AS n)", [names]
        ).fetchall()
        [(none,)] = conn.execute(
            f"SELECT {_repeated('n')} FROM (SELECT ?::VARCHAR[] AS n)", [["a", "A", ""]]
        ).fetchall()
    assert (found, none) == ('"", "x7"', None)
