"""Odd inputs that must give the same marts and check verdicts on DuckDB and Spark.

Each raw row below is one a source can send and the ingestion keeps (strings padded with
Unicode spaces, non-ASCII letters in short codes, event properties with a non-numeric string
where a number is published, a published key given twice). The same raw tables are built on
both engines (copy_raw_to_spark), dbt builds the marts on each, and every table must hold the
same rows (test_dbt_spark.table_differences). The soft rule `unknown_currencies` of raw/payments
must flag the same records on both engines.
"""

from __future__ import annotations

import json

import duckdb
import pytest

from data_platform.checks.soft_rules import soft_rules
from data_platform.checks.thresholds import QualityThresholds
from data_platform.ingestion.tables import EVENTS, PAYMENTS, SOURCE_DB_TABLES, ensure_raw_tables
from data_platform.resources.warehouse_reader import spark_sql
from data_platform_tests.test_dbt_spark import (  # noqa: F401 (fixtures)
    copy_raw_to_spark,
    dbt_on_duckdb,
    dbt_on_spark,
    spark,
    spark_env,
    table_differences,
)

NBSP, IDEOGRAPHIC_SPACE, EM_SPACE = "\u00a0", "\u3000", "\u2003"

# (id, email, country): padded with Unicode space separators, a ligature, a sharp s.
USERS = [
    (1, f"{NBSP}a@example.com{NBSP}", f"{NBSP}de"),
    (2, "b@example.com", "\ufb01"),  # "ﬁ" (U+FB01), e.g. pasted from a PDF: Finland?
    (3, f"{IDEOGRAPHIC_SPACE}C@EXAMPLE.COM", "ß"),
    (4, NBSP, f"FR{EM_SPACE}"),  # an e-mail of blanks only: no hash
]

# Published keys with odd values: a string that Spark's JSON reader takes for a double, and a
# published key given twice (JSON leaves its meaning open).
PROPERTIES = [
    '{"amount": "NaN", "page": "/a"}',
    '{"amount": "Infinity", "currency": "EUR"}',
    '{"amount": "-INF"}',
    '{"page": "/first", "page": "/second"}',
    '{"product_id": 1, "product_id": 2, "channel": "ads"}',
]

# (payment_id, currency): a code padded with Unicode spaces, one with a ligature.
CURRENCIES = [
    ("pay1", f"{NBSP}eur"),
    ("pay2", f"usd{IDEOGRAPHIC_SPACE}"),
    ("pay3", "gbp"),
    ("pay4", "\ufb00"),  # "ﬀ"
]


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):  # noqa: F811
    tmp_path = tmp_path_factory.mktemp("fuzz")
    warehouse, salt = tmp_path / "fuzz.duckdb", "a salt for this test"
    with duckdb.connect(str(warehouse)) as conn:
        ensure_raw_tables(conn, (*SOURCE_DB_TABLES, EVENTS, PAYMENTS))
        conn.executemany(
            "INSERT INTO raw.users (id, email, full_name, country, created_at, updated_at, "
            "deleted_at, _extracted_at) VALUES (?, ?, 'N', ?, TIMESTAMP '2026-01-01', "
            "TIMESTAMP '2026-01-01', NULL, TIMESTAMP '2026-01-02')",
            USERS,
        )
        conn.executemany(
            "INSERT INTO raw.events (event_id, user_id, event_type, occurred_at, properties, "
            "_source_file, _line_number, _loaded_at, dt) VALUES (?, 1, 'login', "
            "TIMESTAMP '2026-01-07 10:00', CAST(? AS JSON), 'events/dt=2026-01-07/p.jsonl', ?, "
            "TIMESTAMP '2026-01-08', DATE '2026-01-07')",
            [[f"e{n}", p, n] for n, p in enumerate(PROPERTIES, start=1)],
        )
        conn.executemany(
            "INSERT INTO raw.payments (payment_id, order_id, amount, currency, status, "
            "created_at, _source_file, _line_number, _loaded_at, dt) VALUES (?, 1, 10, ?, "
            "'succeeded', TIMESTAMP '2026-01-07 10:00', 'payments/dt=2026-01-07/p.csv', ?, "
            "TIMESTAMP '2026-01-08', DATE '2026-01-07')",
            [[p, c, n] for n, (p, c) in enumerate(CURRENCIES, start=2)],
        )
    copy_raw_to_spark(
        warehouse,
        spark,
        tmp_path / "raw",
        ["users", "products", "orders", "order_items", "events", "payments"],
    )
    full = [
        "run", "--select", "+fct_events", "+fct_payments", "+customer_lifetime_value",
        "--full-refresh",
    ]  # fmt: skip
    dbt_on_duckdb(full, warehouse, tmp_path / "duckdb-target", salt)
    dbt_on_spark(full, tmp_path / "spark-target", salt)
    return warehouse


@pytest.mark.parametrize(
    "schema, table",
    [
        ("snapshots", "users_history"),
        ("marts", "dim_customers"),
        ("marts", "customer_lifetime_value"),
        ("marts", "fct_payments"),
        ("marts", "fct_events"),
    ],
)
def test_odd_inputs_give_the_same_tables_on_both_engines(built, spark, schema, table):  # noqa: F811
    assert table_differences(built, spark, schema, table) == []


def test_only_numbers_and_keys_given_once_are_published(built, spark):  # noqa: F811
    """fct_events' description: `amount` is published for a JSON number only; a key given
    twice is dropped (JSON leaves its meaning open)."""
    rows = spark.sql("SELECT event_id, properties FROM marts.fct_events").collect()
    assert {r.event_id: json.loads(r.properties) for r in rows} == {
        "e1": {"page": "/a"},
        "e2": {"currency": "EUR"},
        "e3": {},
        "e4": {},
        "e5": {"channel": "ads"},
    }


def test_codes_and_e_mails_are_trimmed_of_unicode_spaces_alike(built, spark):  # noqa: F811
    rows = spark.sql(
        "SELECT user_id, country, email_hash IS NULL FROM marts.dim_customers ORDER BY 1"
    ).collect()
    assert [tuple(r) for r in rows] == [
        (1, "DE", False), (2, "\ufb01", False), (3, "ß", False), (4, "FR", True),
    ]  # fmt: skip


def test_unknown_currencies_flags_the_same_payments_on_both_engines(built, spark):  # noqa: F811
    [rule] = [r for r in soft_rules(QualityThresholds()) if r.name == "unknown_currencies"]
    query = f"SELECT payment_id FROM raw.payments WHERE {rule.breach} ORDER BY 1"
    with duckdb.connect(str(built), read_only=True) as conn:
        on_duckdb = [r[0] for r in conn.execute(query).fetchall()]
    on_spark = [r[0] for r in spark.sql(spark_sql(query)).collect()]
    assert on_spark == on_duckdb
