"""App-database schema changes are never lost silently: rescued, reported, or a one-line stop."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import dagster as dg
import duckdb
import pytest
import sqlalchemy as sa

from data_platform.assets.raw import RAW_SOURCE_TABLE_ASSETS
from data_platform.checks.source_schema_drift import source_schema_drift_check
from data_platform.ingestion import database
from data_platform.ingestion.database import extract_incremental
from data_platform.ingestion.source_schema import NEW_VERSION, SourceSchemaError, reflect
from data_platform.ingestion.tables import SOURCE_DB_TABLES, USERS, ensure_raw_tables
from data_platform.simulator import SimulationConfig, simulate
from data_platform_tests.helpers import query

TABLES = {table.name: table for table in SOURCE_DB_TABLES}


@pytest.fixture
def source(settings, resources) -> sa.Engine:
    simulate(
        SimulationConfig(seed=5, days=2, end_date=date(2026, 1, 2), users=30, events_per_day=40),
        resources["landing"],
        settings.source_db_url,
    )
    return sa.create_engine(settings.source_db_url)


def extract_with_checks(resources: dict) -> dg.ExecuteInProcessResult:
    checks = [source_schema_drift_check(table) for table in SOURCE_DB_TABLES]
    return dg.materialize([*RAW_SOURCE_TABLE_ASSETS, *checks], resources=resources)


def extract_directly(settings, engine: sa.Engine, table: str) -> None:
    with duckdb.connect(str(settings.warehouse)) as conn:
        extract_incremental(
            conn, engine, TABLES[table], timedelta(hours=1), datetime.now(UTC).replace(tzinfo=None)
        )


def drift_checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    """The schema_drift evaluations by table (each extraction also evaluates its own
    unversioned_changes check)."""
    return {
        e.asset_key.path[-1]: e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "schema_drift"
    }


def no_unversioned_changes(result: dg.ExecuteInProcessResult) -> bool:
    found = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "unversioned_changes"
    ]
    return len(found) == len(SOURCE_DB_TABLES) and all(e.passed for e in found)


def test_a_new_source_column_lands_in_rescued_and_the_check_names_it(settings, resources, source):
    assert extract_with_checks(resources).success
    [(latest,)] = query(settings.warehouse, "SELECT max(updated_at) FROM raw.users")
    changed_at = latest + timedelta(minutes=5)
    with source.begin() as conn:
        conn.execute(sa.text("ALTER TABLE users ADD COLUMN loyalty_tier VARCHAR(16)"))
        conn.execute(
            sa.text("UPDATE users SET loyalty_tier = 'gold', updated_at = :t WHERE id = 7"),
            {"t": changed_at},
        )
    result = extract_with_checks(resources)

    rescued = query(
        settings.warehouse,
        "SELECT id, updated_at, _rescued FROM raw.users WHERE _rescued IS NOT NULL",
    )
    assert [(i, t, json.loads(r)) for i, t, r in rescued] == [
        (7, changed_at, {"loyalty_tier": "gold"})
    ]
    [users] = [
        e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "users"
    ]
    assert users.materialization.metadata["versions_added"].value == 1
    checks = drift_checks(result)
    drift = checks.pop("users")
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
    assert drift.metadata["appeared"].value == ["loyalty_tier"]
    assert drift.metadata["disappeared"].value == []
    assert drift.metadata["versions_with_column"].value == {"loyalty_tier": 1}
    assert "appeared: loyalty_tier" in drift.description
    assert sorted(checks) == ["order_items", "orders", "products"]
    assert all(e.passed for e in checks.values())
    assert no_unversioned_changes(result)  # a migration changes no row


def strict_json(text: str) -> object:
    """A JSON document as RFC 8259 has it: Python's reader also takes NaN and Infinity."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_an_infinite_float_outside_the_contract_is_rescued_as_valid_json(settings, source):
    """DuckDB's json_object wrote `{"score":Infinity}`, which no JSON reader takes. SQLite
    cannot hold a NaN (it stores NULL): the PostgreSQL test covers it."""
    extract_directly(settings, source, "users")
    [(latest,)] = query(settings.warehouse, "SELECT max(updated_at) FROM raw.users")
    with source.begin() as conn:
        conn.execute(sa.text("ALTER TABLE users ADD COLUMN score REAL"))
        for user_id, score in ((7, float("inf")), (8, float("-inf")), (9, 1.5), (10, None)):
            conn.execute(
                sa.text("UPDATE users SET score = :s, updated_at = :t WHERE id = :id"),
                {"s": score, "t": latest + timedelta(minutes=5), "id": user_id},
            )
    extract_directly(settings, source, "users")
    rescued = query(
        settings.warehouse,
        "SELECT id, _rescued FROM raw.users WHERE _rescued IS NOT NULL",
    )
    # DuckDB's own json_valid() takes NaN and Infinity too: a strict reader decides.
    assert {i: strict_json(r) for i, r in rescued} == {
        7: {"score": "Infinity"},
        8: {"score": "-Infinity"},
        9: {"score": 1.5},
        10: {"score": None},
    }


def test_a_price_declared_with_more_digits_is_named_by_the_drift_check(resources, source):
    """Before any value with more digits arrives (and stops extraction), a person is told."""
    with source.begin() as conn:
        # SQLite's way to change a column's declared type: a new column in its place.
        conn.execute(sa.text("ALTER TABLE products RENAME COLUMN unit_price TO old_price"))
        conn.execute(sa.text("ALTER TABLE products ADD COLUMN unit_price NUMERIC(12, 4)"))
        conn.execute(sa.text("UPDATE products SET unit_price = old_price"))
        conn.execute(sa.text("ALTER TABLE products DROP COLUMN old_price"))
    result = extract_with_checks(resources)
    checks = drift_checks(result)
    drift = checks.pop("products")
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
    assert drift.metadata["declared_wider"].value == {"unit_price": "NUMERIC(12, 4)"}
    assert "declared wider than the contract" in drift.description
    assert "unit_price NUMERIC(12, 4)" in drift.description
    assert sorted(checks) == ["order_items", "orders", "users"]
    assert all(e.passed for e in checks.values())
    assert no_unversioned_changes(result)  # a migration changes no row


def test_a_float_carries_its_cents_however_it_was_computed(settings, source):
    """0.1 + 0.2 is 0.30000000000000004 as a double: its digits past the 15th are the binary
    form's, not the source's, so it is the 0.30 it was meant to be."""
    with source.begin() as conn:
        conn.execute(sa.text("UPDATE products SET unit_price = 0.1 + 0.2 WHERE id = 3"))
        conn.execute(sa.text("UPDATE products SET unit_price = 99999999.99 WHERE id = 4"))
    extract_directly(settings, source, "products")
    prices = query(settings.warehouse, "SELECT unit_price FROM raw.products WHERE id IN (3, 4)")
    assert sorted(p for (p,) in prices) == [Decimal("0.30"), Decimal("99999999.99")]


def test_a_text_among_floats_is_the_value_refused_not_a_floats_last_digits(settings, source):
    """A column holding a text is read as text, its floats spelled out: 15.99 + 1 was spelled
    16.990000000000002, which the exact check on text refused before the text itself."""
    with source.begin() as conn:
        conn.execute(
            sa.text("UPDATE products SET unit_price = 15.99 + 1, updated_at = '2000-01-01' "
                    "WHERE id = 2")
        )  # fmt: skip
        conn.execute(sa.text("UPDATE products SET unit_price = 'n/a' WHERE id = 3"))
    extract_directly(settings, source, "products")
    [(record, error)] = dead_letters(settings, "products")
    assert record["id"] == "3" and record["unit_price"] == "n/a"
    assert error.startswith(
        "source column products.unit_price holds 'n/a' (row id 3), not a DECIMAL(10,2)"
    )
    prices = query(settings.warehouse, "SELECT unit_price FROM raw.products WHERE id = 2")
    assert prices == [(Decimal("16.99"),)]


def one_line_error(settings, engine: sa.Engine, table: str) -> str:
    """Extract `table`, expecting it to stop; nothing may have been written to its version log."""
    return one_line_error_after_first(settings, engine, table, rows_before=0)


def one_line_error_after_first(
    settings, engine: sa.Engine, table: str, rows_before: int = 1
) -> str:
    """Extract `table`, expecting it to stop with its version log as it was (`rows_before`)."""
    with pytest.raises(SourceSchemaError) as failure:
        extract_directly(settings, engine, table)
    [(rows,)] = query(settings.warehouse, f"SELECT count(*) FROM raw.{table}")
    assert rows == rows_before
    message = str(failure.value)
    assert "\n" not in message
    return message


def dead_letters(settings, table: str) -> list[tuple[dict, str]]:
    """raw.dead_letter's rows of the app table: each record, parsed, and its reason (one line,
    ending in what to do); no file and no line, as the contract has them for an app row."""
    rows = query(
        settings.warehouse,
        "SELECT raw_record, error, source_file, line_number, dt = CAST(rejected_at AS DATE) "
        "FROM raw.dead_letter WHERE source = ? ORDER BY rejected_at, raw_record",
        [table],
    )
    assert all(f is None and n is None and on_its_day for _, _, f, n, on_its_day in rows)
    assert all("\n" not in error and error.endswith(NEW_VERSION) for _, error, *_ in rows)
    return [(json.loads(record), error) for record, error, *_ in rows]


def source_count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()


def loosen(engine: sa.Engine, table: str) -> None:
    """Drop the table's NOT NULLs, as an app's legacy schema may not have them."""
    with engine.begin() as conn:
        ddl = conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE name = :t"), {"t": table})
        loose = ddl.scalar().replace("NOT NULL", "")
        conn.execute(sa.text(f"ALTER TABLE {table} RENAME TO strict"))
        conn.execute(sa.text(loose))
        conn.execute(sa.text(f"INSERT INTO {table} SELECT * FROM strict"))
        conn.execute(sa.text("DROP TABLE strict"))


def test_a_row_without_updated_at_is_dead_lettered_and_the_table_flows(settings, source):
    """A row with no updated_at never matched its stored version (NULL = NULL is not true):
    every full run of the table appended it once more. It stopped the table instead; now it
    waits in raw.dead_letter, once, while the other rows are extracted."""
    loosen(source, "products")
    with source.begin() as conn:
        conn.execute(sa.text("UPDATE products SET updated_at = NULL WHERE id = 2"))
    extract_directly(settings, source, "products")
    [(record, error)] = dead_letters(settings, "products")
    assert record["id"] == "2" and record["updated_at"] is None
    assert error.startswith("source table products has a row without updated_at (row id 2)")
    ids = query(settings.warehouse, "SELECT id FROM raw.products ORDER BY id")
    assert [i for (i,) in ids] == [
        i for i in range(1, source_count(source, "products") + 1) if i != 2
    ]


def test_a_contract_column_dropped_from_the_source_stops_extraction(settings, source):
    with source.begin() as conn:
        conn.execute(sa.text("ALTER TABLE users DROP COLUMN country"))
    message = one_line_error(settings, source, "users")
    assert message.startswith("source table 'users' has no column 'country' of the contract")
    assert "restore it in the app database" in message


def test_a_source_table_that_does_not_exist_stops_extraction_in_one_line(settings, source):
    """A renamed table (or a URL naming the wrong database) was a bare NoSuchTableError."""
    with source.begin() as conn:
        conn.execute(sa.text("ALTER TABLE products RENAME TO catalogue"))
    message = one_line_error(settings, source, "products")
    assert message.startswith("source table 'products' does not exist in sqlite:///")
    assert "DATA_PLATFORM_SOURCE_DB_URL" in message


def test_a_mistyped_sqlite_path_stops_extraction_and_creates_no_file(settings, source, tmp_path):
    """sqlite3 creates the file it is asked to open: a typo was read as an empty database, and
    left one behind."""
    mistyped = tmp_path / "home" / "sourse.db"
    engine = sa.create_engine(f"sqlite:///{mistyped}")
    message = one_line_error(settings, engine, "users")
    assert message.startswith(f"source database file {mistyped} does not exist (sqlite:///")
    assert "DATA_PLATFORM_SOURCE_DB_URL" in message
    assert not mistyped.exists()
    # The drift check reads the source through the same reflection: the same line.
    with pytest.raises(SourceSchemaError, match="does not exist"):
        reflect(engine, TABLES["users"])
    assert not mistyped.exists()


AT_10, AT_11 = "2026-01-05 10:00:00", "2026-01-05 11:00:00"


def legacy_orders(settings, tmp_path) -> sa.Engine:
    """A source whose orders table has no NOT NULL (a legacy schema), holding order 1."""
    settings.home.mkdir(parents=True)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'legacy.db'}")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE orders (id INTEGER, user_id INTEGER, status TEXT, "
                "ordered_at TIMESTAMP, updated_at TIMESTAMP)"
            )
        )
        conn.execute(
            sa.text("INSERT INTO orders VALUES (1, 7, 'pending', :at, :at)"), {"at": AT_10}
        )
    return engine


def test_a_row_without_updated_at_is_dead_lettered_by_the_next_incremental_run(settings, tmp_path):
    """Such a row matches no `updated_at >= mark`: no incremental run read it and none said so,
    until the weekly whole-table run stopped on it. Every run reads it now: dead-lettered once,
    and extracted when the app stamps it."""
    engine = legacy_orders(settings, tmp_path)
    extract_directly(settings, engine, "orders")
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO orders VALUES (2, 7, 'pending', :at, NULL)"), {"at": AT_11}
        )
    for _ in range(2):  # the re-run reads it again, and writes no second dead letter
        extract_directly(settings, engine, "orders")
        [(_, error)] = dead_letters(settings, "orders")
        assert error.startswith("source table orders has a row without updated_at (row id 2): ")
        assert query(settings.warehouse, "SELECT id FROM raw.orders") == [(1,)]
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE orders SET updated_at = :at WHERE id = 2"), {"at": AT_11})
    extract_directly(settings, engine, "orders")
    assert query(settings.warehouse, "SELECT id FROM raw.orders ORDER BY id") == [(1,), (2,)]
    assert len(dead_letters(settings, "orders")) == 1


@pytest.mark.parametrize("batch_rows", [50_000, 1], ids=["one_batch", "batch_per_row"])
def test_an_id_that_is_no_primary_key_stops_extraction_and_an_exact_copy_does_not(
    settings, tmp_path, monkeypatch, batch_rows
):
    """Two different rows of one (id, updated_at): one was kept at random, the other reported
    as a row changed without a new updated_at, forever, and a new updated_at (the advice) kept
    the same one again. An exact copy of a row is one version. Read in different batches (on
    SQLite pages by rowid, where rows inserted apart are far apart), it stops the same."""
    monkeypatch.setattr(database, "SOURCE_BATCH_ROWS", batch_rows)
    engine = legacy_orders(settings, tmp_path)
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO orders VALUES (1, 7, 'pending', :at, :at)"), {"at": AT_10}
        )
    extract_directly(settings, engine, "orders")
    assert query(settings.warehouse, "SELECT id, status FROM raw.orders") == [(1, "pending")]
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO orders VALUES (:id, 7, :status, :at, :at)"),
            [
                {"id": 3, "status": "pending", "at": AT_11},
                {"id": 4, "status": "pending", "at": AT_11},
                {"id": 3, "status": "shipped", "at": AT_11},
            ],
        )
    message = one_line_error_after_first(settings, engine, "orders")
    rows = "2 different rows" if batch_rows > 1 else "different rows"
    assert message.startswith(
        f"source table orders holds {rows} with id 3 and the same updated_at: id is "
        "no primary key there"
    )


def test_a_row_without_id_stops_extraction(settings, tmp_path):
    """A row without id cannot be dead-lettered: no fixed version could settle its dead letter,
    and no version of it can be told from another (the source lost its primary key)."""
    engine = legacy_orders(settings, tmp_path)
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO orders VALUES (NULL, 7, 'pending', :at, :at)"), {"at": AT_11}
        )
    message = one_line_error(settings, engine, "orders")
    assert message.startswith("source table orders has a row without id: ")
    assert message.endswith("then re-run the extraction")


def test_a_null_the_raw_gate_refuses_is_dead_lettered_not_written(settings, tmp_path):
    """An order without a status was written, failed the blocking gate, and stayed in the
    version log for good: the gate judges the whole log, so it failed on every later run,
    after the app had fixed the row too. Then it stopped the table; now it is dead-lettered."""
    engine = legacy_orders(settings, tmp_path)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO orders VALUES (2, 7, NULL, :at, :at)"), {"at": AT_11})
    extract_directly(settings, engine, "orders")
    [(record, error)] = dead_letters(settings, "orders")
    assert record == {
        "id": "2",
        "user_id": "7",
        "status": None,
        "ordered_at": AT_11,
        "updated_at": AT_11,
    }
    assert error.startswith("source table orders has a row without status (row id 2): raw.")
    assert query(settings.warehouse, "SELECT id FROM raw.orders") == [(1,)]
    with engine.begin() as conn:  # fixed in the app: the next run extracts it
        conn.execute(
            sa.text(
                "UPDATE orders SET status = 'pending', updated_at = '2026-01-05 12:00:00' "
                "WHERE id = 2"
            )
        )
    extract_directly(settings, engine, "orders")
    assert query(settings.warehouse, "SELECT id, status FROM raw.orders ORDER BY id") == [
        (1, "pending"),
        (2, "pending"),
    ]


def test_a_value_the_driver_cannot_read_is_one_line_without_the_value(settings, source):
    """Text that is not UTF-8 in SQLite (which stores any bytes) was sqlite3's traceback
    quoting it: a person's name in the run's log and its alert."""
    with source.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE users SET full_name = CAST(X'4a6fff28e9' AS TEXT), "
                "updated_at = '2030-01-01 00:00:00' WHERE id = 1"
            )
        )
    message = one_line_error(settings, source, "users")
    assert message == (
        "source table users holds a value its database driver cannot read (OperationalError): "
        "find and fix it in the app database, then re-run the extraction"
    )


@pytest.mark.parametrize(
    "url",
    [
        # Nothing listens on port 1: a server down.
        "postgresql+psycopg://app:secret@127.0.0.1:1/app",
        # The password as a query parameter, which SQLAlchemy's rendering shows.
        "postgresql+psycopg://app@127.0.0.1:1/app?password=secret",
        # A file that is no database.
        "sqlite:///{not_a_database}",
    ],
)
def test_a_source_database_that_cannot_be_used_is_one_line_naming_the_setting(
    settings, source, tmp_path, url
):
    """A server down or a file that is no database was the driver's traceback, naming no
    setting (psycopg's OperationalError, sqlite3's DatabaseError)."""
    not_a_database = tmp_path / "notes.txt"
    not_a_database.write_text("not a database\n" * 200)
    engine = sa.create_engine(url.format(not_a_database=not_a_database))
    message = one_line_error(settings, engine, "users")
    assert message.startswith("source database ")
    assert "could not be used (" in message
    assert "DATA_PLATFORM_SOURCE_DB_URL" in message
    assert "secret" not in message
    with pytest.raises(SourceSchemaError, match="could not be used"):
        reflect(engine, TABLES["users"])


@pytest.mark.parametrize(
    ("table", "column", "statement", "expected"),
    [
        (
            "products",
            "unit_price",
            "UPDATE products SET unit_price = 'n/a' WHERE id = 3",
            "source column products.unit_price holds 'n/a' (row id 3), not a DECIMAL(10,2)",
        ),
        (
            "orders",
            "updated_at",
            "UPDATE orders SET updated_at = 'yesterday' WHERE id = (SELECT max(id) FROM orders)",
            "source column orders.updated_at holds 'yesterday' (row id {max_id}), not a TIMESTAMP",
        ),
        (
            # A table holding personal data: any column may hold some, so no value is shown.
            "users",
            "created_at",
            "UPDATE users SET created_at = 'jane.doe@example.com' WHERE id = (SELECT max(id) "
            "FROM users)",
            "source column users.created_at holds a value of 20 characters (row id {max_id}), "
            "not a TIMESTAMP",
        ),
        (
            # Rounded by the cast, digits lost without a word (numeric(12,4) in the source).
            "products",
            "unit_price",
            "UPDATE products SET unit_price = 12.3456 WHERE id = 3",
            "source column products.unit_price holds '12.3456' (row id 3), which a DECIMAL(10,2) "
            "holds only rounded, as 12.35: round it in the app database",
        ),
        (
            "order_items",
            "unit_price",
            "UPDATE order_items SET unit_price = '0.125' WHERE id = (SELECT max(id) FROM "
            "order_items)",
            "source column order_items.unit_price holds '0.125' (row id {max_id}), which a "
            "DECIMAL(10,2) holds only rounded, as 0.13",
        ),
        (
            # DuckDB rounded it to 4, Spark truncates it to 3.
            "order_items",
            "quantity",
            "UPDATE order_items SET quantity = 3.7 WHERE id = (SELECT max(id) FROM order_items)",
            "source column order_items.quantity holds '3.7' (row id {max_id}), which a INTEGER "
            "holds only rounded, as 4",
        ),
    ],
)
def test_a_value_the_contract_cannot_hold_is_dead_lettered_and_the_rest_extracted(
    settings, source, table, column, statement, expected
):
    with source.begin() as conn:
        [(max_id,)] = conn.execute(sa.text(f"SELECT max(id) FROM {table}")).all()
        conn.execute(sa.text(statement))
    extract_directly(settings, source, table)
    [(record, error)] = dead_letters(settings, table)
    assert error.startswith(expected.format(max_id=max_id)), error
    [refused_id] = re.findall(r"\(row id (\d+)\)", error)
    assert record["id"] == refused_id
    assert TABLES[table].column_names[:-2] == list(record)  # the contract's, then no extra
    [(rows, refused_in_raw)] = query(
        settings.warehouse,
        f"SELECT count(*), count(*) FILTER (WHERE id = {refused_id}) FROM raw.{table}",
    )
    assert (rows, refused_in_raw) == (source_count(source, table) - 1, 0)


def test_a_column_declared_with_a_type_the_contract_cannot_hold_stops_extraction(settings, source):
    """Every value from then on would be refused: the table stops, as before, in one line."""
    with source.begin() as conn:
        # SQLite's way to change a column's declared type: a new column in its place.
        conn.execute(sa.text("ALTER TABLE order_items RENAME COLUMN quantity TO old_quantity"))
        conn.execute(sa.text("ALTER TABLE order_items ADD COLUMN quantity TEXT"))
    message = one_line_error(settings, source, "order_items")
    assert message.startswith(
        "source column order_items.quantity is declared TEXT, which does not hold the "
        "contract's INTEGER"
    )
    assert message.endswith("then re-run the extraction")


def test_a_warehouse_from_before_rescued_gains_the_column_and_keeps_its_rows(tmp_path):
    with duckdb.connect(str(tmp_path / "old.duckdb")) as conn:
        conn.execute("CREATE SCHEMA raw")
        old_columns = [c for c in USERS.columns if c.name != "_rescued"]
        conn.execute(
            f"CREATE TABLE raw.users ({', '.join(f'{c.name} {c.type}' for c in old_columns)})"
        )
        conn.execute("INSERT INTO raw.users (id, updated_at) VALUES (1, '2026-01-01 10:00')")
        ensure_raw_tables(conn, (USERS,))
        ensure_raw_tables(conn, (USERS,))  # idempotent
        columns = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM pragma_table_info('raw.users')"
            ).fetchall()
        ]
        rows = conn.execute("SELECT id, _rescued FROM raw.users").fetchall()
    assert columns == USERS.column_names
    assert rows == [(1, None)]


def dead_letter_check(result: dg.ExecuteInProcessResult, table: str) -> dg.AssetCheckEvaluation:
    [found] = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "dead_letters" and e.asset_key.path[-1] == table
    ]
    return found


def products_run(resources: dict, whole_table: bool = False) -> dg.ExecuteInProcessResult:
    config = {"config": {"lookback_minutes": 60, "whole_table": whole_table}}
    [asset] = [a for a in RAW_SOURCE_TABLE_ASSETS if a.key.path[-1] == "products"]
    return dg.materialize([asset], resources=resources, run_config={"ops": {asset.op.name: config}})


def test_a_refused_row_waits_in_dead_letter_once_and_lands_when_fixed(settings, resources, source):
    """One bad row stopped its whole table until a person edited the app database: the rows
    changed after it were not extracted either. Now it goes to raw.dead_letter with its
    reason, once however often it is read again, the rest flows, the `dead_letters` check
    WARNs while it waits, and its fixed version (a new updated_at) lands and settles it."""
    products_run(resources)
    [(first,)] = query(settings.warehouse, "SELECT count(*) FROM raw.products")
    [(mark,)] = query(settings.warehouse, "SELECT max(updated_at) FROM raw.products")
    at = [mark + timedelta(minutes=m) for m in (1, 2, 3, 4)]
    with source.begin() as conn:  # two good changes, the bad one the newest of all
        conn.execute(
            sa.text("UPDATE products SET unit_price = 1.25, updated_at = :t WHERE id IN (4, 5)"),
            {"t": at[0]},
        )
        conn.execute(
            sa.text("UPDATE products SET unit_price = 'n/a', updated_at = :t WHERE id = 3"),
            {"t": at[1]},
        )
    refused = "source column products.unit_price holds 'n/a' (row id 3), not a DECIMAL(10,2)"

    result = products_run(resources)
    [(rows,)] = query(settings.warehouse, "SELECT count(*) FROM raw.products")
    assert rows == first + 2
    assert query(
        settings.warehouse, "SELECT id FROM raw.products WHERE updated_at > ? ORDER BY id", [mark]
    ) == [(4,), (5,)]
    [(record, error)] = dead_letters(settings, "products")
    assert record["id"] == "3" and record["unit_price"] == "n/a" and error.startswith(refused)
    # raw/products, and the day of raw/dead_letter its refused row went to.
    by_key = {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}
    assert set(by_key) == {"raw/products", "raw/dead_letter"}
    letters = by_key["raw/dead_letter"].materialization.metadata
    assert letters["source"].value == "products" and letters["rows_dead_lettered"].value == 1
    metadata = by_key["raw/products"].materialization.metadata
    # The mark is the raw table's: the refused row, the newest, does not move it.
    assert metadata["high_water_mark_after"].value == str(at[0])
    assert metadata["rows_dead_lettered"].value == 1
    check = dead_letter_check(result, "products")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["dead_letters_open"].value == 1
    assert refused in check.description and "source = 'products'" in check.description

    # Read again by the look-back, then by the weekly whole-table run once the source gained a
    # column (in the row's record now, it made the same refusal a second dead letter): nothing
    # new anywhere.
    for whole_table in (False, True):
        if whole_table:
            with source.begin() as conn:
                conn.execute(sa.text("ALTER TABLE products ADD COLUMN shelf VARCHAR(8)"))
        result = products_run(resources, whole_table)
        assert query(settings.warehouse, "SELECT count(*) FROM raw.products") == [(rows,)]
        assert len(dead_letters(settings, "products")) == 1
        check = dead_letter_check(result, "products")
        assert not check.passed and check.metadata["rows_dead_lettered"].value == 0
        assert check.metadata["dead_letters_open"].value == 1

    with source.begin() as conn:  # fixed in the app, stamped
        conn.execute(
            sa.text("UPDATE products SET unit_price = 2.5, updated_at = :t WHERE id = 3"),
            {"t": at[2]},
        )
    result = products_run(resources)
    assert query(
        settings.warehouse,
        "SELECT unit_price FROM raw.products WHERE id = 3 AND updated_at = ?",
        [at[2]],
    ) == [(Decimal("2.50"),)]
    assert query(settings.warehouse, "SELECT count(*) FROM raw.products") == [(rows + 1,)]
    assert len(dead_letters(settings, "products")) == 1  # kept, as every dead letter
    assert dead_letter_check(result, "products").passed

    # Broken again the same way: a new version refused for the same reason. Keyed on the reason
    # alone, it was taken for the settled first one: in neither raw nor an open dead letter.
    with source.begin() as conn:
        conn.execute(
            sa.text("UPDATE products SET unit_price = 'n/a', updated_at = :t WHERE id = 3"),
            {"t": at[3]},
        )
    for _ in range(2):  # a run, then a re-run: one more dead letter, once
        check = dead_letter_check(products_run(resources), "products")
        letters = dead_letters(settings, "products")
        assert len(letters) == 2 and {error for _, error in letters} == {error}
        assert not check.passed and check.metadata["dead_letters_open"].value == 1


def test_a_source_column_named_like_the_refusals_own_is_extracted(settings, resources, source):
    """The refused rows' query named its verdict `_refused`: a source column of that name made
    the extraction fail on both engines (DuckDB's error, a failed conversion of 'sku' to
    INT64, named neither). The column is the source's like any other, in `_rescued`."""
    products_run(resources)
    [(mark,)] = query(settings.warehouse, "SELECT max(updated_at) FROM raw.products")
    changed = mark + timedelta(minutes=1)
    with source.begin() as conn:
        conn.execute(sa.text("ALTER TABLE products ADD COLUMN _refused VARCHAR(8)"))
        conn.execute(
            sa.text(
                "UPDATE products SET _refused = 'yes', unit_price = 'n/a', updated_at = :t "
                "WHERE id = 3"
            ),
            {"t": changed},
        )
        conn.execute(
            sa.text("UPDATE products SET _refused = 'no', updated_at = :t WHERE id = 4"),
            {"t": changed},
        )
    products_run(resources)
    [(record, error)] = dead_letters(settings, "products")
    assert record["_refused"] == "yes"
    assert error.startswith("source column products.unit_price holds 'n/a' (row id 3)"), error
    [(rescued,)] = query(
        settings.warehouse, "SELECT _rescued FROM raw.products WHERE updated_at = ?", [changed]
    )
    assert json.loads(rescued) == {"_refused": "no"}


def test_a_refused_row_the_app_deletes_no_longer_waits(settings, resources, source):
    """A refused row the app then deletes will never have a later version: its dead letter
    warned for good, and the README had no way out. The row gone from the source, nothing waits
    for it; its dead letter is kept, and a refused row still in the app still warns."""
    products_run(resources)
    [(mark,)] = query(settings.warehouse, "SELECT max(updated_at) FROM raw.products")
    with source.begin() as conn:
        conn.execute(
            sa.text("UPDATE products SET unit_price = 'n/a', updated_at = :t WHERE id IN (3, 4)"),
            {"t": mark + timedelta(minutes=1)},
        )
    check = dead_letter_check(products_run(resources), "products")
    assert check.metadata["dead_letters_open"].value == 2

    with source.begin() as conn:
        conn.execute(sa.text("DELETE FROM products WHERE id = 3"))
    check = dead_letter_check(products_run(resources), "products")
    assert not check.passed and check.metadata["dead_letters_open"].value == 1
    assert "(ids 4;" in check.description

    with source.begin() as conn:
        conn.execute(sa.text("DELETE FROM products WHERE id = 4"))
    assert dead_letter_check(products_run(resources), "products").passed
    assert sorted(record["id"] for record, _ in dead_letters(settings, "products")) == ["3", "4"]
