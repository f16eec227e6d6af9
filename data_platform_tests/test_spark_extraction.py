"""The app database extracted on Spark gives DuckDB's raw version logs (README.md, "Choosing an
engine").

A simulated app database (SQLite) is extracted twice, by `extract_incremental` into a DuckDB
file and by `extract_incremental_on_spark` into a local Spark (a session in this process,
local[2], warehouse and Derby metastore in a temp folder), in small batches so that a run spans
several. Every raw table must hold the same rows on both, row for row; after the source moves
on (a simulated day, hand-made updates, new columns), a second extraction must add exactly the
new versions on both, with the new columns in `_rescued`. A value the contract cannot hold
is dead-lettered alike by both engines, with the same reason, once, and the other versions are
extracted.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from data_platform.ingestion import database
from data_platform.ingestion.database import DeadLetters, ExtractionStats, extract_incremental
from data_platform.ingestion.source_schema import SourceSchemaError
from data_platform.ingestion.spark_database import extract_incremental_on_spark
from data_platform.ingestion.tables import SOURCE_DB_TABLES, RawTable
from data_platform.simulator import SimulationConfig, append_day, simulate
from data_platform_tests.test_dbt_spark import driver_java_options, java_home

# Enough sessions for orders: 32 users, 40 products, 23 orders, 27 order lines.
CONFIG = SimulationConfig(
    seed=11, days=2, end_date=date(2026, 1, 3), users=30, products=40, events_per_day=600
)
LOOKBACK = timedelta(hours=1)
# Small batches: every table's extraction spans several, and Spark stages them all.
BATCH_ROWS = 16
TABLES = {table.name: table for table in SOURCE_DB_TABLES}
ODD_COLUMN = '"o\'stock\\"'  # SQL for the column o'stock\


@pytest.fixture(scope="module")
def spark(tmp_path_factory) -> Iterator[object]:
    """A local Spark in this process, configured as test_dbt_spark's (Hive tables, Derby
    metastore and warehouse in a temp folder, UTC, 2 cores). Modules run one after the other:
    another module's session is stopped by then, and a new one in the same JVM gets its own
    warehouse and metastore."""
    from pyspark.sql import SparkSession

    root = tmp_path_factory.mktemp("spark_extraction")
    mp = pytest.MonkeyPatch()
    mp.setenv("JAVA_HOME", java_home())
    for name in ("SPARK_REMOTE", "MASTER", "PYSPARK_SUBMIT_ARGS"):
        mp.delenv(name, raising=False)  # a local Spark, whatever the shell points at
    session = (
        SparkSession.builder.master("local[2]")
        .appName("data_platform_tests.test_spark_extraction")
        .enableHiveSupport()
        .config("spark.sql.warehouse.dir", str(root / "warehouse"))
        .config(
            "spark.hadoop.javax.jdo.option.ConnectionURL",
            f"jdbc:derby:;databaseName={root}/metastore/metastore_db;create=true",
        )
        .config(
            "spark.driver.extraJavaOptions",
            driver_java_options(tmp_path_factory, f"-Dderby.system.home={root}/metastore"),
        )
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    # getOrCreate returns a live session as it is: this module's tables must not land in
    # another module's catalog.
    assert session.conf.get("spark.sql.warehouse.dir").endswith(str(root / "warehouse"))
    session.sparkContext.setLogLevel("OFF")
    yield session
    session.stop()
    mp.undo()


@pytest.fixture
def spark_raw(spark) -> object:
    """The module's session with no raw tables yet."""
    spark.sql("DROP DATABASE IF EXISTS raw CASCADE")
    return spark


@pytest.fixture
def source(settings, resources, monkeypatch) -> sa.Engine:
    monkeypatch.setattr(database, "SOURCE_BATCH_ROWS", BATCH_ROWS)
    simulate(CONFIG, resources["landing"], settings.source_db_url)
    return sa.create_engine(settings.source_db_url)


def extract_both(
    duck: Path,
    spark,
    engine: sa.Engine,
    table: RawTable,
    at: datetime,
    lookback: timedelta | None = LOOKBACK,
) -> tuple[ExtractionStats, ExtractionStats]:
    with duckdb.connect(str(duck)) as conn:
        on_duckdb = extract_incremental(conn, engine, table, lookback, at)
    return on_duckdb, extract_incremental_on_spark(spark, engine, table, lookback, at)


def normalised(row: tuple) -> tuple:
    """JSON text as its parsed document (key order and spacing are the engine's own)."""
    *values, rescued = row
    return (*values, None if rescued is None else json.dumps(json.loads(rescued), sort_keys=True))


def duckdb_rows(duck: Path, table: RawTable) -> Counter:
    with duckdb.connect(str(duck), read_only=True) as conn:
        rows = conn.execute(f"SELECT * FROM {table.qualified_name}").fetchall()
    return Counter(normalised(r) for r in rows)


def spark_rows(spark, table: RawTable) -> Counter:
    """Timestamps as TIMESTAMP_NTZ: the naive UTC values DuckDB returns, whatever the Python
    process's time zone. Columns in the declared order, as DuckDB's."""
    timestamps = {c.name for c in table.columns if c.type == "TIMESTAMP"}
    columns = ", ".join(
        f"CAST(`{n}` AS TIMESTAMP_NTZ)" if n in timestamps else f"`{n}`" for n in table.column_names
    )
    rows = spark.sql(f"SELECT {columns} FROM {table.qualified_name}").collect()
    return Counter(normalised(tuple(r)) for r in rows)


def dead_letters(duck: Path, spark, table: RawTable) -> Counter:
    """raw.dead_letter's rows of `table` on DuckDB, which must be Spark's: records parsed (each
    engine spells its JSON its own way), times as naive UTC."""
    columns = "source, dt, source_file, line_number, raw_record, error"
    stamp = "CAST(rejected_at AS TIMESTAMP_NTZ)"
    where = f"FROM raw.dead_letter WHERE source = '{table.name}'"
    with duckdb.connect(str(duck), read_only=True) as conn:
        on_duckdb = conn.execute(f"SELECT {columns}, rejected_at {where}").fetchall()
    on_spark = [tuple(r) for r in spark.sql(f"SELECT {columns}, {stamp} {where}").collect()]

    def parsed(rows: list[tuple]) -> Counter:
        return Counter((*r[:4], json.dumps(json.loads(r[4]), sort_keys=True), *r[5:]) for r in rows)

    assert parsed(on_spark) == parsed(on_duckdb)
    return parsed(on_duckdb)


def versions(rows: Counter, table: RawTable) -> set[tuple]:
    """The rows' (id, updated_at) pairs."""
    at = table.column_names.index("updated_at")
    return {(row[0], row[at]) for row in rows}


def source_versions(engine: sa.Engine, table: RawTable) -> set[tuple]:
    reflected = sa.Table(table.name, sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        return set(map(tuple, conn.execute(sa.select(reflected.c.id, reflected.c.updated_at))))


def test_spark_extraction_gives_duckdb_version_logs_first_and_incremental(
    tmp_path, settings, resources, source, spark_raw
):
    duck = tmp_path / "warehouse.duckdb"
    first_at = datetime(2026, 1, 4, 1, 0)
    for table in SOURCE_DB_TABLES:
        on_duckdb, on_spark = extract_both(duck, spark_raw, source, table, first_at)
        assert on_spark == on_duckdb, table.name
        assert on_spark.versions_added == len(source_versions(source, table)) > BATCH_ROWS
        rows = duckdb_rows(duck, table)
        assert spark_rows(spark_raw, table) == rows, table.name
        assert versions(rows, table) == source_versions(source, table), table.name
    before = {table.name: duckdb_rows(duck, table) for table in SOURCE_DB_TABLES}

    # The source moves on: a simulated day (new orders, status changes), two new columns.
    append_day(CONFIG, resources["landing"], settings.source_db_url)
    latest = max(t for table in SOURCE_DB_TABLES for _, t in source_versions(source, table))
    changed_at = latest + timedelta(minutes=5)
    with source.begin() as conn:
        conn.execute(sa.text("ALTER TABLE users ADD COLUMN loyalty_tier VARCHAR(16)"))
        # Bytes, which each engine's to_json spelled its own way ("\\x00\\xFF" vs base64).
        conn.execute(sa.text("ALTER TABLE users ADD COLUMN avatar BLOB"))
        conn.execute(
            sa.text(
                "UPDATE users SET loyalty_tier = 'gold', avatar = X'00FF', updated_at = :t "
                "WHERE id = 7"
            ),
            {"t": changed_at},
        )
        # A name a quote and a backslash end: literals differ between the engines' SQL.
        conn.execute(sa.text(f"ALTER TABLE products ADD COLUMN {ODD_COLUMN} INTEGER"))
        conn.execute(
            sa.text(f"UPDATE products SET {ODD_COLUMN} = 5, updated_at = :t WHERE id = 1"),
            {"t": changed_at},
        )
        # Changed, its new column still empty: the key is rescued with a null.
        conn.execute(sa.text("UPDATE products SET updated_at = :t WHERE id = 2"), {"t": changed_at})

    second_at = datetime(2026, 1, 5, 1, 0)
    new = {}
    for table in SOURCE_DB_TABLES:
        new[table.name] = source_versions(source, table) - versions(before[table.name], table)
        assert new[table.name], table.name
        on_duckdb, on_spark = extract_both(duck, spark_raw, source, table, second_at)
        assert on_spark == on_duckdb, table.name
        assert on_spark.versions_added == len(new[table.name]), table.name
        rows = duckdb_rows(duck, table)
        assert spark_rows(spark_raw, table) == rows, table.name
        added = rows - before[table.name]
        assert before[table.name] <= rows and added.total() == len(new[table.name]), table.name
        assert versions(added, table) == new[table.name], table.name

    # Every version extracted since a column appeared has it in `_rescued`, null included.
    extras = {
        "users": {
            "loyalty_tier": {7: "gold"},
            "avatar": {7: "00ff"},
        },
        "products": {"o'stock\\": {1: 5}},
    }
    for table, columns in extras.items():
        at = TABLES[table].column_names.index("updated_at")
        rescued = {(row[0], row[at]): row[-1] for row in spark_rows(spark_raw, TABLES[table])}
        assert rescued == {
            (i, t): json.dumps({c: v.get(i) for c, v in columns.items()}, sort_keys=True)
            if (i, t) in new[table]
            else None
            for i, t in rescued
        }, table


def test_a_value_the_contract_cannot_hold_is_dead_lettered_alike_on_both(
    tmp_path, source, spark_raw
):
    duck = tmp_path / "warehouse.duckdb"
    products, orders = TABLES["products"], TABLES["orders"]
    for table in (products, orders):
        extract_both(duck, spark_raw, source, table, datetime(2026, 1, 4, 1, 0))
    before = {t.name: duckdb_rows(duck, t) for t in (products, orders)}
    assert {t.name: spark_rows(spark_raw, t) for t in (products, orders)} == before

    [(latest,)] = source.connect().execute(sa.text("SELECT max(updated_at) FROM products")).all()
    with source.begin() as conn:
        # More valid new versions than a batch holds, read before the bad value (the latest).
        conn.execute(
            sa.text("UPDATE products SET unit_price = unit_price + 1, updated_at = :t"),
            {"t": datetime.fromisoformat(latest) + timedelta(minutes=1)},
        )
        conn.execute(sa.text("UPDATE products SET unit_price = 'n/a' WHERE id = 3"))
        conn.execute(
            sa.text("UPDATE products SET updated_at = :t WHERE id = 3"),
            {"t": datetime.fromisoformat(latest) + timedelta(minutes=2)},
        )
        # A word Spark reads as a date in a SQL literal, never in a column's value.
        conn.execute(
            sa.text(
                "UPDATE orders SET updated_at = 'yesterday' WHERE id = (SELECT max(id) FROM orders)"
            )
        )
        [(max_order,)] = conn.execute(sa.text("SELECT max(id) FROM orders")).all()

    expected = {
        products: "source column products.unit_price holds 'n/a' (row id 3), not a DECIMAL(10,2)",
        orders: f"source column orders.updated_at holds 'yesterday' (row id {max_order}), "
        "not a TIMESTAMP",
    }
    # Every product changed, the third refused; the one order changed, refused.
    changed = datetime.fromisoformat(latest) + timedelta(minutes=1)
    with source.connect() as conn:
        products_ids = conn.execute(sa.text("SELECT id FROM products WHERE id <> 3")).scalars()
        good = {products: {(i, changed) for i in products_ids}, orders: set()}
    assert len(good[products]) > BATCH_ROWS
    for table, start in expected.items():
        [refused_id] = re.findall(r"\(row id (\d+)\)", start)
        for at in (datetime(2026, 1, 5), datetime(2026, 1, 5, 0, 30)):  # a run, a re-run
            on_duckdb, on_spark = extract_both(duck, spark_raw, source, table, at)
            assert on_spark == on_duckdb, table.name
            [letter] = dead_letters(duck, spark_raw, table)
            assert letter[5].startswith(start) and json.loads(letter[4])["id"] == refused_id
            assert letter[:4] == (table.name, date(2026, 1, 5), None, None)
            assert letter[6] == datetime(2026, 1, 5)  # written once, by the first run
            rows = duckdb_rows(duck, table)
            assert spark_rows(spark_raw, table) == rows, table.name
            assert versions(rows - before[table.name], table) == good[table], table.name
        assert on_duckdb.dead_letters == DeadLetters(0, 1, (refused_id,), letter[5])
        # The app deletes the refused row: nothing waits for it on either engine, its letter kept.
        with source.begin() as conn:
            conn.execute(sa.text(f"DELETE FROM {table.name} WHERE id = {refused_id}"))
        on_duckdb, on_spark = extract_both(duck, spark_raw, source, table, datetime(2026, 1, 5, 1))
        assert on_duckdb.dead_letters == on_spark.dead_letters == DeadLetters()
        assert len(dead_letters(duck, spark_raw, table)) == 1


INSERT_SCORED_USER = sa.text(
    "INSERT INTO users VALUES (:id, 'u@x', 'U', 'DE', :at, :at, NULL, :score)"
)


def users_with_a_score(path: Path, rows: list[dict]) -> sa.Engine:
    """A SQLite app database of one users table with a column outside the contract (`score`,
    REAL, for `_rescued`), holding `rows` ({id, at, score})."""
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, full_name TEXT, "
                "country TEXT, created_at DATETIME, updated_at DATETIME, deleted_at DATETIME, "
                "score REAL)"
            )
        )
        conn.execute(INSERT_SCORED_USER, rows)
    return engine


def test_offsets_infinities_future_rows_and_rounding_alike_on_both(tmp_path, spark_raw):
    """A SQLite app's text timestamps with offsets (stored in UTC), an infinity outside the
    contract (valid JSON), a row stamped years ahead (later changes still read) and a price
    with more digits than the contract (refused, not rounded): the same on both engines."""
    duck, users, products = tmp_path / "warehouse.duckdb", TABLES["users"], TABLES["products"]
    engine = users_with_a_score(
        tmp_path / "app.db",
        [
            {"id": 1, "at": "2026-01-05 10:00:00+02:00", "score": float("inf")},
            {"id": 2, "at": "2030-01-01 00:00:00", "score": float("-inf")},
            {"id": 3, "at": "2026-01-05 08:45:00", "score": 1.5},
        ],
    )
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE products (id INTEGER PRIMARY KEY, sku TEXT, name TEXT, "
                "category TEXT, unit_price NUMERIC(12, 4), updated_at DATETIME)"
            )
        )
        conn.execute(
            sa.text("INSERT INTO products VALUES (1, 's', 'n', 'c', 12.3456, '2026-01-05')")
        )
        # A zone name, outside the timestamp grammar: DuckDB's cast read it in any case (08:00
        # UTC), Spark's only as spelled (none): refused on both.
        conn.execute(
            sa.text(
                "INSERT INTO products VALUES (2, 's', 'n', 'c', 1.5, '2026-01-05 09:00 europe/paris')"
            )
        )
    extract_both(duck, spark_raw, engine, users, datetime(2026, 1, 5, 9))
    with engine.begin() as conn:  # 10:00 UTC, and a real change after the future row
        conn.execute(
            INSERT_SCORED_USER, {"id": 4, "at": "2026-01-05 05:00:00-05:00", "score": None}
        )
        conn.execute(sa.text("UPDATE users SET updated_at = '2026-01-05 09:30:00' WHERE id = 3"))
    on_duckdb, on_spark = extract_both(duck, spark_raw, engine, users, datetime(2026, 1, 5, 12))
    assert on_spark == on_duckdb and on_duckdb.versions_added == 2

    rows = duckdb_rows(duck, users)
    assert spark_rows(spark_raw, users) == rows
    at = users.column_names.index("updated_at")
    assert {(r[0], r[at]): json.loads(r[-1]) for r in rows} == {
        (1, datetime(2026, 1, 5, 8)): {"score": "Infinity"},
        (2, datetime(2030, 1, 1)): {"score": "-Infinity"},
        (3, datetime(2026, 1, 5, 8, 45)): {"score": 1.5},
        (3, datetime(2026, 1, 5, 9, 30)): {"score": 1.5},
        (4, datetime(2026, 1, 5, 10)): {"score": None},
    }
    # Strict JSON: DuckDB's json_object wrote a bare Infinity (Spark's writer never did).
    for row in rows:
        json.loads(row[-1], parse_constant=lambda constant: pytest.fail(constant))

    on_duckdb, on_spark = extract_both(duck, spark_raw, engine, products, datetime(2026, 1, 6))
    assert on_spark == on_duckdb and on_duckdb.dead_letters.added == 2
    rounded, zoned = sorted(letter[5] for letter in dead_letters(duck, spark_raw, products))
    assert rounded.startswith(
        "source column products.unit_price holds '12.3456' (row id 1), which a DECIMAL(10,2) "
        "holds only rounded, as 12.35"
    )
    assert zoned.startswith(
        "source column products.updated_at holds '2026-01-05 09:00 europe/paris' (row id 2), "
        "not a TIMESTAMP (an ISO-8601 timestamp such as 2026-01-05T10:00:00Z"
    )
    assert duckdb_rows(duck, products) == spark_rows(spark_raw, products) == Counter()


def test_changes_that_keep_updated_at_are_reported_alike_on_both(tmp_path, spark_raw, monkeypatch):
    """A row changed under the updated_at of its extracted version (in a contract column, or in
    one kept in `_rescued`) is counted and named by the same rule on both engines, over batches;
    a column added by a migration, which changes every row's `_rescued`, is not such a change."""
    monkeypatch.setattr(database, "SOURCE_BATCH_ROWS", 2)
    duck, users = tmp_path / "warehouse.duckdb", TABLES["users"]
    engine = users_with_a_score(
        tmp_path / "app.db",
        [{"id": i, "at": f"2026-01-05 08:0{i}:00", "score": 1.5} for i in range(1, 6)],
    )
    first = extract_both(duck, spark_raw, engine, users, datetime(2026, 1, 5, 9))
    assert first[0] == first[1] and first[0].unversioned == database.UnversionedChanges()
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE users SET email = 'v@x' WHERE id = 2"))
        conn.execute(sa.text("UPDATE users SET score = 2.5 WHERE id = 5"))
        conn.execute(sa.text("UPDATE users SET updated_at = '2026-01-05 09:30' WHERE id = 3"))
    on_duckdb, on_spark = extract_both(duck, spark_raw, engine, users, datetime(2026, 1, 5, 10))
    assert on_spark == on_duckdb
    assert (on_duckdb.versions_added, on_duckdb.unversioned) == (
        1,
        database.UnversionedChanges(rows=2, ids=(2, 5)),
    )
    rows = duckdb_rows(duck, users)
    assert spark_rows(spark_raw, users) == rows and len(rows) == 6
    # The mark is 09:30 now: ids 2 and 5 (08:02, 08:05) are past the look-back. A whole-table
    # run (no look-back) reads all five rows, names both again and adds nothing, alike.
    on_duckdb, on_spark = extract_both(
        duck, spark_raw, engine, users, datetime(2026, 1, 5, 10, 30), lookback=None
    )
    assert on_spark == on_duckdb
    assert (on_duckdb.rows_fetched, on_duckdb.versions_added, on_duckdb.unversioned) == (
        5,
        0,
        database.UnversionedChanges(rows=2, ids=(2, 5)),
    )
    assert duckdb_rows(duck, users) == spark_rows(spark_raw, users) == rows
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE users ADD COLUMN nickname TEXT"))
    on_duckdb, on_spark = extract_both(duck, spark_raw, engine, users, datetime(2026, 1, 5, 11))
    assert on_spark == on_duckdb and on_duckdb.unversioned == database.UnversionedChanges()
    assert (on_duckdb.rows_fetched, on_duckdb.versions_added) == (1, 0)


def test_an_id_that_is_no_primary_key_stops_both_alike_across_batches(
    tmp_path, spark_raw, monkeypatch
):
    """Two different rows of one (id, updated_at) read in different batches: each engine kept
    one and reported the other as a row changed without a new updated_at. The version the run
    itself stored tells them apart (Spark's staged batches, before it appends): both engines
    stop, writing nothing."""
    monkeypatch.setattr(database, "SOURCE_BATCH_ROWS", 1)
    duck, users = tmp_path / "warehouse.duckdb", TABLES["users"]
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE users (id INTEGER, email TEXT, full_name TEXT, country TEXT, "
                "created_at DATETIME, updated_at DATETIME, deleted_at DATETIME)"
            )
        )
        conn.execute(
            sa.text("INSERT INTO users VALUES (:id, 'u@x.test', 'U', :country, :at, :at, NULL)"),
            [
                {"id": 3, "country": "DE", "at": "2026-01-05 08:00:00"},
                {"id": 4, "country": "DE", "at": "2026-01-05 08:00:00"},
                {"id": 3, "country": "FR", "at": "2026-01-05 08:00:00"},
            ],
        )
    with duckdb.connect(str(duck)) as conn, pytest.raises(SourceSchemaError) as on_duckdb:
        extract_incremental(conn, engine, users, LOOKBACK, datetime(2026, 1, 5, 9))
    with pytest.raises(SourceSchemaError) as on_spark:
        extract_incremental_on_spark(spark_raw, engine, users, LOOKBACK, datetime(2026, 1, 5, 9))
    # Spark, which stages every batch before its append, counts them; DuckDB's append is batch
    # by batch, in one transaction.
    assert str(on_spark.value).startswith("source table users holds 2 different rows with id 3")
    assert str(on_duckdb.value).startswith("source table users holds different rows with id 3")
    for refused in (on_duckdb, on_spark):
        assert "and the same updated_at: id is no primary key there" in str(refused.value)
    assert duckdb_rows(duck, users) == spark_rows(spark_raw, users) == Counter()


def test_numbers_held_as_text_are_read_alike_on_both(tmp_path, source, spark_raw):
    """SQLite keeps text in any column. DuckDB's cast read `0x10`, `1_000` and `0b11`, which
    Spark's refused; Spark's trimmed control characters (`5\\x00`), which DuckDB's refused; and
    `3.5` was "rounded, as 4" on one, "not a INTEGER" on the other. Only a number's spelling
    (spaces around it allowed) reaches either engine's cast, rounded half up alike."""
    duck, items = tmp_path / "warehouse.duckdb", TABLES["order_items"]
    extract_both(duck, spark_raw, source, items, datetime(2026, 1, 4, 1, 0))
    with source.connect() as conn:
        [(latest,)] = conn.execute(sa.text("SELECT max(updated_at) FROM order_items")).all()
    changed = datetime.fromisoformat(latest) + timedelta(minutes=1)
    texts = {1: "0x10", 2: "1_000", 3: "0b11", 4: "5\x00", 5: "\x013", 6: "3.5"}
    loaded = {7: (" 7 ", 7), 8: ("1e1", 10), 9: ("+4", 4), 10: ("2.0", 2)}
    with source.begin() as conn:
        for item, text in [*texts.items(), *((i, t) for i, (t, _) in loaded.items())]:
            conn.execute(
                sa.text("UPDATE order_items SET quantity = :q, updated_at = :t WHERE id = :i"),
                {"q": text, "t": changed, "i": item},
            )
    on_duckdb, on_spark = extract_both(duck, spark_raw, source, items, datetime(2026, 1, 5))
    assert on_spark == on_duckdb
    letters = dead_letters(duck, spark_raw, items)  # the same on both, reasons included
    assert sorted(int(json.loads(letter[4])["id"]) for letter in letters) == sorted(texts)
    [rounded] = [letter[5] for letter in letters if json.loads(letter[4])["id"] == "6"]
    assert "'3.5'" in rounded and "as 4" in rounded, rounded
    rows = duckdb_rows(duck, items)
    assert spark_rows(spark_raw, items) == rows
    at, quantity = (items.column_names.index(n) for n in ("updated_at", "quantity"))
    new = {row[0]: row[quantity] for row in rows if row[at] == changed}
    assert new == {item: number for item, (_, number) in loaded.items()}


def test_blobs_in_text_columns_are_stored_alike_on_both(tmp_path, source, spark_raw):
    """SQLite keeps a blob in a text column. DuckDB stored a binary column's escapes (`\\xE2\\x82
    \\xAC` for a euro sign), Spark decoded it; a blob among texts was stored as Python's
    `b'...'`. Both now store UTF-8 decoded, other bytes as `\\xff` escapes: here every category
    a blob (a binary column) and one sku a blob among texts."""
    duck, products = tmp_path / "warehouse.duckdb", TABLES["products"]
    extract_both(duck, spark_raw, source, products, datetime(2026, 1, 4, 1, 0))
    with source.connect() as conn:
        [(latest,)] = conn.execute(sa.text("SELECT max(updated_at) FROM products")).all()
    changed = datetime.fromisoformat(latest) + timedelta(minutes=1)
    with source.begin() as conn:
        conn.execute(
            sa.text("UPDATE products SET category = :c, updated_at = :t"),
            {"c": "€".encode(), "t": changed},
        )
        conn.execute(sa.text("UPDATE products SET sku = :s WHERE id = 3"), {"s": b"SKU\xff"})
    on_duckdb, on_spark = extract_both(duck, spark_raw, source, products, datetime(2026, 1, 5))
    assert on_spark == on_duckdb and on_duckdb.dead_letters.ids == ()
    rows = duckdb_rows(duck, products)
    assert spark_rows(spark_raw, products) == rows
    at, sku, category = (products.column_names.index(n) for n in ("updated_at", "sku", "category"))
    new = {row[0]: (row[sku], row[category]) for row in rows if row[at] == changed}
    assert len(new) > BATCH_ROWS and {c for _, c in new.values()} == {"€"}
    assert new[3][0] == "SKU\\xff" and all(s.isprintable() for s, _ in new.values())
