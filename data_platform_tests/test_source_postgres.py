"""The app database on a real PostgreSQL: simulated into, extracted from, like the SQLite default.

The same simulation goes to PostgreSQL (through `data-platform simulate`, as a user would set
DATA_PLATFORM_SOURCE_DB_URL) and to SQLite (in-process); extracting both must give the same
version logs, row for row, before and after a day of in-place updates.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from data_platform.ingestion.database import DeadLetters, extract_incremental
from data_platform.ingestion.source_schema import SourceSchemaError, contract_columns, reflect
from data_platform.ingestion.tables import PRODUCTS, SOURCE_DB_TABLES
from data_platform.resources import source_database
from data_platform.resources.landing import LandingZone
from data_platform.resources.source_database import SourceDatabase, connect_args
from data_platform.services.process import read_pid
from data_platform.simulator import SimulationConfig, append_day, simulate
from data_platform_tests.helpers import environ_without_settings, while_frozen

CLI = str(Path(sys.executable).with_name("data-platform"))
CONFIG = SimulationConfig(seed=11, days=3, end_date=date(2026, 1, 4), users=60, events_per_day=30)
FLAGS = ["--seed", "11", "--days", "3", "--end-date", "2026-01-04", "--users", "60"]
FLAGS += ["--events-per-day", "30", "--quiet"]


def simulate_cli(home: Path, url: str, *extra: str) -> None:
    environment = environ_without_settings(
        DATA_PLATFORM_HOME=str(home), DATA_PLATFORM_SOURCE_DB_URL=url
    )
    done = subprocess.run(
        [CLI, "simulate", *FLAGS, *extra], env=environment, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # It says which database it wrote, never the password in its URL.
    password = sa.engine.make_url(url).password
    assert password and password not in done.stdout + done.stderr
    assert "source database: postgresql://" in done.stdout


def extract_all(warehouse: Path, engine: sa.Engine) -> dict[str, int]:
    """Versions added per table."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with duckdb.connect(str(warehouse)) as conn:
        return {
            t.name: extract_incremental(conn, engine, t, timedelta(hours=1), now).versions_added
            for t in SOURCE_DB_TABLES
        }


def fingerprints(warehouse: Path) -> dict[str, tuple[int, str]]:
    """(rows, md5 of every contract value in key order) per version log."""
    found = {}
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        for table in SOURCE_DB_TABLES:
            values = ", ".join(
                f"coalesce(CAST({c} AS VARCHAR), '∅')" for c in contract_columns(table)
            )
            found[table.name] = conn.execute(
                f"SELECT count(*), md5(string_agg(concat_ws('|', {values}), chr(10) "
                f"ORDER BY id, updated_at)) FROM {table.qualified_name}"
            ).fetchone()
    return found


def source_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(sa.text(f"SELECT count(*) FROM {t.name}")).scalar()
            for t in SOURCE_DB_TABLES
        }


def test_postgres_source_simulates_and_extracts_like_sqlite(tmp_path, postgres_url):
    sqlite_url = f"sqlite:///{tmp_path / 'source.db'}"
    sqlite_landing = LandingZone(url=str(tmp_path / "sqlite_landing"))
    simulate(CONFIG, sqlite_landing, sqlite_url)
    simulate_cli(tmp_path / "pg_home", postgres_url)
    sqlite, postgres = sa.create_engine(sqlite_url), sa.create_engine(postgres_url)
    assert postgres.dialect.name == "postgresql"
    warehouses = {"sqlite": tmp_path / "from_sqlite.duckdb", "pg": tmp_path / "from_pg.duckdb"}

    counts = source_counts(postgres)
    assert counts == source_counts(sqlite) and min(counts.values()) > 0
    assert extract_all(warehouses["pg"], postgres) == counts
    assert extract_all(warehouses["sqlite"], sqlite) == counts
    assert fingerprints(warehouses["pg"]) == fingerprints(warehouses["sqlite"])
    assert extract_all(warehouses["pg"], postgres) == dict.fromkeys(counts, 0)  # idempotent

    # A day of status changes, new orders and users, updated in place on both sources.
    append_day(CONFIG, sqlite_landing, sqlite_url)
    simulate_cli(tmp_path / "pg_home", postgres_url, "--append-day")
    added = extract_all(warehouses["pg"], postgres)
    assert added == extract_all(warehouses["sqlite"], sqlite) and sum(added.values()) > 0
    after = fingerprints(warehouses["pg"])
    assert after == fingerprints(warehouses["sqlite"])
    assert {t: rows for t, (rows, _) in after.items()} == {t: counts[t] + added[t] for t in counts}

    # PostgreSQL can change a column's declared type: incompatible, it stops extraction.
    with postgres.begin() as conn:
        conn.execute(sa.text("ALTER TABLE products ALTER COLUMN unit_price TYPE text"))
    with duckdb.connect(str(warehouses["pg"])) as conn, pytest.raises(SourceSchemaError) as err:
        extract_incremental(conn, postgres, PRODUCTS, timedelta(hours=1), datetime(2026, 2, 1))
    assert str(err.value).startswith(
        "source column products.unit_price is declared TEXT, which does not hold the "
        "contract's DECIMAL(10,2)"
    )
    postgres.dispose()


def test_timestamptz_on_a_server_outside_utc_loses_no_version(tmp_path, postgres_url):
    """initdb gives a server its OS's time zone: the extraction's naive UTC bounds were read as
    that zone's wall time, so changes between them were never extracted (New York: 5 hours)."""
    from data_platform.ingestion.tables import USERS
    from data_platform.resources.source_database import SourceDatabase

    engine = SourceDatabase(url=postgres_url).engine()
    name = sa.engine.make_url(postgres_url).database
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER DATABASE \"{name}\" SET timezone = 'America/New_York'"))
    engine.dispose()
    columns = "id int PRIMARY KEY, email text, full_name text, country text"
    stamps = "created_at timestamptz, updated_at timestamptz, deleted_at timestamptz"
    user = "INSERT INTO users VALUES ({id}, '{email}', 'N', 'DE', '{at}', '{at}', NULL)"
    warehouse = tmp_path / "warehouse.duckdb"

    def extract() -> None:
        with duckdb.connect(str(warehouse)) as conn:
            now = datetime(2026, 1, 2)
            extract_incremental(conn, engine, USERS, timedelta(hours=1), now)

    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE users ({columns}, {stamps})"))
        conn.execute(sa.text(user.format(id=1, email="a@x", at="2026-01-01 12:00Z")))
    extract()
    with engine.begin() as conn:  # an hour and two after the mark
        conn.execute(sa.text(user.format(id=2, email="b@x", at="2026-01-01 13:00Z")))
        conn.execute(sa.text("UPDATE users SET email = 'a2@x', updated_at = '2026-01-01 14:00Z'"
                             " WHERE id = 1"))  # fmt: skip
    extract()
    with engine.begin() as conn:  # later activity moves the mark past them
        conn.execute(sa.text(user.format(id=3, email="c@x", at="2026-01-01 20:00Z")))
    extract()
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        stored = conn.execute("SELECT id, updated_at FROM raw.users ORDER BY ALL").fetchall()
    assert stored == [
        (1, datetime(2026, 1, 1, 12)),
        (1, datetime(2026, 1, 1, 14)),
        (2, datetime(2026, 1, 1, 13)),
        (3, datetime(2026, 1, 1, 20)),
    ]


def test_nan_and_infinities_outside_the_contract_are_rescued_as_valid_json(tmp_path, postgres_url):
    """PostgreSQL's double precision holds NaN and infinities (SQLite turns a NaN into NULL):
    DuckDB's json_object wrote them bare, `{"score":NaN}`, which no JSON reader takes."""
    from data_platform.ingestion.tables import USERS

    engine = sa.create_engine(postgres_url)
    columns = "id int PRIMARY KEY, email text, full_name text, country text"
    stamps = "created_at timestamp, updated_at timestamp, deleted_at timestamp"
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE users ({columns}, {stamps}, score double precision)"))
        for user_id, score in enumerate(("NaN", "Infinity", "-Infinity", "2.5", None), start=1):
            conn.execute(
                sa.text(
                    "INSERT INTO users VALUES (:id, 'u@x', 'U', 'DE', '2026-01-01 12:00', "
                    "'2026-01-01 12:00', NULL, CAST(:score AS double precision))"
                ),
                {"id": user_id, "score": score},
            )
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as conn:
        extract_incremental(conn, engine, USERS, timedelta(hours=1), datetime(2026, 1, 2))
        rescued = conn.execute("SELECT id, _rescued FROM raw.users ORDER BY id").fetchall()
    engine.dispose()

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    assert [(i, json.loads(r, parse_constant=refuse)) for i, r in rescued] == [
        (1, {"score": "NaN"}),
        (2, {"score": "Infinity"}),
        (3, {"score": "-Infinity"}),
        (4, {"score": 2.5}),
        (5, {"score": None}),
    ]


def test_a_numeric_12_4_price_is_dead_lettered_rather_than_rounded(tmp_path, postgres_url):
    """A source migrated to numeric(12,4) held 12.3456, stored as 12.35 without a word; then it
    stopped the table. Now it is dead-lettered, and a value with no more digits than the
    contract's (12.3400) is still extracted."""
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE products (id int PRIMARY KEY, sku text, name text, category text, "
                "unit_price numeric(12,4), updated_at timestamp)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO products VALUES (1, 's1', 'a', 'c', 12.3400, '2026-01-01 12:00'), "
                "(2, 's2', 'b', 'c', 12.3456, '2026-01-01 12:00')"
            )
        )
    # The drift check reads this: a person hears of it before a value stops a run.
    assert reflect(engine, PRODUCTS)[1].wider == {"unit_price": "NUMERIC(12, 4)"}
    warehouse = tmp_path / "warehouse.duckdb"

    def extract(at: datetime) -> DeadLetters:
        with duckdb.connect(str(warehouse)) as conn:
            return extract_incremental(conn, engine, PRODUCTS, timedelta(hours=1), at).dead_letters

    found = extract(datetime(2026, 1, 2))
    assert (found.added, found.open, found.ids) == (1, 1, ("2",))
    assert found.reason.startswith(
        "source column products.unit_price holds '12.3456' (row id 2), which a DECIMAL(10,2) "
        "holds only rounded, as 12.35: round it in the app database"
    )
    with engine.begin() as conn:  # the look-back reads it again: fixed, it lands
        conn.execute(sa.text("UPDATE products SET unit_price = 12.35 WHERE id = 2"))
    assert extract(datetime(2026, 1, 3)) == DeadLetters(0, 0, (), None)
    engine.dispose()
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        prices = conn.execute("SELECT id, unit_price FROM raw.products ORDER BY id").fetchall()
        letters = conn.execute("SELECT count(*) FROM raw.dead_letter").fetchall()
    assert prices == [(1, Decimal("12.34")), (2, Decimal("12.35"))]
    assert letters == [(1,)]


def test_two_changes_within_a_timestamp_s_resolution_are_reported(tmp_path, postgres_url):
    """An app whose updated_at is a timestamp(0) changed a user twice in one second: the second
    change rounds to the first's updated_at, so its content can be no version. It was skipped
    without a word; now the run counts and names the row (its id, not its values)."""
    from data_platform.ingestion.database import UnversionedChanges
    from data_platform.ingestion.tables import USERS

    engine = sa.create_engine(postgres_url)
    columns = "id int PRIMARY KEY, email text, full_name text, country text"
    stamps = "created_at timestamp(0), updated_at timestamp(0), deleted_at timestamp(0)"
    change = sa.text("UPDATE users SET email = :email, updated_at = :at WHERE id = 1")
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE users ({columns}, {stamps})"))
        conn.execute(
            sa.text(
                "INSERT INTO users VALUES (1, 'a@x', 'A', 'DE', :at, :at, NULL), "
                "(2, 'b@x', 'B', 'DE', :at, :at, NULL)"
            ),
            {"at": "2026-01-01 11:00"},
        )
        conn.execute(change, {"email": "a1@x", "at": "2026-01-01 12:00:00.2"})
    warehouse = tmp_path / "warehouse.duckdb"

    def extract(at: datetime) -> UnversionedChanges:
        with duckdb.connect(str(warehouse)) as conn:
            return extract_incremental(conn, engine, USERS, timedelta(hours=1), at).unversioned

    assert extract(datetime(2026, 1, 1, 12, 0, 0, 500_000)) == UnversionedChanges()
    with engine.begin() as conn:  # 0.2 s after the first change: the same second
        conn.execute(change, {"email": "a2@x", "at": "2026-01-01 12:00:00.4"})
    assert extract(datetime(2026, 1, 1, 12, 5)) == UnversionedChanges(rows=1, ids=(1,))
    engine.dispose()
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        stored = conn.execute("SELECT id, email, updated_at FROM raw.users ORDER BY ALL").fetchall()
    assert stored == [(1, "a1@x", datetime(2026, 1, 1, 12)), (2, "b@x", datetime(2026, 1, 1, 11))]


def test_a_source_that_does_not_answer_fails_its_connection_within_the_timeout(
    postgres_server, postgres_url, monkeypatch
):
    """A PostgreSQL source that takes connections but does not answer (its postmaster stopped,
    as a hung disk or a frozen machine leaves it): libpq waited for ever, and each sensor tick
    left a code-server thread waiting on it. The connection now gives up."""
    monkeypatch.setattr(source_database, "CONNECT_TIMEOUT_SECONDS", 2)
    engine = SourceDatabase(url=postgres_url).engine()
    postmaster = read_pid(postgres_server.pid_file)
    with pytest.raises(sa.exc.OperationalError, match="timeout expired"):
        while_frozen(postmaster, lambda: engine.connect().close(), within=30)


def test_a_connect_timeout_in_the_source_url_is_kept():
    """The source URL's own `connect_timeout` wins; other databases get no PostgreSQL option."""
    url = sa.engine.make_url
    assert connect_args(url("postgresql://app@db/app")) == {
        "options": "-c timezone=UTC",
        "connect_timeout": source_database.CONNECT_TIMEOUT_SECONDS,
    }
    assert connect_args(url("postgresql://app@db/app?connect_timeout=30")) == {
        "options": "-c timezone=UTC"
    }
    assert connect_args(url("sqlite:////tmp/app.db")) == {}
