"""DuckDB SQL that spells payment columns as one CSV file's rows, in that file's column order.

Mode codes (set in payments.py): shape 0 row, 1 short (its last field missing), 2 long (an
extra field), 3 empty line, 4 whitespace line; miss_col / bad_col: the index in
PAYMENT_COLUMNS of the field left empty / given a value of the wrong type (order_id 'x12',
amount '12,3a' (quoted, it holds the delimiter), created_at 'yesterday').
"""

from __future__ import annotations

from data_platform.simulator.orders import CURRENCIES, PAYMENT_STATUSES
from data_platform.simulator.sql_text import decimal_text, sql_list

PAYMENT_COLUMNS = ("payment_id", "order_id", "amount", "currency", "status", "created_at")
EXTRA_COLUMN = "fee"


def _field(name: str, ts_suffix: str) -> str:
    """The expression of one column, honouring the missing-value and wrong-type modes."""
    expressions = {
        "payment_id": "'pay_' || printf('%012x%012x', pid_a & 281474976710655, "
        "pid_b & 281474976710655)",
        "order_id": "CASE WHEN bad_col = 1 THEN 'x' ELSE '' END || order_id::VARCHAR",
        "amount": f"CASE WHEN bad_col = 2 THEN '\"12,3a\"' ELSE {decimal_text('amount_cents')} END",
        "currency": f"{sql_list(CURRENCIES)}[currency + 1]",
        "status": f"{sql_list(PAYMENT_STATUSES)}[status + 1]",
        "created_at": "CASE WHEN bad_col = 5 THEN 'yesterday' ELSE strftime(make_timestamp("
        f"created_ms * 1000), '%Y-%m-%dT%H:%M:%S') || '{ts_suffix}' END",
        EXTRA_COLUMN: decimal_text("(abs(amount_cents) * 29 // 1000 + 25)"),
    }
    if name == EXTRA_COLUMN:
        return expressions[name]
    return (
        f"CASE WHEN miss_col = {PAYMENT_COLUMNS.index(name)} THEN '' ELSE {expressions[name]} END"
    )


def _row(columns: list[str], ts_suffix: str) -> str:
    """One file's row spelling: shape decides between the row and its broken variants."""
    fields = [_field(name, ts_suffix) for name in columns]
    row = f"concat_ws(',', {', '.join(fields)})"
    short = f"concat_ws(',', {', '.join(fields[:-1])})"
    return (
        f"CASE shape WHEN 0 THEN {row} WHEN 1 THEN {short} "
        f"WHEN 2 THEN {row} || ',unexpected' WHEN 3 THEN '' ELSE '  ' END"
    )


def line_sql(layouts: list[tuple[list[str], str]]) -> str:
    """The SELECT that spells the rows of several files: column `part` picks each row's layout.

    A layout is (column order, timestamp suffix); one query for all of a day's export files,
    because a query's fixed cost is larger than rendering a small file.
    """
    cases = " ".join(
        f"WHEN {number} THEN {_row(columns, suffix)}"
        for number, (columns, suffix) in enumerate(layouts)
    )
    return f"SELECT CASE part {cases} END || chr(10) AS line FROM lines"
