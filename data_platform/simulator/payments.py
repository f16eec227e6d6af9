"""The payments export: CSV files whose header names the columns in a different order each time.

Each day has two export files (payments created before and after noon UTC). Like the events,
lines are numbers plus mode codes (spelled by payment_sql.py); the column order, the timestamp
suffix ('Z' or '+00:00') and an optional extra `fee` column are decided per file. Defects are a
mode (short or long row, an empty field, a mistyped value), a changed value (an amount out of
range, an order id that no order has) or an inserted line (exact duplicate, blank line).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa

from data_platform.simulator.clock import DAY_MS, day_start_ms
from data_platform.simulator.defects import (
    BLANK,
    DefectKinds,
    Lines,
    allocate,
    lay_out,
)
from data_platform.simulator.files import PlannedFile, RenderJob
from data_platform.simulator.payment_sql import EXTRA_COLUMN, PAYMENT_COLUMNS, line_sql

ORPHAN_ORDER_BASE = 900_000_000
HUGE_AMOUNT_CENTS = 987_654_321  # 9,876,543.21: far out of range, yet fits DECIMAL(10,2)
PAYMENT_DEFECTS = DefectKinds(
    names=(
        "wrong_column_count",
        "missing_value",
        "wrong_type",
        "out_of_range_amount",
        "orphan_order_id",
        "duplicate",
        "blank_line",
    ),
    hard=frozenset({"wrong_column_count", "missing_value", "wrong_type"}),
)
WRONG_TYPE_COLUMNS = (1, 2, 5)


def inject(
    rng: np.random.Generator, payments: pd.DataFrame, rate: float
) -> tuple[pd.DataFrame, np.ndarray, Lines]:
    """Apply defects: (columns per line, defect code per line, line layout)."""
    n = len(payments)
    alloc = allocate(rng, n, rate, len(PAYMENT_DEFECTS.names))
    cols = payments.assign(shape=0, miss_col=-1, bad_col=-1)
    code = PAYMENT_DEFECTS.code
    rows, variant = alloc.of(code("wrong_column_count"))
    cols.loc[rows, "shape"] = 1 + variant % 2
    rows, variant = alloc.of(code("missing_value"))
    cols.loc[rows, "miss_col"] = variant % len(PAYMENT_COLUMNS)
    rows, variant = alloc.of(code("wrong_type"))
    cols.loc[rows, "bad_col"] = np.array(WRONG_TYPE_COLUMNS)[variant % len(WRONG_TYPE_COLUMNS)]
    rows, variant = alloc.of(code("out_of_range_amount"))
    amounts = cols.loc[rows, "amount_cents"].to_numpy()
    cols.loc[rows, "amount_cents"] = np.where(variant % 2 == 0, -amounts, HUGE_AMOUNT_CENTS)
    rows, _ = alloc.of(code("orphan_order_id"))
    cols.loc[rows, "order_id"] = ORPHAN_ORDER_BASE + rng.integers(0, 1_000_000, len(rows))

    lines, line_kinds = lay_out(rng, alloc, PAYMENT_DEFECTS, n, max_shift=10)
    per_line = cols.iloc[lines.source].reset_index(drop=True)
    is_blank = lines.role == BLANK
    per_line.loc[is_blank, "shape"] = 3 + lines.source[is_blank] % 2
    return per_line, line_kinds, lines


def plan_payment_files(
    rng: np.random.Generator, seed: int, day: date, payments: pd.DataFrame, rate: float
) -> RenderJob:
    """Two export files for `day`: before and after noon, each with its own column order."""
    payments = payments.sort_values("created_ms", kind="stable").reset_index(drop=True)
    per_line, kinds, lines = inject(rng, payments, rate)
    noon = day_start_ms(day) + DAY_MS // 2
    created = payments["created_ms"].to_numpy()
    half = (created[lines.position] >= noon) if len(created) else np.zeros(0, dtype=bool)
    orders = [list(PAYMENT_COLUMNS), list(PAYMENT_COLUMNS)]
    for order in orders:
        rng.shuffle(order)
    if orders[0] == orders[1]:
        orders[1] = orders[1][1:] + orders[1][:1]
    # Schema drift: when defects are on, every other day's afternoon export gains a column.
    drift = rate > 0 and (day.toordinal() + seed) % 2 == 0
    if drift:
        orders[1].insert(int(rng.integers(0, len(orders[1]) + 1)), EXTRA_COLUMN)
    files = [
        PlannedFile(
            key=f"payments/dt={day.isoformat()}/psp-export-{day:%Y%m%d}-{part}.csv",
            source="payments",
            dt=day,
            kinds=kinds[half == bool(number)],
            defect_kinds=PAYMENT_DEFECTS,
            header=",".join(orders[number]),
            file_defects=("extra_column_file",) if drift and number == 1 else (),
        )
        for number, part in enumerate(("am", "pm"))
    ]
    lines = pa.Table.from_pandas(per_line.assign(part=half.astype(np.int64)), preserve_index=False)
    sql = line_sql([(orders[0], "Z"), (orders[1], "+00:00")])
    return RenderJob(lines=lines, sql=sql, files=files)
