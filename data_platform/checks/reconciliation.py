"""Revenue reconciliation: what completed orders earned per day vs what the PSP says was paid.

Payments are attributed to the day their order was placed and counted only for completed
orders, the definition marts.daily_revenue uses. Comparing raw payment days with order days
instead would fail every day for timing alone (an order is paid today and completed tomorrow;
a refund follows days later) and teach everyone to ignore the check. What remains is what
finance asks about: completed orders without a successful payment, amounts that differ,
double charges. WARN, not blocking: each side is a faithful copy of its own system; a gap is
to investigate, not a reason to stop publishing. Amounts are compared as numbers (one price
list in the simulated shop); a multi-currency shop would convert here.
"""

from typing import TYPE_CHECKING

import dagster as dg

from data_platform.checks.report import markdown_table
from data_platform.checks.rules import within_tolerance
from data_platform.checks.thresholds import QualityThresholds
from data_platform.partitions import WAREHOUSE_POOL
from data_platform.resources.warehouse import Warehouse

if TYPE_CHECKING:  # pandas loads when a check first runs, not with the Definitions
    import pandas as pd

REVENUE_VS_PAYMENTS = """
WITH paid AS (
    SELECT orders.order_date AS revenue_date, sum(payments.amount) AS paid
    FROM marts.fct_payments AS payments
    JOIN marts.fct_orders AS orders USING (order_id)
    WHERE payments.status = 'succeeded' AND orders.status = 'completed'
    GROUP BY ALL
)
SELECT revenue_date, CAST(coalesce(revenue, 0) AS DOUBLE) AS revenue,
    CAST(coalesce(paid, 0) AS DOUBLE) AS paid
FROM marts.daily_revenue FULL JOIN paid USING (revenue_date)
ORDER BY revenue_date
"""


def compare(daily: "pd.DataFrame", tolerance: float) -> "pd.DataFrame":
    """Per day: revenue, paid, the gap and whether it is out of tolerance."""
    return daily.assign(
        revenue_date=daily["revenue_date"].dt.date,
        gap=(daily["paid"] - daily["revenue"]).round(2),
        out_of_tolerance=[
            not within_tolerance(r, p, tolerance)
            for r, p in zip(daily.revenue, daily.paid, strict=True)
        ],
    )


def revenue_reconciliation_check(t: QualityThresholds) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(["marts", "daily_revenue"]),
        name="revenue_reconciliation",
        pool=WAREHOUSE_POOL,
        additional_deps=[
            dg.AssetKey(["marts", "fct_payments"]),
            dg.AssetKey(["marts", "fct_orders"]),
        ],
        description="Per order day: completed-order revenue vs succeeded payments of those "
        f"orders, within {t.revenue_tolerance:.1%}. WARN.",
    )
    def _check(warehouse: Warehouse):
        with warehouse.reader() as reader:
            tables = ("marts.fct_payments", "marts.fct_orders")
            missing = [table for table in tables if not reader.has_table(table)]
            if missing:
                # Automation can build daily_revenue before the first payments have landed.
                return dg.AssetCheckResult(
                    passed=False,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={"missing_tables": missing},
                    description=f"nothing to reconcile against yet: {', '.join(missing)} not built",
                )
            days = compare(reader.frame(REVENUE_VS_PAYMENTS), t.revenue_tolerance)
        off = days[days["out_of_tolerance"]]
        return dg.AssetCheckResult(
            passed=off.empty,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "days_checked": len(days),
                "days_out_of_tolerance": len(off),
                "revenue": round(float(days["revenue"].sum()), 2),
                "paid": round(float(days["paid"].sum()), 2),
                "per_day": dg.MetadataValue.md(markdown_table(days)),
            },
            description=None if off.empty else f"{len(off)} day(s) where payments != revenue",
        )

    return _check
