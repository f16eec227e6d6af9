"""The data-quality scorecard: per table, how its checks went lately and how much was rejected.

Check results live in the Dagster instance, not in the warehouse: the scorecard reads every
check's recent executions from the instance's event log and the dead letters from the
warehouse, and writes one row per table to analytics.data_quality_scorecard, shown in the UI
as a table and a chart.
"""

import base64
import io
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import dagster as dg

# Dagster 1.13 has no public API for check history; the event log storage's (what the UI's
# check history reads) takes this status filter.
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from data_platform.assets.dbt import DBT_ASSETS
from data_platform.automation.conditions import follows_inputs
from data_platform.checks import QUALITY_CHECKS
from data_platform.checks.report import markdown_table
from data_platform.checks.thresholds import QualityThresholds
from data_platform.partitions import OWNERS, WAREHOUSE_POOL
from data_platform.resources.warehouse import Warehouse
from data_platform.resources.warehouse_reader import WarehouseReader

if TYPE_CHECKING:  # pandas loads when an asset first runs, not with the Definitions
    import pandas as pd

# The tables it reads. raw.dead_letter has no step of its own, so the file assets that write it
# are deps too: that is what orders the scorecard after them in a run.
READS = [dg.AssetKey(["raw", name]) for name in ("events", "payments", "dead_letter")]
OUTCOME_COLUMNS = ["table", "check", "passed", "severity", "errored"]
# Executions read per check: far more than a week of hourly runs.
HISTORY_LIMIT = 500


def check_outcomes(
    instance: dg.DagsterInstance, keys: Iterable[dg.AssetCheckKey], since: float
) -> "pd.DataFrame":
    """One row per finished check execution since `since` (epoch seconds).

    A check that raised leaves no evaluation: its record stays PLANNED. As in the UI, a PLANNED
    record of a failed run is an execution that failed (`errored`, no severity); one of a run
    still going or that succeeded without it is not counted. Reading only the evaluated ones
    hid a check that crashed every time, and a table whose checks all crashed."""
    import pandas as pd

    rows, planned = [], []
    for key in keys:
        history = instance.event_log_storage.get_asset_check_execution_history(
            key, limit=HISTORY_LIMIT
        )
        for record in history:
            if record.create_timestamp < since:
                continue
            table = key.asset_key.to_user_string()
            if record.status == AssetCheckExecutionRecordStatus.PLANNED:
                planned.append((table, key.name, record.run_id))
            elif (evaluation := record.evaluation) is not None:
                rows.append((table, key.name, evaluation.passed, evaluation.severity.value, False))
    if planned:
        run_ids = sorted({run_id for *_, run_id in planned})
        failed_runs = {
            run.run_id
            for run in instance.get_runs(dg.RunsFilter(run_ids=run_ids))
            if run.status == dg.DagsterRunStatus.FAILURE
        }
        rows += [(t, c, False, "", True) for t, c, run_id in planned if run_id in failed_runs]
    return pd.DataFrame(rows, columns=OUTCOME_COLUMNS)


def file_volumes(reader: WarehouseReader, days: int) -> "pd.DataFrame":
    """Per file source: records and dead letters over its last `days` days of data."""
    return reader.frame(
        """
        WITH loaded AS (
            SELECT 'raw/events' AS "table", dt, count(*) AS n FROM raw.events GROUP BY dt
            UNION ALL SELECT 'raw/payments', dt, count(*) FROM raw.payments GROUP BY dt
        ), dead AS (
            SELECT 'raw/' || source AS "table", dt, count(*) AS n FROM raw.dead_letter GROUP BY ALL
        ), per_dt AS (
            SELECT "table", dt, coalesce(loaded.n, 0) AS loaded, coalesce(dead.n, 0) AS dead
            FROM loaded FULL JOIN dead USING ("table", dt)
        ), recent AS (
            SELECT *, dt > max(dt) OVER (PARTITION BY "table") - CAST(? AS INTEGER) AS is_recent
            FROM per_dt
        )
        SELECT "table", sum(loaded + dead) AS records, sum(dead) AS dead_letters
        FROM recent WHERE is_recent GROUP BY ALL
        """,
        [days],
    )


def scorecard(outcomes: "pd.DataFrame", volumes: "pd.DataFrame") -> "pd.DataFrame":
    """One row per table: checks, executions, passes, WARN / ERROR failures, executions that
    errored, dead letters."""
    import pandas as pd

    errored = outcomes["errored"].astype(bool)
    failed = outcomes[~outcomes["passed"].astype(bool) & ~errored]
    by_table = outcomes.groupby("table")
    card = pd.DataFrame(
        {
            "checks": by_table["check"].nunique(),
            "executions": by_table.size(),
            "passed": by_table["passed"].sum(),
            "failed_warn": failed[failed["severity"] == "WARN"].groupby("table").size(),
            "failed_error": failed[failed["severity"] == "ERROR"].groupby("table").size(),
            "errored": outcomes[errored].groupby("table").size(),
            "records": volumes.set_index("table")["records"],
            "dead_letters": volumes.set_index("table")["dead_letters"],
        }
    )
    counts = ["checks", "executions", "passed", "failed_warn", "failed_error", "errored"]
    card[counts] = card[counts].astype("float64").fillna(0).astype("int64")
    # Volumes exist only for the file sources: elsewhere they stay empty, not a misleading 0.
    card[["records", "dead_letters"]] = card[["records", "dead_letters"]].astype("Int64")
    card = card.rename_axis("table").reset_index()
    card["pass_rate"] = (card["passed"] / card["executions"].where(card["executions"] > 0)).round(3)
    return card.sort_values("table", ignore_index=True)


def scorecard_png(card: "pd.DataFrame") -> bytes:
    """Stacked bars per table: passed, WARN failures, ERROR failures, executions that errored."""
    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.35 * len(card) + 1.2), dpi=100)
    left = pd.Series(0, index=card.index)
    for column, colour in (
        ("passed", "#2e9e5b"),
        ("failed_warn", "#f0a020"),
        ("failed_error", "#d1343b"),
        ("errored", "#6b4fa0"),
    ):
        ax.barh(card["table"], card[column], left=left, color=colour, label=column)
        left = left + card[column]
    ax.invert_yaxis()
    ax.set_title("Asset check executions per table")
    ax.set_xlabel("check executions")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def scorecard_asset(
    thresholds: QualityThresholds, check_keys: Sequence[dg.AssetCheckKey]
) -> dg.AssetsDefinition:
    """The scorecard over `check_keys`: a run's job knows only the checks it selected, so the
    platform's checks are handed over here, when the definitions are built."""
    days = thresholds.scorecard_days

    @dg.asset(
        key=["analytics", "data_quality_scorecard"],
        deps=READS,
        group_name="analytics",
        owners=OWNERS,
        kinds={"python", "pandas", "duckdb"},
        io_manager_key="warehouse_io_manager",
        pool=WAREHOUSE_POOL,
        # Refreshed after each ingestion, like every table below raw.
        automation_condition=follows_inputs(),
        description=f"Per table: check executions of the last {days} days (passed, WARN and "
        f"ERROR failures, executions that errored) and dead letters of its last {days} days of "
        "data.",
    )
    def data_quality_scorecard(
        context: dg.AssetExecutionContext, warehouse: Warehouse
    ):  # a DataFrame, unannotated: see customer_segments
        since = time.time() - days * 86_400
        outcomes = check_outcomes(context.instance, check_keys, since)
        with warehouse.reader() as reader:
            card = scorecard(outcomes, file_volumes(reader, days))
        png = base64.b64encode(scorecard_png(card)).decode()
        context.add_output_metadata(
            {
                "scorecard": dg.MetadataValue.md(markdown_table(card)),
                "chart": dg.MetadataValue.md(f"![data quality](data:image/png;base64,{png})"),
                "check_executions": len(outcomes),
                "dagster/row_count": len(card),
            }
        )
        return card

    return data_quality_scorecard


PLATFORM_CHECK_KEYS = [key for d in [*DBT_ASSETS, *QUALITY_CHECKS] for key in d.check_keys]
SCORECARD_ASSETS = [scorecard_asset(QualityThresholds(), PLATFORM_CHECK_KEYS)]
