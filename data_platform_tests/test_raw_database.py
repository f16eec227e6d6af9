"""App database -> raw version logs: incremental, idempotent, and nothing extracted is lost."""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import signal
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pydantic
import pytest
import sqlalchemy as sa

from data_platform.assets.raw import DEAD_LETTER_SPEC, RAW_FILE_ASSETS, RAW_SOURCE_TABLE_ASSETS
from data_platform.ingestion import database
from data_platform.ingestion.database import ExtractionStats, extract_incremental
from data_platform.ingestion.source_schema import refusal_reason
from data_platform.ingestion.tables import PRODUCTS, USERS, Column
from data_platform.simulator import SimulationConfig, simulate
from data_platform_tests.helpers import query


@pytest.fixture
def source(settings, resources) -> sa.Engine:
    simulate(
        SimulationConfig(seed=3, days=2, end_date=date(2026, 1, 3), users=40, events_per_day=50),
        resources["landing"],
        settings.source_db_url,
    )
    return sa.create_engine(settings.source_db_url)


def extract(
    resources: dict, lookback_minutes: int = 60, whole_table: bool = False
) -> dg.ExecuteInProcessResult:
    mode: dict[str, object] = {"lookback_minutes": lookback_minutes}
    if whole_table:  # an ordinary run names no mode, like the sensor's runs (no config at all)
        mode["whole_table"] = True
    config = {"ops": {asset.op.name: {"config": mode} for asset in RAW_SOURCE_TABLE_ASSETS}}
    return dg.materialize(RAW_SOURCE_TABLE_ASSETS, resources=resources, run_config=config)


def source_rows(engine: sa.Engine, table: str) -> set[tuple]:
    """(id, updated_at) as typed values, read through reflection like a client would."""
    reflected = sa.Table(table, sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        return {tuple(r) for r in conn.execute(sa.select(reflected.c.id, reflected.c.updated_at))}


def raw_versions(settings, table: str) -> list[tuple]:
    return query(settings.warehouse, f"SELECT id, updated_at FROM raw.{table} ORDER BY ALL")


def test_first_extraction_copies_every_row(settings, resources, source):
    assert extract(resources).success
    for table in ("users", "products", "orders", "order_items"):
        assert set(raw_versions(settings, table)) == source_rows(source, table), table


def test_many_batches_copy_every_row(settings, resources, source, monkeypatch):
    monkeypatch.setattr(database, "SOURCE_BATCH_ROWS", 7)
    assert extract(resources).success
    for table in ("users", "products", "orders", "order_items"):
        assert set(raw_versions(settings, table)) == source_rows(source, table), table


def test_rerun_adds_nothing_and_reads_only_the_lookback(settings, resources, source):
    extract(resources)
    before = {t: raw_versions(settings, t) for t in ("users", "orders")}
    result = extract(resources, lookback_minutes=60)
    assert {t: raw_versions(settings, t) for t in ("users", "orders")} == before
    metadata = {
        e.asset_key.path[-1]: e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    added = {table: m["versions_added"].value for table, m in metadata.items()}
    assert added == {"users": 0, "products": 0, "orders": 0, "order_items": 0}
    # Every row re-read is the version stored: no change under a kept updated_at is reported.
    assert {table: m["unversioned_changes"].value for table, m in metadata.items()} == added
    # Incremental: only the source rows at or after the high-water mark less the lookback are
    # read again, counted here from the source itself (a full re-read would also add nothing).
    fetched = {table: m["rows_fetched"].value for table, m in metadata.items()}
    expected = {}
    for table in metadata:
        since = max(at for _, at in source_rows(source, table)) - timedelta(minutes=60)
        expected[table] = sum(at >= since for _, at in source_rows(source, table))
    assert fetched == expected
    assert sum(expected.values()) < sum(len(source_rows(source, t)) for t in metadata)


def test_updates_and_soft_deletes_become_new_versions(settings, resources, source):
    extract(resources)
    with source.begin() as conn:
        latest = max(
            updated_at
            for table in ("users", "orders")
            for _, updated_at in source_rows(source, table)
        )
        first, second = latest + timedelta(minutes=5), latest + timedelta(minutes=10)
        # Two e-mail changes of user 1 between extractions: only the last is visible then.
        conn.execute(
            sa.text("UPDATE users SET email = 'a@x.test', updated_at = :t WHERE id = 1"),
            {"t": first},
        )
        conn.execute(
            sa.text("UPDATE users SET deleted_at = :t, updated_at = :t WHERE id = 2"), {"t": second}
        )
        conn.execute(
            sa.text(
                "UPDATE orders SET status = 'refunded', updated_at = :t WHERE id = (SELECT min(id) FROM orders)"
            ),
            {"t": second},
        )
    extract(resources)
    with source.begin() as conn:
        conn.execute(
            sa.text("UPDATE users SET email = 'b@x.test', updated_at = :t WHERE id = 1"),
            {"t": second},
        )
    extract(resources)

    user_1 = query(
        settings.warehouse, "SELECT email FROM raw.users WHERE id = 1 ORDER BY updated_at"
    )
    assert [e for (e,) in user_1][-2:] == ["a@x.test", "b@x.test"]
    deleted = query(
        settings.warehouse, "SELECT deleted_at FROM raw.users WHERE id = 2 ORDER BY updated_at"
    )
    assert deleted[0] == (None,) and deleted[-1] == (second,)
    statuses = query(
        settings.warehouse,
        "SELECT status FROM raw.orders WHERE id = (SELECT min(id) FROM raw.orders) ORDER BY updated_at",
    )
    assert statuses[-1] == ("refunded",)
    # no (id, updated_at) twice
    dupes = query(
        settings.warehouse,
        "SELECT count(*) FROM (SELECT id, updated_at FROM raw.users GROUP BY ALL HAVING count(*) > 1)",
    )
    assert dupes == [(0,)]


def test_lookback_catches_a_late_commit_with_an_older_timestamp(settings, resources, source):
    extract(resources)
    [(hwm,)] = query(settings.warehouse, "SELECT max(updated_at) FROM raw.products")
    with source.begin() as conn:
        conn.execute(
            sa.text("UPDATE products SET unit_price = 1.23, updated_at = :t WHERE id = 3"),
            {"t": hwm - timedelta(minutes=20)},
        )
    extract(resources, lookback_minutes=60)
    assert (1.23,) in {
        (float(p),)
        for (p,) in query(settings.warehouse, "SELECT unit_price FROM raw.products WHERE id = 3")
    }


def test_missing_source_column_is_one_actionable_error(settings, resources, source):
    with source.begin() as conn:
        conn.execute(sa.text("ALTER TABLE products RENAME COLUMN sku TO stock_code"))
    result = dg.materialize(
        [a for a in RAW_SOURCE_TABLE_ASSETS if a.key.path[-1] == "products"],
        resources=resources,
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    message = failure.step_failure_data.error.cause.message
    assert "source table 'products' has no column 'sku' of the contract" in message
    assert message.strip().count("\n") == 0


# Users as a SQLite app declares them: timestamps DATETIME, stored as the text it was given.
USERS_DDL = (
    "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, full_name TEXT, country TEXT, "
    "created_at DATETIME, updated_at DATETIME, deleted_at DATETIME)"
)
INSERT_USER = sa.text("INSERT INTO users VALUES (:id, 'u@x.test', 'U', 'DE', :at, :at, NULL)")


def hand_made_users(path: Path, rows: list[dict]) -> sa.Engine:
    """A SQLite app database of one users table holding `rows` ({id, at})."""
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(sa.text(USERS_DDL))
        conn.execute(INSERT_USER, rows)
    return engine


def extract_users(
    warehouse: Path,
    engine: sa.Engine,
    at: datetime = datetime(2026, 1, 6),
    lookback: timedelta | None = timedelta(hours=1),
) -> ExtractionStats:
    with duckdb.connect(str(warehouse)) as conn:
        return extract_incremental(conn, engine, USERS, lookback, at)


def test_an_extraction_from_sqlite_lets_the_app_write_between_its_batches(tmp_path, monkeypatch):
    """One streamed SELECT held SQLite's read lock while the warehouse took in every batch: an
    app's commit waited for the whole table and failed after its busy timeout ("database is
    locked"). Between batches the app now writes; every row is still read once, a row changed
    after its batch as it was, one changed before its batch as it is then."""
    monkeypatch.setattr(database, "SOURCE_BATCH_ROWS", 3)
    rows = [{"id": i, "at": f"2026-01-05 08:{i:02d}:00"} for i in range(1, 11)]
    engine = hand_made_users(tmp_path / "app.db", rows)
    query, columns = database.source_query(engine, USERS, None)
    batches = database.source_batches(engine, USERS, query, columns)
    first = next(batches)
    app = sqlite3.connect(tmp_path / "app.db", timeout=0.2)
    with app:  # a commit: raises "database is locked" while the extraction holds its lock
        app.execute("UPDATE users SET updated_at = '2026-01-05 09:00:00' WHERE id IN (2, 9)")
    app.close()
    read = [first, *batches]
    versions = sorted((row["id"], row["updated_at"]) for batch in read for row in batch.to_pylist())
    assert [len(batch) for batch in read] == [3, 3, 3, 1]
    at = {row["id"]: row["at"] for row in rows} | {9: "2026-01-05 09:00:00"}
    assert versions == sorted(at.items())


def test_a_contract_grown_by_a_rescued_column_reports_no_row_changed(tmp_path):
    """Grown by a column the source had (the schema_drift check's advice), the contract put it
    beside versions that hold it NULL, its value in `_rescued`: every row re-read was reported
    changed without a new updated_at, and the warning said to touch them all."""
    warehouse = tmp_path / "warehouse.duckdb"
    engine = hand_made_users(
        tmp_path / "app.db", [{"id": i, "at": f"2026-01-05 08:{i:02d}:00"} for i in range(1, 4)]
    )
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE users ADD COLUMN loyalty_tier TEXT DEFAULT 'gold'"))
    extract_users(warehouse, engine, at=datetime(2026, 1, 5, 9))
    *contract, extracted_at, rescued = USERS.columns
    grown = dataclasses.replace(
        USERS, columns=(*contract, Column("loyalty_tier", "VARCHAR", "tier"), extracted_at, rescued)
    )
    # The price: that column changed under a key stored before is not seen (the version holds
    # it as JSON text, which compares with the column's type only by its spelling).
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE users SET loyalty_tier = 'silver' WHERE id = 2"))
    with duckdb.connect(str(warehouse)) as conn:
        full = extract_incremental(conn, engine, grown, None, datetime(2026, 1, 5, 10))
    assert (full.rows_fetched, full.versions_added) == (3, 0)
    assert full.unversioned == database.UnversionedChanges()
    with engine.begin() as conn:  # a contract column of the versions before: compared
        conn.execute(sa.text("UPDATE users SET country = 'FR' WHERE id = 3"))
    with duckdb.connect(str(warehouse)) as conn:
        full = extract_incremental(conn, engine, grown, None, datetime(2026, 1, 5, 10, 5))
    assert full.unversioned == database.UnversionedChanges(rows=1, ids=(3,))


def test_sqlite_timestamps_with_a_utc_offset_are_stored_in_utc(tmp_path):
    """SQLite keeps a timestamp as the text it was given: one with an offset was stored as its
    wall time, and one with a negative offset, compared as text, sorted before the mark. So did
    one whose offset SQLite cannot read (-0500 as Python's %z writes it, -05): never
    extracted but by a whole-table run."""
    warehouse = tmp_path / "warehouse.duckdb"
    engine = hand_made_users(
        tmp_path / "app.db",
        [
            {"id": 1, "at": "2026-01-05 10:00:00+02:00"},
            {"id": 2, "at": "2026-01-05T08:30:00Z"},
            {"id": 3, "at": "2026-01-05 08:45:00"},
        ],
    )
    extract_users(warehouse, engine)
    with engine.begin() as conn:  # 10:00 and 10:30 UTC, after the mark (08:45)
        conn.execute(INSERT_USER, {"id": 4, "at": "2026-01-05 05:00:00-05:00"})
        conn.execute(INSERT_USER, {"id": 5, "at": "2026-01-05 05:15:00-0500"})
        conn.execute(INSERT_USER, {"id": 6, "at": "2026-01-05 05:20:00-05"})
        conn.execute(
            sa.text("UPDATE users SET updated_at = '2026-01-05 12:30:00+02:00' WHERE id = 1")
        )
    extract_users(warehouse, engine)
    stored = query(warehouse, "SELECT id, created_at, updated_at FROM raw.users ORDER BY ALL")
    at = {h_m: datetime(2026, 1, 5, *h_m) for h_m in ((8, 0), (8, 30), (8, 45), (10, 0), (10, 30))}
    at |= {(10, m): datetime(2026, 1, 5, 10, m) for m in (15, 20)}
    assert stored == [
        (1, at[8, 0], at[8, 0]),
        (1, at[8, 0], at[10, 30]),
        (2, at[8, 30], at[8, 30]),
        (3, at[8, 45], at[8, 45]),
        (4, at[10, 0], at[10, 0]),
        (5, at[10, 15], at[10, 15]),
        (6, at[10, 20], at[10, 20]),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-05 05:25:00 America/New_York",
        "2026-01-05 24:00:00",
        "2026-1-5 10:00:00",
        "0000-01-01 00:00:00",  # year 0, which Python's datetime cannot hold
        "9999-12-31 23:00:00-05:00",  # year 10000 in UTC
    ],
)
def test_a_sqlite_timestamp_outside_the_landing_files_grammar_is_a_dead_letter(tmp_path, text):
    """Text timestamps are read by the landing files' rule: DuckDB's cast read a zone name in
    any case (europe/paris), Spark's only as spelled, and 24:00:00 and 2026-1-5 on DuckDB only.
    Such a row is refused as any value its contract type cannot hold is, its reason naming
    the form expected; the others are extracted."""
    engine = hand_made_users(
        tmp_path / "app.db", [{"id": 1, "at": text}, {"id": 2, "at": "2026-01-05 08:00:00"}]
    )
    stats = extract_users(tmp_path / "warehouse.duckdb", engine)
    assert (stats.versions_added, stats.dead_letters.ids) == (1, ("1",))
    reason = stats.dead_letters.reason
    assert (
        "(row id 1), not a TIMESTAMP (an ISO-8601 timestamp such as 2026-01-05T10:00:00Z" in reason
    )
    assert "not a zone name" in reason


def test_a_row_stamped_in_the_future_hides_no_later_change(tmp_path):
    """The mark was the log's max(updated_at): one row from a clock years ahead put it, less
    the look-back, past every real change to come, which were never extracted."""
    warehouse = tmp_path / "warehouse.duckdb"
    engine = hand_made_users(
        tmp_path / "app.db",
        [{"id": 1, "at": "2026-01-05 08:00:00"}, {"id": 2, "at": "2030-01-01 00:00:00"}],
    )
    extract_users(warehouse, engine, at=datetime(2026, 1, 5, 9))
    with engine.begin() as conn:  # real changes, after the first run
        conn.execute(INSERT_USER, {"id": 3, "at": "2026-01-05 09:30:00"})
        conn.execute(sa.text("UPDATE users SET updated_at = '2026-01-05 09:40:00' WHERE id = 1"))
    # Hours later: the changes are older than the run's own start less the look-back.
    second = extract_users(warehouse, engine, at=datetime(2026, 1, 5, 12))
    third = extract_users(warehouse, engine, at=datetime(2026, 1, 5, 13))
    assert query(warehouse, "SELECT id, updated_at FROM raw.users ORDER BY ALL") == [
        (1, datetime(2026, 1, 5, 8)),
        (1, datetime(2026, 1, 5, 9, 40)),
        (2, datetime(2030, 1, 1)),
        (3, datetime(2026, 1, 5, 9, 30)),
    ]
    # The future row counts as seen when the first run started (09:00); read again, added once.
    assert (second.high_water_mark_before, third.high_water_mark_before) == (
        datetime(2026, 1, 5, 9),
        datetime(2026, 1, 5, 9, 40),
    )
    assert (second.versions_added, third.versions_added) == (2, 0)
    assert third.rows_fetched == 3  # 09:30, 09:40 and the future row: since 08:40


def _extract_killed_after(warehouse: str, source_url: str, batches: int, batch_rows: int) -> None:
    """In a spawned process: extract users in batches of `batch_rows`, and be killed (SIGKILL:
    no handler, no rollback, no close) once `batches` of them were appended."""
    database.SOURCE_BATCH_ROWS = batch_rows
    fetch = database.source_batches

    def batches_then_killed(*args: object) -> Iterator[object]:
        for number, batch in enumerate(fetch(*args)):
            if number == batches:
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch

    database.source_batches = batches_then_killed
    with duckdb.connect(warehouse) as conn:
        extract_incremental(
            conn, sa.create_engine(source_url), USERS, timedelta(hours=1), datetime(2026, 2, 1)
        )


def test_an_extraction_killed_after_some_batches_writes_none_of_them(settings, source):
    """One transaction for the whole run: a process killed after two batches of five versions
    were appended leaves the version log as it was (a commit per batch would keep ten)."""
    warehouse = str(settings.warehouse)
    with duckdb.connect(warehouse) as conn:
        extract_incremental(conn, source, USERS, timedelta(hours=1), datetime(2026, 2, 1))
    before = raw_versions(settings, "users")
    latest = max(at for _, at in before)
    with source.begin() as conn:
        changed = conn.execute(sa.text("UPDATE users SET updated_at = :t"), {"t": latest}).rowcount
    assert changed > 3 * 5

    child = multiprocessing.get_context("spawn").Process(
        target=_extract_killed_after, args=(warehouse, settings.source_db_url, 2, 5)
    )
    child.start()
    child.join(timeout=120)
    assert child.exitcode == -signal.SIGKILL
    assert raw_versions(settings, "users") == before
    # The warehouse is sound: the next run adds every changed row.
    with duckdb.connect(warehouse) as conn:
        stats = extract_incremental(conn, source, USERS, timedelta(hours=1), datetime(2026, 2, 1))
    assert stats.versions_added == changed - sum(at == latest for _, at in before)


def test_a_change_that_keeps_updated_at_is_reported_by_id_and_kept_out_of_the_log(tmp_path):
    """A row changed again under the updated_at of its extracted version (an app that does not
    bump it, two changes within its resolution) was skipped as a version already seen: its new
    content never reached the warehouse, and nothing said so. The log keeps the version first
    extracted, one per (id, updated_at), and each run re-reading such a row counts and names it,
    until the app gives it a new updated_at."""
    warehouse = tmp_path / "warehouse.duckdb"
    engine = hand_made_users(
        tmp_path / "app.db",
        [{"id": i, "at": f"2026-01-05 08:{i:02d}:00"} for i in range(1, 6)],
    )
    with engine.begin() as conn:  # a column outside the contract, there from the start
        conn.execute(sa.text("ALTER TABLE users ADD COLUMN loyalty_tier TEXT"))
    first = extract_users(warehouse, engine, at=datetime(2026, 1, 5, 9))
    assert first.unversioned == database.UnversionedChanges()
    stored = query(warehouse, "SELECT * FROM raw.users ORDER BY id")
    with engine.begin() as conn:
        # Changed, updated_at kept: a contract column (personal data), a rescued column.
        conn.execute(sa.text("UPDATE users SET email = 'new@x.test' WHERE id = 2"))
        conn.execute(sa.text("UPDATE users SET loyalty_tier = 'gold' WHERE id = 4"))
        # Changed and bumped: a new version, as ever.
        conn.execute(
            sa.text("UPDATE users SET country = 'FR', updated_at = '2026-01-05 09:30' WHERE id = 5")
        )
    second = extract_users(warehouse, engine, at=datetime(2026, 1, 5, 10))
    assert second.unversioned == database.UnversionedChanges(rows=2, ids=(2, 4))
    assert second.versions_added == 1
    # The versions extracted first are kept as they were, one per (id, updated_at).
    first_versions = "SELECT * FROM raw.users WHERE updated_at < '2026-01-05 09:00' ORDER BY id"
    assert query(warehouse, first_versions) == stored
    assert query(
        warehouse, "SELECT count(*) FROM (SELECT DISTINCT id, updated_at FROM raw.users)"
    ) == [(6,)]
    message = database.unversioned_changes_warning(USERS, second.unversioned)
    assert message.startswith(
        "2 row(s) of source table 'users' changed without a new updated_at since their version "
        "was extracted (ids 2, 4)"
    )
    assert "new@x.test" not in message and "gold" not in message
    # Only rows the look-back re-reads are compared: past it, a whole-table run (no look-back)
    # finds them again (and adds nothing it has), and so does one whose look-back reaches
    # before year 1, which overflowed.
    assert extract_users(warehouse, engine, at=datetime(2026, 1, 5, 10, 5)).rows_fetched == 1
    full = extract_users(warehouse, engine, datetime(2026, 1, 5, 10, 5), None)
    assert extract_users(warehouse, engine, datetime(2026, 1, 5, 10, 5), timedelta.max) == full
    assert (full.rows_fetched, full.versions_added, full.unversioned) == (5, 0, second.unversioned)

    # As the message says: the app touches them, and their content becomes a version.
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE users SET updated_at = '2026-01-05 10:10' WHERE id IN (2, 4)"))
    third = extract_users(warehouse, engine, at=datetime(2026, 1, 5, 10, 15))
    assert (third.versions_added, third.unversioned.rows) == (2, 0)
    latest = query(
        warehouse,
        "SELECT id, email, _rescued->>'loyalty_tier' FROM raw.users "
        "WHERE updated_at = '2026-01-05 10:10' ORDER BY id",
    )
    assert latest == [(2, "new@x.test", None), (4, "u@x.test", "gold")]

    # A migration adds a column: every row's rescued columns change, no row does.
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE users ADD COLUMN nickname TEXT"))
    fourth = extract_users(warehouse, engine, at=datetime(2026, 1, 5, 10, 20))
    assert (fourth.rows_fetched, fourth.versions_added, fourth.unversioned.rows) == (3, 0, 0)


def test_the_extraction_asset_warns_of_changes_that_kept_updated_at(settings, resources, source):
    """On the simulated app: the WARN check `unversioned_changes`, the materialization's
    metadata and a run-log warning name the table and the ids, never the values."""
    instance = dg.DagsterInstance.ephemeral()
    users = [a for a in RAW_SOURCE_TABLE_ASSETS if a.key.path[-1] == "users"]
    first = dg.materialize(users, resources=resources, instance=instance)
    passed = {c.check_name: c.passed for c in first.get_asset_check_evaluations()}
    assert passed == {"unversioned_changes": True, "dead_letters": True}
    with source.begin() as conn:  # the latest user: re-read by the next run's look-back
        [(user_id,)] = conn.execute(
            sa.text("SELECT id FROM users ORDER BY updated_at DESC, id DESC LIMIT 1")
        ).all()
        conn.execute(
            sa.text("UPDATE users SET full_name = 'Secret Name' WHERE id = :id"), {"id": user_id}
        )
    second = dg.materialize(users, resources=resources, instance=instance)
    check = checks_by_name(second)["unversioned_changes"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["unversioned_changes"].value == 1
    assert check.metadata["unversioned_change_ids"].value == [user_id]
    [materialization] = second.get_asset_materialization_events()
    metadata = materialization.materialization.metadata
    assert metadata["unversioned_changes"].value == 1
    assert metadata["versions_added"].value == 0
    warnings = [
        entry.user_message
        for entry in instance.all_logs(second.run_id)
        if entry.level == logging.WARNING and "changed without a new updated_at" in entry.message
    ]
    assert len(warnings) == 1 and f"(ids {user_id})" in warnings[0], warnings
    assert "source table 'users'" in warnings[0] and "Secret Name" not in warnings[0]
    assert check.description == warnings[0]


APP_TABLES = ("users", "products", "orders", "order_items")


def by_table(result: dg.ExecuteInProcessResult) -> tuple[dict, dict]:
    """Each table's materialization metadata and `unversioned_changes` evaluation."""
    metadata = {
        e.asset_key.path[-1]: e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    checks = {
        c.asset_key.path[-1]: c
        for c in result.get_asset_check_evaluations()
        if c.check_name == "unversioned_changes"
    }
    return metadata, checks


def change_oldest_row_quietly(source: sa.Engine, table: str, column: str, value: str) -> int:
    """Change the row with the oldest updated_at, keeping its updated_at; its id. It must be
    older than the look-back by far: days below the newest row."""
    rows = source_rows(source, table)
    row_id, at = min(rows, key=lambda r: (r[1], r[0]))
    assert max(updated for _, updated in rows) - at > timedelta(days=1)
    with source.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE {table} SET {column} = :v WHERE id = :id"), {"v": value, "id": row_id}
        )
    return row_id


def checks_by_name(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def test_a_refused_users_row_is_reported_without_its_personal_values(settings, resources, source):
    """A users row the contract refuses is dead-lettered; the run's log, the `dead_letters`
    check and the reason name the table, the column and the id, never a value: any column of
    a table holding personal data may hold some. raw.dead_letter keeps the row, as raw.users
    keeps the others."""
    instance = dg.DagsterInstance.ephemeral()
    users = [a for a in RAW_SOURCE_TABLE_ASSETS if a.key.path[-1] == "users"]
    dg.materialize(users, resources=resources, instance=instance)
    secret = "jane.doe@example.com"
    with source.begin() as conn:
        [(user_id,)] = conn.execute(sa.text("SELECT max(id) FROM users")).all()
        conn.execute(
            sa.text("UPDATE users SET created_at = :v, updated_at = '2030-01-01' WHERE id = :id"),
            {"v": secret, "id": user_id},
        )
    run = dg.materialize(users, resources=resources, instance=instance)
    check = checks_by_name(run)["dead_letters"]
    assert not check.passed and check.metadata["dead_letter_ids"].value == [str(user_id)]
    warnings = [e.user_message for e in instance.all_logs(run.run_id) if e.level == logging.WARNING]
    [(error, record)] = query(
        settings.warehouse, "SELECT error, raw_record FROM raw.dead_letter WHERE source = 'users'"
    )
    assert error.startswith(
        f"source column users.created_at holds a value of {len(secret)} characters "
        f"(row id {user_id}), not a TIMESTAMP"
    )
    assert any(error in w for w in warnings) and error in check.description
    assert all(secret not in text for text in [error, check.description, *warnings])
    assert json.loads(record)["created_at"] == secret


def test_an_extraction_that_dead_letters_reports_the_day_of_raw_dead_letter_it_wrote(
    settings, resources, source
):
    """raw/dead_letter's lineage named only the file sources, and only they reported its days:
    a row refused by an app table's extraction left its partition and row counts as they were
    in the UI. Every writer is upstream now, and an extraction that wrote dead letters reports
    the day it wrote them (their `dt`), with the counts read back here; one that wrote none
    reports nothing."""
    writers = {asset.key for asset in [*RAW_FILE_ASSETS, *RAW_SOURCE_TABLE_ASSETS]}
    assert {dep.asset_key for dep in DEAD_LETTER_SPEC.deps} == writers
    instance = dg.DagsterInstance.ephemeral()
    users = [a for a in RAW_SOURCE_TABLE_ASSETS if a.key.path[-1] == "users"]
    dg.materialize(users, resources=resources, instance=instance)
    with source.begin() as conn:
        [(user_id,)] = conn.execute(sa.text("SELECT max(id) FROM users")).all()
        conn.execute(
            sa.text(
                "UPDATE users SET created_at = 'soon', updated_at = '2030-01-01' WHERE id = :id"
            ),
            {"id": user_id},
        )

    def reported(run: dg.ExecuteInProcessResult) -> list[dg.AssetMaterialization]:
        return [
            e.materialization
            for e in run.get_asset_materialization_events()
            if e.asset_key == DEAD_LETTER_SPEC.key
        ]

    [letter] = reported(dg.materialize(users, resources=resources, instance=instance))
    [(day,)] = query(
        settings.warehouse,
        "SELECT DISTINCT CAST(dt AS VARCHAR) FROM raw.dead_letter WHERE error LIKE ?",
        [f"%(row id {user_id})%"],
    )
    per_day = dict(
        query(
            settings.warehouse,
            "SELECT CAST(dt AS VARCHAR), count(*) FROM raw.dead_letter GROUP BY 1",
        )
    )
    assert letter.partition == day == datetime.now(UTC).date().isoformat()
    assert {k: v.value for k, v in letter.metadata.items()} == {
        "source": "users",
        "rows_dead_lettered": 1,
        "dagster/partition_row_count": per_day[day],
        "dagster/row_count": sum(per_day.values()),
    }
    # Read again (the look-back), the refused row is no new dead letter: nothing to report.
    assert reported(dg.materialize(users, resources=resources, instance=instance)) == []


def test_a_refused_id_of_a_personal_table_is_described_not_shown():
    """A users id holding an e-mail (a positional INSERT shifted by a migration) stopped the
    table with "holds a value of 22 characters (row id bob.secret@example.com)": the value
    described, then shown as the row id. Elsewhere the row id is named, as before."""
    secret = "bob.secret@example.com"
    reason = refusal_reason(USERS, "id", secret, secret, None, "then run again")
    assert secret not in reason
    assert reason.startswith(f"source column users.id holds a value of {len(secret)} characters,")
    shown = refusal_reason(PRODUCTS, "id", "7x", "7x", None, "then run again")
    assert shown.startswith("source column products.id holds '7x' (row id 7x), not a BIGINT")


def test_a_whole_table_run_compares_rows_the_lookback_no_longer_reads(settings, resources, source):
    """A row changed without a new updated_at, days older than the look-back: an ordinary run
    never re-reads it, so its check passes; a whole-table run reads and compares every row,
    names that one (WARN) and adds no version."""
    extract(resources)
    before = {t: raw_versions(settings, t) for t in APP_TABLES}
    user_id = change_oldest_row_quietly(source, "users", "full_name", "Quiet Change")

    metadata, checks = by_table(extract(resources))
    assert all(check.passed for check in checks.values()) and len(checks) == 4
    in_lookback = {}
    for table in APP_TABLES:
        rows = source_rows(source, table)
        since = max(at for _, at in rows) - timedelta(minutes=60)
        in_lookback[table] = sum(at >= since for _, at in rows)
    assert {t: m["rows_fetched"].value for t, m in metadata.items()} == in_lookback

    metadata, checks = by_table(extract(resources, whole_table=True))
    every_row = {t: len(source_rows(source, t)) for t in APP_TABLES}
    assert {t: m["rows_fetched"].value for t, m in metadata.items()} == every_row
    assert {t: c.metadata["rows_compared"].value for t, c in checks.items()} == every_row
    assert sum(every_row.values()) > sum(in_lookback.values())
    assert {t: m["versions_added"].value for t, m in metadata.items()} == dict.fromkeys(
        APP_TABLES, 0
    )
    failed = {t: c for t, c in checks.items() if not c.passed}
    assert list(failed) == ["users"]
    assert failed["users"].severity == dg.AssetCheckSeverity.WARN
    assert failed["users"].metadata["unversioned_changes"].value == 1
    assert failed["users"].metadata["unversioned_change_ids"].value == [user_id]
    # The version first extracted is kept, and nothing was added to any log.
    assert {t: raw_versions(settings, t) for t in APP_TABLES} == before
    quiet = "SELECT count(*) FROM raw.users WHERE full_name = 'Quiet Change'"
    assert query(settings.warehouse, quiet) == [(0,)]


def test_the_weekly_reconciliation_is_scheduled_and_runs_every_row(settings, resources, source):
    """The schedule is in the Definitions, Sundays 04:00 UTC, on by default; its run request's
    config is valid for its job, and that job, run with it, compares every row of the app
    tables with its stored version."""
    from data_platform.definitions import defs

    schedule = defs.resolve_schedule_def("weekly_source_reconciliation")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 4 * * 0", "UTC")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    sunday = datetime(2026, 1, 4, 4, tzinfo=UTC)
    [request] = schedule.evaluate_tick(
        dg.build_schedule_context(scheduled_execution_time=sunday)
    ).run_requests
    job = defs.resolve_job_def(schedule.job_name)
    dg.validate_run_config(job, request.run_config)
    assert {tuple(k.path) for k in job.asset_layer.executable_asset_keys} == {
        ("raw", t) for t in APP_TABLES
    }

    extract(resources)
    order_id = change_oldest_row_quietly(source, "orders", "status", "quietly_changed")
    # The schedule's own job, resolved against this test's warehouse and source.
    local = dg.Definitions(
        assets=RAW_SOURCE_TABLE_ASSETS, jobs=[schedule.job], resources=resources
    ).resolve_job_def(schedule.job_name)
    metadata, checks = by_table(local.execute_in_process(run_config=request.run_config))
    every_row = {t: len(source_rows(source, t)) for t in APP_TABLES}
    assert {t: c.metadata["rows_compared"].value for t, c in checks.items()} == every_row
    assert {t: m["versions_added"].value for t, m in metadata.items()} == dict.fromkeys(
        APP_TABLES, 0
    )
    assert {t: c.passed for t, c in checks.items()} == {t: t != "orders" for t in APP_TABLES}
    assert checks["orders"].metadata["unversioned_change_ids"].value == [order_id]


def test_a_look_back_that_would_skip_or_overflow_is_refused(resources):
    """A negative look-back would start reading above the high-water mark, skipping the rows
    committed late that it is there for; one past timedelta's range failed on an overflow."""
    # Refused by the op's config model before a row is read: pydantic's error, re-raised as is.
    for wrong, bound in ((-1, "greater than or equal to 0"), (10**13, "less than or equal to")):
        with pytest.raises(pydantic.ValidationError, match=rf"lookback_minutes\n.*{bound}"):
            extract(resources, lookback_minutes=wrong)


def test_an_extra_columns_value_is_rescued_in_one_spelling_whatever_the_driver_returns():
    """PostgreSQL's driver returns datetimes, Decimals, UUIDs and bytes, which DuckDB and Spark
    each wrote into `_rescued` their own way (or, a uuid, Spark refused): one text for each."""
    plus_two = timezone(timedelta(hours=2))
    cases = {
        datetime(2026, 1, 5, 12, 0, tzinfo=plus_two): "2026-01-05T10:00:00+00:00",
        datetime(2026, 1, 5, 12, 0, 0, 500): "2026-01-05T12:00:00.000500",
        date(2026, 1, 5): "2026-01-05",
        Decimal("12.50"): "12.50",
        uuid.UUID(int=1): "00000000-0000-0000-0000-000000000001",
        b"\x00\xff": "00ff",
        memoryview(b"\x01"): "01",
    }
    assert {value: database.json_ready(value) for value in cases} == cases
    kept = [None, "text", 7, 1.5, True, [1, 2], {"a": 1}]
    assert [database.json_ready(v) for v in kept] == kept


def test_the_run_stamp_in_sql_is_the_same_instant_naive_or_aware():
    """The rules compare `_extracted_at` with the run's stamp as a SQL literal: an aware
    datetime spelled with `+02:00` and then `Z` was no timestamp (NULL, matching no row)."""
    naive = datetime(2026, 1, 5, 10, 30, 15, 250000)
    aware = naive.replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    with duckdb.connect() as conn:
        for stamp in (naive, aware):
            literal = database.utc_stamp(database.DUCKDB_SQL, stamp)
            assert conn.execute(f"SELECT {literal}").fetchone() == (naive,)
