"""Odd inputs that must give the same marts and check verdicts on DuckDB and Spark.

Each raw row below is one a source can send and the ingestion keeps (strings padded with
Unicode spaces, non-ASCII letters in short codes, event properties with a non-numeric string
where a number is published, a published key given twice, order lines at the limits of their
types). The same raw tables are built on
both engines (copy_raw_to_spark), dbt builds the marts on each, and every table must hold the
same rows (test_dbt_spark.table_differences). The soft rule `unknown_currencies` of raw/payments
must flag the same records on both engines.
"""

from __future__ import annotations

import json
import shutil
from decimal import ROUND_HALF_UP, Decimal, localcontext

import duckdb
import pytest

from data_platform.checks.gates import ORDERS_WITH_ITEM_TOTALS
from data_platform.checks.soft_rules import soft_rules
from data_platform.checks.thresholds import QualityThresholds
from data_platform.ingestion.tables import EVENTS, PAYMENTS, SOURCE_DB_TABLES, ensure_raw_tables
from data_platform.resources.warehouse_reader import spark_sql
from data_platform_tests.test_dbt_marts import PII_TEST
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
    '{"page": "/@alice", "amount": 12.5}',  # a profile's path: no e-mail, nor with the number
    '{"channel": "\\"jane.doe\\"@example.com", "currency": "EUR"}',  # a quoted local part
]

# (payment_id, currency): a code padded with Unicode spaces, one with a ligature.
CURRENCIES = [
    ("pay1", f"{NBSP}eur"),
    ("pay2", f"usd{IDEOGRAPHIC_SPACE}"),
    ("pay3", "gbp"),
    ("pay4", "\ufb00"),  # "ﬀ"
]

# Order lines legal by type (INTEGER x DECIMAL(10,2)) whose products and sums pass DECIMAL(18,2)
# and BIGINT cents: (item id, order id, quantity, unit price). Order 4 is a credit note.
MAX_PRICE = Decimal("99999999.99")
ORDER_LINES = [
    (1, 1, 2147483647, MAX_PRICE),
    (2, 1, 2147483647, MAX_PRICE),
    (3, 2, 2147483647, MAX_PRICE),
    (4, 2, 1, Decimal("0.01")),
    (5, 3, 3, Decimal("0.05")),
    (6, 4, -2147483648, MAX_PRICE),
]
# (order id, user id, ordered at), every one completed.
ORDERS = [(1, 1, "2026-01-07 10:00"), (2, 1, "2026-01-07 11:00"), (3, 1, "2026-01-08 09:00"),
          (4, 2, "2026-01-08 12:00")]  # fmt: skip


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
        conn.executemany(
            "INSERT INTO raw.orders (id, user_id, status, ordered_at, updated_at, _extracted_at) "
            "VALUES (?, ?, 'completed', ?, TIMESTAMP '2026-01-08 13:00', TIMESTAMP '2026-01-09')",
            ORDERS,
        )
        conn.executemany(
            "INSERT INTO raw.order_items (id, order_id, product_id, quantity, unit_price, "
            "updated_at, _extracted_at) VALUES (?, ?, 1, ?, ?, TIMESTAMP '2026-01-08 13:00', "
            "TIMESTAMP '2026-01-09')",
            ORDER_LINES,
        )
    copy_raw_to_spark(
        warehouse,
        spark,
        tmp_path / "raw",
        ["users", "products", "orders", "order_items", "events", "payments"],
    )
    full = [
        "run", "--select", "+fct_events", "+fct_payments", "+customer_lifetime_value",
        "+daily_revenue",
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
        ("marts", "fct_order_items"),
        ("marts", "fct_orders"),
        ("marts", "daily_revenue"),
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
        "e6": {"page": "/@alice", "amount": 12.5},
        "e7": {"currency": "EUR"},
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


def test_money_past_bigint_cents_is_exact_on_both_engines(built, spark):  # noqa: F811
    """Each line's product, each order's and day's sum and the average order value, computed
    here in Python's decimals: the same on both engines (the tables are compared above)."""
    with localcontext() as exact:
        exact.prec = 60
        lines = {item: quantity * price for item, _, quantity, price in ORDER_LINES}
        totals = {
            order: sum(lines[i] for i, o, _, _ in ORDER_LINES if o == order) for order, *_ in ORDERS
        }
        by_day: dict[str, Decimal] = {}
        for order, _, at in ORDERS:
            by_day[at[:10]] = by_day.get(at[:10], Decimal(0)) + totals[order]
        lifetime = {1: totals[1] + totals[2] + totals[3], 2: totals[4]}
        average = {
            user: (revenue / count).quantize(Decimal("0.01"), ROUND_HALF_UP)
            for (user, revenue), count in zip(lifetime.items(), (3, 1), strict=True)
        }
    with duckdb.connect(str(built), read_only=True) as conn:
        assert (
            dict(
                conn.execute(
                    "SELECT order_item_id, line_total FROM marts.fct_order_items"
                ).fetchall()
            )
            == lines
        )
        assert (
            dict(conn.execute("SELECT order_id, order_total FROM marts.fct_orders").fetchall())
            == totals
        )
        assert {
            str(day): revenue
            for day, revenue in conn.execute(
                "SELECT revenue_date, revenue FROM marts.daily_revenue"
            ).fetchall()
        } == by_day
        assert {
            user: (revenue, mean)
            for user, revenue, mean in conn.execute(
                "SELECT user_id, lifetime_revenue, average_order_value "
                "FROM marts.customer_lifetime_value WHERE completed_orders > 0"
            ).fetchall()
        } == {user: (lifetime[user], average[user]) for user in lifetime}
        # fct_orders' gate sums the lines again: at 38 digits too, on both engines.
        gate_query = f"SELECT order_id, items_total, order_total FROM ({ORDERS_WITH_ITEM_TOTALS})"
        on_duckdb = sorted(conn.execute(gate_query).fetchall())
    on_spark = sorted(tuple(r) for r in spark.sql(spark_sql(gate_query)).collect())
    assert on_spark == on_duckdb == sorted((o, t, t) for o, t in totals.items())


def test_the_pii_test_reads_each_json_string_alone(built, spark, tmp_path):  # noqa: F811
    """`assert_no_pii_columns_in_marts_or_analytics` matched its e-mail pattern across two
    values of a document ("/@alice" and 12.5 beside it) and failed the build on both engines;
    it passes now, and still finds an address inside one value."""
    salt = "a salt for this test"
    dbt_on_duckdb(["test", "--select", PII_TEST], built, tmp_path / "duckdb-target", salt)
    dbt_on_spark(["test", "--select", PII_TEST], tmp_path / "spark-target", salt)

    leaked = tmp_path / "leaked.duckdb"
    shutil.copy(built, leaked)
    with duckdb.connect(str(leaked)) as conn:
        conn.execute(
            'UPDATE marts.fct_events SET properties = \'{"page": "/@alice", '
            '"note": "mail a.b@example.com"}\' WHERE event_id = \'e6\''
        )
    with pytest.raises(AssertionError, match=f"Failure in test {PII_TEST}"):
        dbt_on_duckdb(["test", "--select", PII_TEST], leaked, tmp_path / "leaked-target", salt)
