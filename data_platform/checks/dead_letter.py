"""Dead-letter ratio per partition: WARN when a source sends noticeably broken records, ERROR
(blocking downstream) when so many are broken that the day's marts would be misleading."""

from typing import TYPE_CHECKING

import dagster as dg

from data_platform.checks.report import day_list, markdown_table
from data_platform.checks.rules import ratio_severity, worst
from data_platform.checks.scope import Window, run_window
from data_platform.checks.thresholds import QualityThresholds
from data_platform.ingestion.file_formats import FileFormat
from data_platform.partitions import WAREHOUSE_POOL
from data_platform.resources.warehouse import Warehouse

if TYPE_CHECKING:  # pandas loads when a check first runs, not with the Definitions
    import pandas as pd


def partition_counts(conn, fmt: FileFormat, window: Window) -> "pd.DataFrame":
    """dt, records (rows + dead letters), dead_lettered: for every dt of the window with data."""
    predicate, params = window.where("dt")
    return conn.execute(
        f"""
        WITH loaded AS (
            SELECT dt, count(*) AS n FROM {fmt.table.qualified_name} WHERE {predicate} GROUP BY dt
        ), dead AS (
            SELECT dt, count(*) AS n FROM raw.dead_letter
            WHERE source = ? AND {predicate} GROUP BY dt
        )
        SELECT dt, coalesce(loaded.n, 0) + coalesce(dead.n, 0) AS records,
            coalesce(dead.n, 0) AS dead_lettered
        FROM loaded FULL JOIN dead USING (dt) ORDER BY dt
        """,
        [*params, fmt.source, *params],
    ).df()


def top_errors(conn, fmt: FileFormat, window: Window, limit: int) -> "pd.DataFrame":
    predicate, params = window.where("dt")
    return conn.execute(
        f"SELECT error, count(*) AS records FROM raw.dead_letter WHERE source = ? AND {predicate} "
        "GROUP BY error ORDER BY records DESC, error LIMIT ?",
        [fmt.source, *params, limit],
    ).df()


def judge(counts: "pd.DataFrame", t: QualityThresholds) -> "pd.DataFrame":
    """Add each partition's ratio and severity (empty string when fine)."""
    severities = [
        ratio_severity(
            int(row.dead_lettered),
            int(row.records),
            t.dead_letter_warn_ratio,
            t.dead_letter_error_ratio,
            t.ratio_min_records,
        )
        for row in counts.itertuples()
    ]
    return counts.assign(
        dt=counts["dt"].dt.date,
        ratio=(counts["dead_lettered"] / counts["records"]).round(4),
        severity=[s.value if s else "" for s in severities],
    )


def dead_letter_ratio_check(fmt: FileFormat, t: QualityThresholds) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(["raw", fmt.source]),
        name="dead_letter_ratio",
        blocking=True,
        pool=WAREHOUSE_POOL,
        description=f"Share of records dead-lettered per partition: WARN above "
        f"{t.dead_letter_warn_ratio:.1%}, ERROR (blocking) above {t.dead_letter_error_ratio:.0%}.",
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: Warehouse):
        window = run_window(context)
        with warehouse.connect() as conn:
            judged = judge(partition_counts(conn, fmt, window), t)
            errors = top_errors(conn, fmt, window, t.failure_cases_shown)
        severity = worst([dg.AssetCheckSeverity(s) for s in judged["severity"] if s])
        flagged = judged[judged["severity"] != ""]
        return dg.AssetCheckResult(
            passed=severity is None,
            severity=severity or dg.AssetCheckSeverity.WARN,
            metadata={
                "partitions": window.describe(),
                "records": int(judged["records"].sum()),
                "rows_dead_lettered": int(judged["dead_lettered"].sum()),
                "max_ratio": float(judged["ratio"].max()) if len(judged) else 0.0,
                "partitions_flagged": day_list(flagged["dt"]),
                "per_dt": dg.MetadataValue.md(markdown_table(judged)),
                "top_errors": dg.MetadataValue.md(markdown_table(errors)),
            },
            description=f"{len(flagged)} partition(s) above the dead-letter ratio thresholds"
            if severity
            else None,
        )

    return _check
