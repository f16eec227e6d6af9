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
# check history reads) gives these records.
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecordStatus,
)

from data_platform.assets.dbt import DBT_ASSETS
from data_platform.assets.raw import DEAD_LETTER_KEY, RAW_FILE_ASSETS, RAW_SOURCE_TABLE_ASSETS
from data_platform.automation.conditions import reports_on_inputs
from data_platform.checks import DAY_PARTITIONED_CHECKS, QUALITY_CHECKS
from data_platform.checks.history import check_history
from data_platform.checks.report import markdown_table
from data_platform.checks.thresholds import QualityThresholds
from data_platform.partitions import OWNERS, WAREHOUSE_POOL
from data_platform.resources.warehouse import Warehouse
from data_platform.resources.warehouse_reader import WarehouseReader

if TYPE_CHECKING:  # pandas loads when an asset first runs, not with the Definitions
    import pandas as pd

# The tables it reads rows of (the file sources' volumes). raw.dead_letter has no step of its
# own: the assets that write it are deps too (they are checked), which orders it after them.
READS = [*(asset.key for asset in RAW_FILE_ASSETS), DEAD_LETTER_KEY]
OUTCOME_COLUMNS = ["table", "check", "passed", "severity", "errored", "skipped"]
# The table the asset writes (`scorecard`'s frame), for the UI's Columns section.
SCORECARD_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("table", "VARCHAR", description="The checked asset, e.g. raw/events."),
        dg.TableColumn("checks", "BIGINT", description="Distinct checks of the table."),
        dg.TableColumn(
            "executions", "BIGINT", description="Check executions in the window (not skipped)."
        ),
        dg.TableColumn("passed", "BIGINT", description="Executions that passed."),
        dg.TableColumn("failed_warn", "BIGINT", description="Executions failed with WARN."),
        dg.TableColumn("failed_error", "BIGINT", description="Executions failed with ERROR."),
        dg.TableColumn(
            "errored", "BIGINT", description="Executions whose step raised instead of judging."
        ),
        dg.TableColumn(
            "skipped", "BIGINT", description="Checks planned whose step never ran (not executions)."
        ),
        dg.TableColumn(
            "records",
            "BIGINT",
            description="Records of the window's days of data (file sources only, else empty).",
        ),
        dg.TableColumn(
            "dead_letters",
            "BIGINT",
            description="Dead letters of the window's days of data (file sources only).",
        ),
        dg.TableColumn("pass_rate", "DOUBLE", description="passed / executions (empty: none)."),
    ]
)
# Runs read per query (bounded IN lists).
RUNS_PAGE = 500


# Runs last among the steps ready with it (Dagster's default priority is 0). A check that is not
# blocking holds back no step: ready with the scorecard, it ran after it when its step sorted
# after it in the plan, and the scorecard reported that check's previous verdict. Dagster's
# pools (`duckdb`, which every check joins) also serve a waiting step of higher priority first.
LAST = {"dagster/priority": "-1"}


def platform_check_keys(
    definitions: Iterable[dg.AssetsDefinition | dg.AssetChecksDefinition],
) -> list[dg.AssetCheckKey]:
    """Every check of `definitions`: those declared with their asset (dbt tests, the raw
    source tables' checks) and the checks of their own."""
    keys = {key for definition in definitions for key in definition.check_keys}
    return sorted(keys, key=lambda k: k.to_user_string())


def started_steps(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    return {
        entry.step_key
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
        if entry.step_key
    }


def check_outcomes(
    instance: dg.DagsterInstance, keys: Iterable[dg.AssetCheckKey], since: float
) -> "pd.DataFrame":
    """One row per check record of a finished run since `since` (epoch seconds).

    A check that raised leaves no evaluation: its record stays PLANNED. A PLANNED record of a
    failed run whose check's step started is an execution that failed (`errored`, no severity:
    the check raised, or the step that was to report it did). One whose step never started
    (a step upstream failed, a blocking gate stopped the run), or of a run that finished
    without failing, did not run: `skipped`, as the UI says. Records of runs still going are
    not counted. Reading only the evaluated ones hid a check that crashed every time; counting
    every PLANNED record of a failed run as errored made one failing gate look like every check
    below it crashing."""
    import pandas as pd

    rows, planned, evaluated = [], [], set()
    for key in keys:
        table = key.asset_key.to_user_string()
        for record in check_history(instance, key, since):
            if record.status == AssetCheckExecutionRecordStatus.PLANNED:
                step = record.event.step_key if record.event else None
                planned.append((table, key.name, record.run_id, step))
            elif (evaluation := record.evaluation) is not None:
                severity = evaluation.severity.value
                rows.append((table, key.name, evaluation.passed, severity, False, False))
                evaluated.add((table, key.name, record.run_id))
    # Dagster plans an unpartitioned check of a partitioned asset once per day of its run and
    # records the evaluation apart, without a day: those days' records stay PLANNED for good,
    # and each counted as a skipped execution (errored when the run failed).
    planned = [p for p in planned if p[:3] not in evaluated]
    run_ids = sorted({run_id for _, _, run_id, _ in planned})
    runs = {}
    for start in range(0, len(run_ids), RUNS_PAGE):  # none: no query
        page = dg.RunsFilter(run_ids=run_ids[start : start + RUNS_PAGE])
        runs.update((run.run_id, run) for run in instance.get_runs(page))
    started: dict[str, set[str]] = {}
    for table, check, run_id, step in planned:
        run = runs.get(run_id)
        if run is not None and not run.is_finished:
            continue
        if run is not None and run.status == dg.DagsterRunStatus.FAILURE:
            if run_id not in started:
                started[run_id] = started_steps(instance, run_id)
            # A record from before Dagster stored the planned event names no step: as the UI.
            errored = step is None or step in started[run_id]
        else:  # succeeded or canceled without it, or the run was deleted
            errored = False
        rows.append((table, check, False, "", errored, not errored))
    return pd.DataFrame(rows, columns=OUTCOME_COLUMNS)


def file_volumes(reader: WarehouseReader, days: int) -> "pd.DataFrame":
    """Per file source: records and dead letters over its last `days` days of data."""
    return reader.frame(
        """
        WITH loaded AS (
            SELECT 'raw/events' AS "table", dt, count(*) AS n FROM raw.events GROUP BY dt
            UNION ALL SELECT 'raw/payments', dt, count(*) FROM raw.payments GROUP BY dt
        ), dead AS (
            SELECT 'raw/' || source AS "table", dt, count(*) AS n FROM raw.dead_letter
            WHERE source IN ('events', 'payments') GROUP BY ALL
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
    errored, checks skipped (planned, never ran: not executions), dead letters."""
    import pandas as pd

    errored = outcomes["errored"].astype(bool)
    skipped = outcomes["skipped"].astype(bool)
    executed = outcomes[~skipped]
    failed = outcomes[~outcomes["passed"].astype(bool) & ~errored & ~skipped]
    card = pd.DataFrame(
        {
            "checks": outcomes.groupby("table")["check"].nunique(),
            "executions": executed.groupby("table").size(),
            "passed": executed.groupby("table")["passed"].sum(),
            "failed_warn": failed[failed["severity"] == "WARN"].groupby("table").size(),
            "failed_error": failed[failed["severity"] == "ERROR"].groupby("table").size(),
            "errored": outcomes[errored].groupby("table").size(),
            "skipped": outcomes[skipped].groupby("table").size(),
            "records": volumes.set_index("table")["records"],
            "dead_letters": volumes.set_index("table")["dead_letters"],
        }
    )
    counts = ["checks", "executions", "passed", "failed_warn", "failed_error", "errored", "skipped"]
    card[counts] = card[counts].astype("float64").fillna(0).astype("int64")
    # Volumes exist only for the file sources: elsewhere they stay empty, not a misleading 0.
    card[["records", "dead_letters"]] = card[["records", "dead_letters"]].astype("Int64")
    card = card.rename_axis("table").reset_index()
    card["pass_rate"] = (card["passed"] / card["executions"].where(card["executions"] > 0)).round(3)
    return card.sort_values("table", ignore_index=True)


def scorecard_png(card: "pd.DataFrame") -> bytes:
    """Stacked bars per table: passed, WARN failures, ERROR failures, executions that errored,
    checks skipped."""
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
        ("skipped", "#b0b0b0"),
    ):
        ax.barh(card["table"], card[column], left=left, color=colour, label=column)
        left = left + card[column]
    ax.invert_yaxis()
    ax.set_title("Asset checks per table")
    ax.set_xlabel("check executions (and checks skipped)")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def scorecard_asset(
    thresholds: QualityThresholds, check_keys: Sequence[dg.AssetCheckKey]
) -> dg.AssetsDefinition:
    """The scorecard over the checks `check_keys` (a run's job knows only the checks it
    selected, so they are given), downstream of every asset they check.

    Downstream, so that it is built after them: it reads their checks' verdicts from the
    instance, so built before them in a run (its inputs were the raw file tables only), it
    reported the previous run's verdicts and, after the first build, no table below raw. Of
    its partitioned inputs it reads every day (Dagster's default mapping to an unpartitioned
    asset), as it did of raw/events."""
    days = thresholds.scorecard_days
    checked = {key.asset_key for key in check_keys}

    @dg.asset(
        key=["analytics", "data_quality_scorecard"],
        deps=sorted(checked | set(READS), key=lambda k: k.to_user_string()),
        group_name="analytics",
        owners=OWNERS,
        kinds={"python", "pandas", "duckdb"},
        io_manager_key="warehouse_io_manager",
        pool=WAREHOUSE_POOL,
        op_tags=LAST,
        # Refreshed once after each wave of updates, whatever the verdicts of the checks it
        # reports and of the raw checks kept per day: a day failed for good would hold it for
        # good, while the scorecard is where that failure shows.
        automation_condition=reports_on_inputs(
            dg.AssetSelection.assets(*READS), ignoring=DAY_PARTITIONED_CHECKS
        ),
        description=f"Per table: check executions of the last {days} days (passed, WARN and "
        "ERROR failures, executions that errored; checks skipped: their step never ran) and "
        f"dead letters of its last {days} days of data.",
        metadata={
            "dagster/column_schema": SCORECARD_COLUMNS,
            "dagster/table_name": "analytics.data_quality_scorecard",
        },
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
                "check_executions": int((~outcomes["skipped"].astype(bool)).sum()),
                "dagster/row_count": len(card),
            }
        )
        return card

    return data_quality_scorecard


# The platform's checks: the Definitions hold these and no other (test_scorecard.py).
PLATFORM_CHECKS = platform_check_keys(
    [*RAW_SOURCE_TABLE_ASSETS, *RAW_FILE_ASSETS, *DBT_ASSETS, *QUALITY_CHECKS]
)
SCORECARD_ASSETS = [scorecard_asset(QualityThresholds(), PLATFORM_CHECKS)]
