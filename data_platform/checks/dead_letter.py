"""Dead-letter ratio per partition: WARN when a source sends noticeably broken records, ERROR
(blocking downstream) when so many are broken that the day's marts would be misleading.

A file that could not be read at all is one dead letter (line_number NULL), so it weighs one
record in the ratio, however many it held. It always WARNs, naming the file and the reason: a
person must land it again. Like any dead letter it also counts in the ratio: on a thin day,
enough unreadable files ERROR too (10 of them beside 40 good records is 20%), as the day's marts
would then miss most of what was sent.
"""

from typing import TYPE_CHECKING

import dagster as dg

from data_platform.checks.report import day_list, markdown_table
from data_platform.checks.rules import ratio_severity, worst
from data_platform.checks.scope import Window, run_window
from data_platform.checks.thresholds import QualityThresholds
from data_platform.ingestion.file_formats import FileFormat
from data_platform.partitions import WAREHOUSE_POOL
from data_platform.resources.warehouse import Warehouse
from data_platform.resources.warehouse_reader import WarehouseReader

if TYPE_CHECKING:  # pandas loads when a check first runs, not with the Definitions
    import pandas as pd


def partition_counts(reader: WarehouseReader, fmt: FileFormat, window: Window) -> "pd.DataFrame":
    """dt, records (rows + dead letters), dead_lettered: for every dt of the window with data."""
    predicate, params = window.where("dt")
    return reader.frame(
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
    )


def top_errors(
    reader: WarehouseReader, fmt: FileFormat, window: Window, limit: int
) -> "pd.DataFrame":
    predicate, params = window.where("dt")
    return reader.frame(
        f"SELECT error, count(*) AS records FROM raw.dead_letter WHERE source = ? AND {predicate} "
        f"GROUP BY error ORDER BY records DESC, error LIMIT {int(limit)}",
        [fmt.source, *params],
    )


def unreadable_files(reader: WarehouseReader, fmt: FileFormat, window: Window) -> "pd.DataFrame":
    """dt, source_file, error of the window's files that were dead-lettered whole."""
    predicate, params = window.where("dt")
    return reader.frame(
        "SELECT dt, source_file, error FROM raw.dead_letter "
        f"WHERE source = ? AND line_number IS NULL AND {predicate} ORDER BY dt, source_file",
        [fmt.source, *params],
    )


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
        with warehouse.reader() as reader:
            judged = judge(partition_counts(reader, fmt, window), t)
            errors = top_errors(reader, fmt, window, t.failure_cases_shown)
            unreadable = unreadable_files(reader, fmt, window)
        severity = worst(
            [dg.AssetCheckSeverity(s) for s in judged["severity"] if s]
            + ([dg.AssetCheckSeverity.WARN] if len(unreadable) else [])
        )
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
                "files_unreadable": len(unreadable),
                "unreadable_files": dg.MetadataValue.md(markdown_table(unreadable)),
            },
            description=_description(len(flagged), len(unreadable)) if severity else None,
        )

    return _check


def _description(partitions_flagged: int, files_unreadable: int) -> str:
    parts = []
    if partitions_flagged:
        parts.append(f"{partitions_flagged} partition(s) above the dead-letter ratio thresholds")
    if files_unreadable:
        parts.append(f"{files_unreadable} file(s) could not be read at all: land them again")
    return "; ".join(parts)
