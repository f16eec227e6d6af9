"""Analytics: small Python assets on the marts, where pandas and a picture earn their keep."""

import base64
import io
from typing import TYPE_CHECKING

import dagster as dg

from data_platform.automation.conditions import follows_inputs
from data_platform.partitions import OWNERS, WAREHOUSE_POOL
from data_platform.resources.warehouse import Warehouse

if TYPE_CHECKING:  # pandas loads when an asset first runs, not with the Definitions
    import pandas as pd

CLV_KEY = dg.AssetKey(["marts", "customer_lifetime_value"])
DAILY_REVENUE_KEY = dg.AssetKey(["marts", "daily_revenue"])
SEGMENTS = ("Bronze", "Silver", "Gold")
# The table the asset writes, as the UI's Columns section shows it (written from a pandas frame,
# whose own column list Dagster's pandas handler stores under another name the UI does not read).
SEGMENT_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("user_id", "BIGINT", description="The customer (application user id)."),
        dg.TableColumn(
            "lifetime_revenue",
            "DOUBLE",
            description="Revenue of the customer's completed orders, from "
            "marts.customer_lifetime_value.",
        ),
        dg.TableColumn(
            "segment",
            "VARCHAR",
            description="Bronze, Silver or Gold: lifetime_revenue against the run config's "
            "silver_from and gold_from.",
        ),
    ]
)


class SegmentThresholds(dg.Config):
    """Lifetime spend (in the shop's currency) at which a customer becomes Silver, then Gold."""

    silver_from: float = 100.0
    gold_from: float = 500.0


def assign_segments(spend: "pd.Series", thresholds: SegmentThresholds) -> "pd.Series":
    """Bronze below silver_from, Gold from gold_from, Silver in between (nobody, when the two
    are equal: a shop without a middle tier)."""
    import numpy as np
    import pandas as pd

    if thresholds.silver_from > thresholds.gold_from:
        raise ValueError(
            f"silver_from ({thresholds.silver_from}) must not exceed gold_from "
            f"({thresholds.gold_from}): fix the run config of analytics/customer_segments"
        )
    amount = spend.astype(float)
    bronze, silver, gold = SEGMENTS
    tiers = np.select(
        [amount >= thresholds.gold_from, amount >= thresholds.silver_from], [gold, silver], bronze
    )
    return pd.Series(tiers, index=spend.index, dtype=str)


@dg.asset(
    key=["analytics", "customer_segments"],
    deps=[CLV_KEY],
    group_name="analytics",
    owners=OWNERS,
    kinds={"python", "pandas", "duckdb"},
    io_manager_key="warehouse_io_manager",
    pool=WAREHOUSE_POOL,
    # Cheap, and people read them in the UI: refreshed as soon as their mart changes.
    automation_condition=follows_inputs(),
    description="Customers by lifetime spend: Bronze, Silver, Gold (thresholds are run config).",
    metadata={
        "dagster/column_schema": SEGMENT_COLUMNS,
        "dagster/table_name": "analytics.customer_segments",
    },
)
def customer_segments(
    context: dg.AssetExecutionContext, config: SegmentThresholds, warehouse: Warehouse
):  # returns a pandas DataFrame; annotated, Dagster would import pandas to load the Definitions
    with warehouse.reader() as reader:
        customers = reader.frame(
            "SELECT user_id, lifetime_revenue FROM marts.customer_lifetime_value"
        )
    customers["segment"] = assign_segments(customers["lifetime_revenue"], config)
    counts = customers["segment"].value_counts().reindex(SEGMENTS, fill_value=0)
    context.add_output_metadata(
        {f"customers_{name.lower()}": int(counts[name]) for name in SEGMENTS}
        | {"dagster/row_count": len(customers)}
    )
    return customers


def revenue_chart_png(daily: "pd.DataFrame") -> bytes:
    """A bar chart of revenue per day, as PNG bytes."""
    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3), dpi=100)
    ax.bar(pd.to_datetime(daily["revenue_date"]), daily["revenue"].astype(float), color="#4f43dd")
    ax.set_title("Revenue of completed orders per day (UTC)")
    ax.set_ylabel("revenue")
    fig.autofmt_xdate()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


@dg.asset(
    key=["analytics", "daily_revenue_chart"],
    deps=[DAILY_REVENUE_KEY],
    group_name="analytics",
    owners=OWNERS,
    kinds={"python", "matplotlib"},
    pool=WAREHOUSE_POOL,
    # Cheap, and people read them in the UI: refreshed as soon as their mart changes.
    automation_condition=follows_inputs(),
    description="marts.daily_revenue as a chart, shown in the asset's metadata in the UI.",
)
def daily_revenue_chart(warehouse: Warehouse) -> dg.MaterializeResult:
    with warehouse.reader() as reader:
        daily = reader.frame(
            "SELECT revenue_date, revenue FROM marts.daily_revenue ORDER BY revenue_date"
        )
    png = base64.b64encode(revenue_chart_png(daily)).decode()
    return dg.MaterializeResult(
        metadata={
            "chart": dg.MetadataValue.md(f"![daily revenue](data:image/png;base64,{png})"),
            "days": len(daily),
            "total_revenue": float(daily["revenue"].sum()),
        }
    )


ANALYTICS_ASSETS = [customer_segments, daily_revenue_chart]
