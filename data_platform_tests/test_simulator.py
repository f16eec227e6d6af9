"""The source simulator: deterministic, contract-exact files and rows, and exactly-counted defects.

The checks here read the files with the standard library (json, csv, gzip) and the database with
sqlite3, and classify every line independently of the simulator's code, so a summary that
disagrees with the files, or a "clean" line that breaks the contract, fails a test.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest

from data_platform.checks.vocabulary import vocabulary
from data_platform.resources.landing import LandingZone
from data_platform.services.process import wait_until
from data_platform.simulator import (
    EVENT_DEFECTS,
    PAYMENT_DEFECTS,
    SimulationConfig,
    SimulationError,
    append_day,
    command,
    simulate,
)
from data_platform_tests.helpers import count_records
from data_platform_tests.landed_records import KNOWN_EVENT_TYPES

END = date(2026, 1, 5)
REQUIRED = ("event_id", "user_id", "event_type", "occurred_at")
EVENT_FIELDS = {*REQUIRED, "session_id", "properties"}
PAYMENT_COLUMNS = {"payment_id", "order_id", "amount", "currency", "status", "created_at"}
DB_COLUMNS = {
    "users": ["id", "email", "full_name", "country", "created_at", "updated_at", "deleted_at"],
    "products": ["id", "sku", "name", "category", "unit_price", "updated_at"],
    "orders": ["id", "user_id", "status", "ordered_at", "updated_at"],
    "order_items": ["id", "order_id", "product_id", "quantity", "unit_price", "updated_at"],
}


# ---- independent readers ----------------------------------------------------------------------


def run(tmp: Path, **overrides: object) -> tuple[LandingZone, str, object]:
    settings = {"seed": 7, "days": 3, "end_date": END, "users": 200, "events_per_day": 1500}
    config = SimulationConfig(**{**settings, **overrides})
    landing = LandingZone(url=str(tmp / "landing"))
    db_url = f"sqlite:///{tmp / 'source.db'}"
    return landing, db_url, simulate(config, landing, db_url)


def landed_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.*"))}


def text_lines(path: Path) -> list[str]:
    data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    text = data.decode("utf-8")
    assert text.endswith("\n"), f"{path} does not end with a newline"
    return text[:-1].split("\n")


def partition_files(root: Path, source: str) -> dict[date, list[Path]]:
    found: dict[date, list[Path]] = {}
    for path in sorted((root / source).rglob("*.*")):
        dt = date.fromisoformat(path.parent.name.removeprefix("dt="))
        found.setdefault(dt, []).append(path)
    return found


def event_day(path: Path) -> date:
    """The day a file's events happened: its folder's (the arrival day), except a late file's,
    which names the earlier day it holds (`dt=2026-01-05/late-20260103.jsonl`)."""
    if path.name.startswith("late-"):
        return datetime.strptime(path.name, "late-%Y%m%d.jsonl").date()
    return date.fromisoformat(path.parent.name.removeprefix("dt="))


def db_rows(db_url: str, table: str) -> list[tuple]:
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()


def db_ids(db_url: str, table: str) -> set[int]:
    return {row[0] for row in db_rows(db_url, table)}


def order_totals(db_url: str) -> dict[int, Decimal]:
    totals: Counter[int] = Counter()
    for _, order_id, _, quantity, price, _ in db_rows(db_url, "order_items"):
        totals[order_id] += quantity * round(Decimal(str(price)), 2)
    return dict(totals)


def parse_ts(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


# ---- independent classifiers: which contract rule a line breaks, if any ------------------------


def well_typed(event: dict) -> bool:
    user_id = event["user_id"]
    user_ok = (isinstance(user_id, int) and not isinstance(user_id, bool)) or (
        isinstance(user_id, str) and user_id.isdigit()
    )
    return (
        isinstance(event["event_id"], str)
        and user_ok
        and isinstance(event["event_type"], str)
        and parse_ts(event["occurred_at"]) is not None
    )


def classify_event(line: str, day: date, users: set[int], seen: set[str]) -> str | None:
    """`day`: the day the line's file holds events of (`event_day`)."""
    if not line.strip():
        return "blank_line"
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return "truncated_json"
    if not isinstance(event, dict):
        return "not_an_object"
    if any(field not in event for field in REQUIRED):
        return "missing_required_field"
    if any(event[field] is None for field in REQUIRED):
        return "null_required_field"
    if not well_typed(event):
        return "wrong_type"
    if line in seen:
        return "duplicate"
    seen.add(line)
    stamp = event["occurred_at"]
    checks = [
        ("digit_string_user_id", isinstance(event["user_id"], str)),
        ("naive_timestamp", datetime.fromisoformat(stamp).tzinfo is None),
        ("offset_timestamp", not stamp.endswith("Z") and datetime.fromisoformat(stamp).tzinfo),
        ("extra_fields", bool(set(event) - EVENT_FIELDS)),
        ("unknown_event_type", event["event_type"] not in KNOWN_EVENT_TYPES),
        ("orphan_user_id", int(event["user_id"]) not in users),
        ("late_event", parse_ts(stamp).date() != day),
    ]
    found = [kind for kind, hit in checks if hit]
    assert len(found) <= 1, f"one line, several defects {found}: {line}"
    return found[0] if found else None


def classify_payment(line: str, header: list[str], orders: set[int], seen: set[str]) -> str | None:
    if not line.strip():
        return "blank_line"
    row = next(csv.reader([line]))
    if len(row) != len(header):
        return "wrong_column_count"
    record = dict(zip(header, row, strict=True))
    if any(record[column] == "" for column in PAYMENT_COLUMNS):
        return "missing_value"
    try:
        order_id, amount = int(record["order_id"]), Decimal(record["amount"])
    except (ValueError, InvalidOperation):
        return "wrong_type"
    if parse_ts(record["created_at"]) is None:
        return "wrong_type"
    if line in seen:
        return "duplicate"
    seen.add(line)
    if amount < vocabulary().payment_amount_min or amount > vocabulary().payment_amount_max:
        return "out_of_range_amount"
    if order_id not in orders:
        return "orphan_order_id"
    return None


def classify_landing(root: Path, db_url: str) -> dict[tuple[str, date], tuple[int, Counter]]:
    """(source, dt) -> (records, defect kinds) counted from the files alone."""
    users, orders = db_ids(db_url, "users"), db_ids(db_url, "orders")
    result = {}
    for dt, paths in partition_files(root, "events").items():
        seen: set[str] = set()
        kinds = Counter(
            classify_event(line, event_day(p), users, seen) for p in paths for line in text_lines(p)
        )
        records = sum(kinds.values()) - kinds["blank_line"]
        result["events", dt] = (records, kinds)
    for dt, paths in partition_files(root, "payments").items():
        seen, kinds, records = set(), Counter(), 0
        for path in paths:
            header, *rows = text_lines(path)
            names = header.split(",")
            kinds["extra_column_file"] += len(names) != len(PAYMENT_COLUMNS)
            kinds.update(classify_payment(line, names, orders, seen) for line in rows)
            records += sum(1 for line in rows if line.strip())
        result["payments", dt] = (records, kinds)
    return result


# ---- tests -----------------------------------------------------------------------------------


def test_same_seed_same_files_and_rows_other_seed_differs(tmp_path: Path) -> None:
    run(tmp_path / "a")
    run(tmp_path / "b")
    run(tmp_path / "c", seed=8)
    a, b = landed_bytes(tmp_path / "a" / "landing"), landed_bytes(tmp_path / "b" / "landing")
    assert len(a) == 3 * 6 + 1 + 3 * 2  # six event files a day, one late file, two payments
    assert a == b
    c = landed_bytes(tmp_path / "c" / "landing")
    assert a.keys() == c.keys()  # file names do not depend on the seed, contents do
    assert all(a[key] != c[key] for key in a)
    for table in DB_COLUMNS:
        rows_a = db_rows(f"sqlite:///{tmp_path / 'a' / 'source.db'}", table)
        assert rows_a == db_rows(f"sqlite:///{tmp_path / 'b' / 'source.db'}", table)
        assert rows_a != db_rows(f"sqlite:///{tmp_path / 'c' / 'source.db'}", table)


def test_rerunning_simulate_regenerates_identically(tmp_path: Path) -> None:
    _, db_url, _ = run(tmp_path)
    files = landed_bytes(tmp_path / "landing")
    rows = {table: db_rows(db_url, table) for table in DB_COLUMNS}
    run(tmp_path)
    assert landed_bytes(tmp_path / "landing") == files
    assert {table: db_rows(db_url, table) for table in DB_COLUMNS} == rows


def test_simulate_over_another_window_leaves_no_file_of_the_old_world(tmp_path: Path) -> None:
    """The world depends on its first day: files of an older simulation's other days (a
    simulate run again a day later, its end date yesterday) contradicted the new database."""
    run(tmp_path / "home", days=3)
    (tmp_path / "home" / "landing" / "events" / "mine.jsonl").write_text("{}\n")
    run(tmp_path / "home", days=2, end_date=END + timedelta(days=1))
    run(tmp_path / "fresh", days=2, end_date=END + timedelta(days=1))
    landed = landed_bytes(tmp_path / "home" / "landing")
    assert landed.pop("events/mine.jsonl") == b"{}\n"  # not the simulator's: kept
    assert landed == landed_bytes(tmp_path / "fresh" / "landing")
    assert not any(p.is_dir() and not any(p.iterdir()) for p in (tmp_path / "home").rglob("*"))


def test_fresh_source_databases_of_one_config_are_byte_identical(tmp_path: Path) -> None:
    """Each simulate is its own process, and SQLAlchemy's index order varied between them."""
    script = (
        "import sys; from data_platform.simulator import database; "
        "database.read_world(database.connect(sys.argv[1]))"
    )
    made = []
    for number in range(4):
        path = tmp_path / f"{number}.db"
        subprocess.run([sys.executable, "-c", script, f"sqlite:///{path}"], check=True)
        made.append(path.read_bytes())
        with sqlite3.connect(path) as conn:
            indexes = conn.execute(
                "SELECT tbl_name, name FROM sqlite_master WHERE name LIKE 'ix_%' ORDER BY rowid"
            ).fetchall()
        for table in DB_COLUMNS:  # one order, whatever the process: the names'
            names = [name for of, name in indexes if of == table]
            assert names == sorted(names)
    assert all(data == made[0] for data in made)


def test_database_rows_have_the_contract_columns_and_history(tmp_path: Path) -> None:
    _, db_url, summary = run(tmp_path, users=2000, days=7)
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
        for table, columns in DB_COLUMNS.items():
            assert [row[1] for row in conn.execute(f"PRAGMA table_info({table})")] == columns
    users = db_rows(db_url, "users")
    assert len(users) == summary.db_inserted["users"] > 2000  # the initial users, plus signups
    assert len({u[3] for u in users}) == 11 and all(len(u[3]) == 2 for u in users)
    window = str(END - timedelta(days=6))
    deleted = [u for u in users if u[6] is not None]
    assert deleted and all(u[6] == u[5] >= window for u in deleted)  # soft deletes in the window
    changed = [u for u in users if u[5] >= window and u[4] < window and u[6] is None]
    assert len(changed) >= 7  # at least one e-mail change a day
    assert all(u[1].split("@")[0].count(".") == 2 for u in changed)  # first.last.N@ after a change
    products = db_rows(db_url, "products")
    assert len(products) == 200 and len({p[1] for p in products}) == 200
    assert sum(p[5] >= window for p in products) >= 7  # re-priced in the window
    orders = db_rows(db_url, "orders")
    assert {o[2] for o in orders} == {"pending", "completed", "cancelled", "refunded"}
    assert all(o[4] >= o[3] for o in orders)
    assert all(o[4] > o[3] for o in orders if o[2] != "pending")


def test_clean_run_every_line_is_contract_valid(tmp_path: Path) -> None:
    _, db_url, summary = run(tmp_path, defect_rate=0.0, events_per_day=3000)
    root = tmp_path / "landing"
    users, totals = db_ids(db_url, "users"), order_totals(db_url)
    orders = {row[0]: row for row in db_rows(db_url, "orders")}
    seen_types: Counter[str] = Counter()
    purchased: set[int] = set()
    for dt, paths in partition_files(root, "events").items():
        event_ids: set[str] = set()
        for file, line in ((p, line) for p in paths for line in text_lines(p)):
            event = json.loads(line)
            assert set(event) <= EVENT_FIELDS and all(event[f] is not None for f in REQUIRED)
            assert isinstance(event["user_id"], int) and event["user_id"] in users
            stamp = event["occurred_at"]
            assert stamp.endswith("Z") and parse_ts(stamp).date() == event_day(file)
            assert event["event_type"] in KNOWN_EVENT_TYPES and event["event_id"] not in event_ids
            assert isinstance(event.get("session_id", ""), str)
            assert isinstance(event.get("properties", {}), dict)
            event_ids.add(event["event_id"])
            seen_types[event["event_type"]] += 1
            if event["event_type"] == "purchase":
                order_id = event["properties"]["order_id"]
                assert orders[order_id][1] == event["user_id"]
                assert Decimal(str(event["properties"]["amount"])) == totals[order_id]
                purchased.add(order_id)
        assert summary.records("events", dt) == sum(len(text_lines(p)) for p in paths)
    assert set(seen_types) == KNOWN_EVENT_TYPES
    assert seen_types["page_view"] > seen_types["product_view"] > seen_types["add_to_cart"]
    assert seen_types["checkout_started"] > seen_types["purchase"] > 0
    assert purchased == set(orders)  # every order comes from a purchase event

    paid: set[int] = set()
    for dt, paths in partition_files(root, "payments").items():
        day_rows = 0
        for path in paths:
            rows = list(csv.DictReader(path.read_text().splitlines()))
            for row in rows:
                assert set(row) == PAYMENT_COLUMNS and all(row.values())
                assert Decimal(row["amount"]) == totals[int(row["order_id"])]
                assert row["currency"] in {"EUR", "USD", "GBP"}
                assert row["status"] in {"succeeded", "failed", "refunded"}
                assert parse_ts(row["created_at"]).date() == dt
                paid.add(int(row["order_id"]))
            assert rows
            day_rows += len(rows)
        assert summary.records("payments", dt) == day_rows
    assert paid == set(orders)  # every order has a payment attempt
    assert summary.hard_defects("events") == summary.hard_defects("payments") == 0
    assert not summary.defects("events") and not summary.defects("payments")


def test_defects_of_every_kind_and_summary_matches_the_files(tmp_path: Path) -> None:
    _, db_url, summary = run(tmp_path, defect_rate=0.1, events_per_day=4000)
    counted = classify_landing(tmp_path / "landing", db_url)
    reported = summary.partitions()
    assert counted.keys() == reported.keys()
    for key, (records, kinds) in counted.items():
        partition = reported[key]
        assert partition.records == records, key
        kinds.pop(None, None)
        assert {k: n for k, n in kinds.items() if n} == partition.defects, key
        hard = EVENT_DEFECTS.hard if key[0] == "events" else PAYMENT_DEFECTS.hard
        assert partition.hard_defects == sum(kinds[k] for k in hard)
    for report in summary.files:  # and file by file
        lines = text_lines(tmp_path / "landing" / report.key)
        body = lines[1:] if report.source == "payments" else lines
        assert (report.records, report.blank_lines) == (
            sum(1 for line in body if line.strip()),
            sum(1 for line in body if not line.strip()),
        )
    events, payments = summary.defects("events"), summary.defects("payments")
    assert set(events) == set(EVENT_DEFECTS.names)
    assert set(payments) == {*PAYMENT_DEFECTS.names, "extra_column_file"}
    # rate 0.1 of 4000 base records a day: 400 defects a day, dealt evenly over 14 kinds
    # plus 0.1 of the late file's 4000 // 50 records
    assert sum(events.values()) == 3 * 400 + 8
    assert min(events.values()) >= 3 * 400 // 14 - 3


def test_a_late_file_lands_in_its_arrival_days_folder_with_the_earlier_days_events(
    tmp_path: Path,
) -> None:
    """The contract's dt is the arrival day: a client's late upload lands beside the files of
    the day it arrives, named after the day its events happened (it landed in that old day's
    folder, re-opening a loaded partition, and broke the contract)."""
    _, _, summary = run(tmp_path, days=4, defect_rate=0.0)
    root = tmp_path / "landing"
    days = [END - timedelta(days=n) for n in (3, 2, 1, 0)]
    late = sorted(path.relative_to(root).as_posix() for path in root.rglob("late-*"))
    # None in the first two days (nothing arrives late before the window's first day).
    assert late == [
        f"events/dt={days[2]}/late-{days[0]:%Y%m%d}.jsonl",
        f"events/dt={days[3]}/late-{days[1]:%Y%m%d}.jsonl",
    ]
    for key, arrival, held in ((late[0], days[2], days[0]), (late[1], days[3], days[1])):
        stamps = [json.loads(line)["occurred_at"] for line in text_lines(root / key)]
        assert len(stamps) == 1500 // 50
        assert {parse_ts(stamp).date() for stamp in stamps} == {held}
        [report] = [f for f in summary.files if f.key == key]
        assert report.dt == arrival  # and counted in the arrival day's partition


def test_a_late_file_reaches_the_topic_on_its_arrival_day() -> None:
    """`--to-kafka` stamps a message with its file's arrival: the stream files a late event
    under the same dt as the file world, the day it arrived, not the day it names."""
    from data_platform.simulator.kafka_events import arrival_ms

    def at(moment: str) -> int:
        return int(datetime.fromisoformat(moment).timestamp() * 1000)

    assert arrival_ms("events/dt=2026-01-07/late-20260105.jsonl") == at("2026-01-07T00:00Z")
    assert arrival_ms("events/dt=2026-01-07/20260107-0800.jsonl.gz") == at("2026-01-07T08:00Z")


def test_payment_headers_vary_and_name_the_contract_columns(tmp_path: Path) -> None:
    run(tmp_path, days=4, defect_rate=0.05)
    headers = [
        tuple(text_lines(path)[0].split(","))
        for paths in partition_files(tmp_path / "landing", "payments").values()
        for path in paths
    ]
    assert len(headers) == 8
    assert all(set(h) in (PAYMENT_COLUMNS, PAYMENT_COLUMNS | {"fee"}) for h in headers)
    assert len(set(headers)) >= 6
    assert sum("fee" in h for h in headers) == 2  # the afternoon file of every other day


def test_append_day_adds_files_and_changes_rows(tmp_path: Path) -> None:
    landing, db_url, _ = run(tmp_path, days=2)
    before = {table: {r[0]: r for r in db_rows(db_url, table)} for table in DB_COLUMNS}
    newest = max(r[-2 if t == "users" else -1] for t in before for r in before[t].values())
    config = SimulationConfig(seed=7, users=200, events_per_day=1500)
    summary = append_day(config, landing, db_url)

    day = END + timedelta(days=1)
    assert summary.days == [day]
    keys = {f.key for f in landing.list_files()}
    # Six files of the day, and the third day's late file: events of 2026-01-04 arriving now.
    assert sum(k.startswith(f"events/dt={day}/") for k in keys) == 6 + 1
    assert sum(k.startswith(f"payments/dt={day}/") for k in keys) == 2
    assert f"events/dt={day}/late-20260104.jsonl" in keys
    # Counted from the files: 1500 events a day, 1500 // 50 late ones, the duplicated lines.
    records, kinds = classify_landing(tmp_path / "landing", db_url)[("events", day)]
    assert summary.records("events", day) == records == 1500 + 30 + kinds["duplicate"]

    after = {table: {r[0]: r for r in db_rows(db_url, table)} for table in DB_COLUMNS}
    moved = [
        r for i, r in after["orders"].items() if i in before["orders"] and r != before["orders"][i]
    ]
    assert moved and all(r[2] != before["orders"][r[0]][2] for r in moved)
    assert all(r[4] > newest and r[4].startswith(str(day)) for r in moved)
    changed = [
        u
        for i, u in after["users"].items()
        if i in before["users"] and u[1] != before["users"][i][1]
    ]
    assert changed and all(u[5] > newest for u in changed)
    assert len(after["orders"]) - len(before["orders"]) == summary.db_inserted["orders"] > 0
    assert summary.db_updated["orders"] == len(moved)


def test_append_day_equals_one_more_simulated_day(tmp_path: Path) -> None:
    landing, db_url, _ = run(tmp_path / "appended", days=2, defect_rate=0.02)
    append_day(SimulationConfig(seed=7, events_per_day=1500, defect_rate=0.02), landing, db_url)
    _, full_url, _ = run(
        tmp_path / "full", days=3, end_date=END + timedelta(days=1), defect_rate=0.02
    )
    assert landed_bytes(tmp_path / "appended" / "landing") == landed_bytes(
        tmp_path / "full" / "landing"
    )
    for table in DB_COLUMNS:
        assert db_rows(db_url, table) == db_rows(full_url, table)


def test_append_day_with_another_seed_keeps_orders_and_payments_agreeing(tmp_path: Path) -> None:
    """`--append-day` takes --seed from the command line (default 42): the world's orders
    placed under seed 7 must still be completed only when paid, and refunded when cancelled."""
    landing, db_url, _ = run(tmp_path, defect_rate=0.0, events_per_day=3000)
    for _ in range(3):
        append_day(SimulationConfig(seed=42, events_per_day=3000, defect_rate=0.0), landing, db_url)
    statuses: dict[int, set[str]] = {}
    for path in sorted((tmp_path / "landing" / "payments").rglob("*.csv")):
        for row in csv.DictReader(path.read_text().splitlines()):
            statuses.setdefault(int(row["order_id"]), set()).add(row["status"])
    wrong = []
    for order_id, _, status, _, _ in db_rows(db_url, "orders"):
        paid = "succeeded" in statuses.get(order_id, set())
        refunded = "refunded" in statuses.get(order_id, set())
        if (status in ("completed", "refunded") and not paid) or (
            status == "cancelled" and paid and not refunded
        ):
            wrong.append((order_id, status, statuses.get(order_id)))
    assert not wrong


class EventsElsewhere:
    """A landing zone whose event files go elsewhere, as `simulate --to-kafka` has it."""

    def __init__(self, landing: LandingZone) -> None:
        self.landing = landing

    def list_files(self, prefix: str = "") -> list:
        return self.landing.list_files(prefix)

    def upload_file(self, local_path: Path, key: str) -> None:
        if not key.startswith("events/"):
            self.landing.upload_file(local_path, key)

    def delete_file(self, key: str) -> None:
        self.landing.delete_file(key)


def test_append_day_to_kafka_writes_the_late_events_too(tmp_path: Path) -> None:
    config = {"seed": 7, "users": 200, "events_per_day": 1500}
    target = EventsElsewhere(LandingZone(url=str(tmp_path / "landing")))
    db_url = f"sqlite:///{tmp_path / 'source.db'}"
    simulate(SimulationConfig(days=3, end_date=END, **config), target, db_url)
    summary = append_day(SimulationConfig(**config), target, db_url)
    late = [f.key for f in summary.files if "/late-" in f.key]
    assert late == ["events/dt=2026-01-06/late-20260104.jsonl"]


def test_append_day_needs_a_simulated_world(tmp_path: Path) -> None:
    landing = LandingZone(url=str(tmp_path / "landing"))
    with pytest.raises(SimulationError, match="simulate"):
        append_day(SimulationConfig(), landing, f"sqlite:///{tmp_path / 'empty.db'}")


def test_command_runs_and_reports(tmp_path: Path, monkeypatch, capsys) -> None:
    for name in ("DATA_PLATFORM_LANDING", "DATA_PLATFORM_SOURCE_DB_URL", "DATA_PLATFORM_WAREHOUSE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path / "home"))
    parser = argparse.ArgumentParser()
    command.configure_parser(parser)
    base = ["--days", "2", "--end-date", "2026-01-05", "--users", "50", "--events-per-day", "500"]
    assert command.run(parser.parse_args(base)) == 0
    out = capsys.readouterr()
    assert "events: 12 files" in out.out and "2026-01-04" in out.err
    assert command.run(parser.parse_args([*base, "--append-day"])) == 0
    assert (tmp_path / "home" / "landing" / "events" / "dt=2026-01-06").is_dir()

    def landing_state() -> list[tuple[Path, bytes]]:
        files = sorted((tmp_path / "home" / "landing").rglob("*.jsonl"))
        return [(f, f.read_bytes()) for f in files]

    files_before = landing_state()
    capsys.readouterr()
    assert command.run(parser.parse_args([*base, "--if-empty", "--seed", "99"])) == 0
    assert "nothing simulated" in capsys.readouterr().out
    assert landing_state() == files_before
    assert command.run(parser.parse_args([*base, "--defect-rate", "2"])) == 2
    assert "defect_rate" in capsys.readouterr().err
    monkeypatch.setenv("DATA_PLATFORM_LANDING", "ftp://nowhere")
    assert command.run(parser.parse_args(base)) == 2
    assert "DATA_PLATFORM_LANDING" in capsys.readouterr().err


def test_if_empty_finishes_an_interrupted_simulate(tmp_path: Path, monkeypatch, capsys) -> None:
    for name in ("DATA_PLATFORM_LANDING", "DATA_PLATFORM_SOURCE_DB_URL", "DATA_PLATFORM_WAREHOUSE"):
        monkeypatch.delenv(name, raising=False)
    parser = argparse.ArgumentParser()
    command.configure_parser(parser)
    args = ["--days", "2", "--end-date", "2026-01-05", "--users", "50", "--events-per-day", "500"]
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path / "fresh"))
    assert command.run(parser.parse_args([*args, "--quiet"])) == 0

    home = tmp_path / "home"
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(home))
    with monkeypatch.context() as patched:  # Ctrl-C once the files are out, before the database
        patched.setattr("data_platform.simulator.database.replace_world", _interrupted)
        with pytest.raises(KeyboardInterrupt):
            command.run(parser.parse_args([*args, "--quiet"]))
    assert (home / "landing" / "events").is_dir()
    capsys.readouterr()
    assert command.run(parser.parse_args([*args, "--quiet", "--if-empty"])) == 0
    assert "nothing simulated" not in capsys.readouterr().out
    assert landed_bytes(home / "landing") == landed_bytes(tmp_path / "fresh" / "landing")
    fresh_url = f"sqlite:///{tmp_path / 'fresh' / 'source.db'}"
    for table in DB_COLUMNS:
        assert db_rows(f"sqlite:///{home / 'source.db'}", table) == db_rows(fresh_url, table)


def _interrupted(*_: object) -> None:
    raise KeyboardInterrupt


def test_simulates_into_s3(tmp_path: Path, s3_landing: LandingZone) -> None:
    config = SimulationConfig(seed=1, days=1, end_date=END, users=30, events_per_day=300)
    local = LandingZone(url=str(tmp_path / "local"))
    simulate(config, local, f"sqlite:///{tmp_path / 'local.db'}")
    summary = simulate(config, s3_landing, f"sqlite:///{tmp_path / 'source.db'}")
    keys = [f.key for f in s3_landing.list_files()]
    for key in keys:  # the same bytes as in a local landing folder
        with s3_landing.local_path(key) as path:
            assert path.read_bytes() == (tmp_path / "local" / key).read_bytes()
    assert keys == [f.key for f in local.list_files()] and len(keys) == 8
    events = [tmp_path / "local" / key for key in keys if key.startswith("events/")]
    assert events
    assert summary.records("events") == sum(count_records(path) for path in events)


def test_two_append_days_at_once_append_two_days(tmp_path: Path) -> None:
    """Two `simulate --append-day` at once (a cron overlapping itself) both read the same last
    day: the second's database changes failed on the first's ids, exit 1 with a 53-line
    traceback quoting simulated e-mails. In turn, each appends its own day."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DATA_PLATFORM_")},
        "DATA_PLATFORM_HOME": str(tmp_path / "home"),
    }
    cli = [str(Path(sys.executable).with_name("data-platform")), "simulate", "--quiet"]
    small = ["--days", "1", "--end-date", "2026-01-05", "--users", "20", "--events-per-day", "300"]
    subprocess.run([*cli, *small], env=env, check=True, capture_output=True, timeout=120)
    appends = [
        subprocess.Popen(
            [*cli, *small, "--append-day"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(*p.communicate(timeout=180), p.returncode) for p in appends]
    assert [code for _, _, code in results] == [0, 0], [err for _, err, _ in results]
    assert all("Traceback" not in err for _, err, _ in results)
    days = sorted(p.name for p in (tmp_path / "home" / "landing" / "events").iterdir())
    assert days == ["dt=2026-01-05", "dt=2026-01-06", "dt=2026-01-07"]


def test_a_killed_simulates_scratch_is_removed_by_the_next(tmp_path: Path) -> None:
    """A simulate killed (-9) mid-run left its `$TMPDIR` scratch, up to a day's files, which
    nothing removed. The next simulate removes it; a live process's is kept."""
    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DATA_PLATFORM_")},
        "DATA_PLATFORM_HOME": str(tmp_path / "home"),
        "TMPDIR": str(scratch_root),
    }
    cli = [str(Path(sys.executable).with_name("data-platform")), "simulate", "--quiet"]
    days = ["--days", "30", "--end-date", "2026-01-30", "--users", "200"]
    killed = subprocess.Popen([*cli, *days, "--events-per-day", "3000"], env=env)
    try:
        assert wait_until(lambda: any(scratch_root.glob("data-platform-*-simulator-*")), timeout=60)
    finally:
        killed.kill()
    assert killed.wait(timeout=30) == -signal.SIGKILL
    abandoned = list(scratch_root.glob("data-platform-*-simulator-*"))
    assert abandoned
    live = scratch_root / f"data-platform-{os.getpid()}-held"  # this test's process lives
    live.mkdir()
    small = ["--days", "1", "--end-date", "2026-01-05", "--users", "20", "--events-per-day", "300"]
    subprocess.run([*cli, *small], env=env, check=True, capture_output=True, timeout=120)
    assert sorted(scratch_root.iterdir()) == [live]
