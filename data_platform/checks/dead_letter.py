"""Dead letters per partition, judged by two checks computed together.

- `dead_letter_ratio` (blocking, partitioned by day): ERROR when so many records of a
  partition are broken (above `dead_letter_error_ratio`) that the day's marts would be
  misleading. Each day of the run gets its own verdict, so a day that failed stays failed in
  the UI and to automation until a run of that day passes, whatever other days did since.
- `dead_letter_warning` (not blocking): WARN when a source sends noticeably broken records
  (above `dead_letter_warn_ratio`) or a file could not be read at all.

Two checks because a blocking check holds automation back on any failure, WARN included (a
failed check is failed to Dagster's automation conditions, whatever its severity), whereas a
run only stops at a blocking ERROR: as one check, a day with 2 % dead letters stopped every
automatic rebuild downstream of the source.

A file that could not be read at all is one dead letter (line_number NULL), so it weighs one
record in the ratio, however many it held. It always WARNs, naming the file and the reason: a
person must land it again. Like any dead letter it also counts in the ratio: on a thin day,
enough unreadable files ERROR too (10 of them beside 40 good records is 20%), as the day's marts
would then miss most of what was sent.
"""

from collections.abc import Mapping
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import dagster as dg

from data_platform.checks.report import day_list, days_described, markdown_table
from data_platform.checks.rules import ratio_severity
from data_platform.checks.scope import DayVerdict, Window, day_verdicts, run_days, run_window
from data_platform.checks.thresholds import QualityThresholds
from data_platform.ingestion.file_formats import FileFormat
from data_platform.partitions import DAILY_PARTITIONS, WAREHOUSE_POOL
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


def top_errors_by_day(
    reader: WarehouseReader, fmt: FileFormat, window: Window, limit: int
) -> "pd.DataFrame":
    """dt, error, records: each day's `limit` most common reasons, for its own verdict."""
    predicate, params = window.where("dt")
    counts = reader.frame(
        f"SELECT dt, error, count(*) AS records FROM raw.dead_letter "
        f"WHERE source = ? AND {predicate} GROUP BY dt, error",
        [fmt.source, *params],
    )
    counts = counts.assign(dt=counts["dt"].dt.date).sort_values(
        ["dt", "records", "error"], ascending=[True, False, True]
    )
    return counts.groupby("dt", sort=False).head(limit).reset_index(drop=True)


def unreadable_files(reader: WarehouseReader, fmt: FileFormat, window: Window) -> "pd.DataFrame":
    """dt, source_file, error of the window's files that were dead-lettered whole."""
    predicate, params = window.where("dt")
    return reader.frame(
        "SELECT dt, source_file, error FROM raw.dead_letter "
        f"WHERE source = ? AND line_number IS NULL AND {predicate} ORDER BY dt, source_file",
        [fmt.source, *params],
    )


def still_over_elsewhere(
    reader: WarehouseReader, fmt: FileFormat, window: Window, t: QualityThresholds
) -> "pd.DataFrame":
    """The days of the source's last `scorecard_days` days of data, outside `window`, whose
    dead letters are still above the ERROR ratio (judged rows, as `judge` gives them).

    The warning check is not partitioned, and the UI's check list shows its latest evaluation
    only: it names those days until they pass, in the run that would otherwise read as all
    clear. It blocks nothing; the gate keeps each day's own verdict (partitioned by day)."""
    import pandas as pd

    newest = None
    if window.first is not None:  # a run of the whole table has no day outside it
        newest = reader.frame(
            f"SELECT max(dt) AS newest FROM (SELECT max(dt) AS dt FROM {fmt.table.qualified_name} "
            "UNION ALL SELECT max(dt) FROM raw.dead_letter WHERE source = ?)",
            [fmt.source],
        )["newest"].iloc[0]
    if newest is None or pd.isna(newest):
        return pd.DataFrame(columns=["dt", "records", "dead_lettered", "ratio", "severity"])
    newest = pd.Timestamp(newest).date()
    recent = Window(newest - timedelta(days=t.scorecard_days - 1), newest)
    judged = judge(partition_counts(reader, fmt, recent), t)
    # A Series, not a list: pandas deprecates & between a Series and a list (a FutureWarning
    # in every run's log, an error in a later pandas).
    outside = judged["dt"].map(lambda day: not window.contains(day)).astype(bool)
    return judged[(judged["severity"] == dg.AssetCheckSeverity.ERROR.value) & outside]


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


RATIO, WARNING = "dead_letter_ratio", "dead_letter_warning"


def dead_letter_checks(fmt: FileFormat, t: QualityThresholds) -> dg.AssetChecksDefinition:
    asset = dg.AssetKey(["raw", fmt.source])

    @dg.multi_asset_check(
        specs=[
            ratio_spec := dg.AssetCheckSpec(
                RATIO,
                asset=asset,
                blocking=True,
                description=f"Share of records dead-lettered per partition: ERROR (blocking) "
                f"above {t.dead_letter_error_ratio:.0%}.",
                partitions_def=DAILY_PARTITIONS,
            ),
            dg.AssetCheckSpec(
                WARNING,
                asset=asset,
                description=f"Share of records dead-lettered per partition: WARN above "
                f"{t.dead_letter_warn_ratio:.1%}, or a file that could not be read at all.",
            ),
        ],
        name=f"{fmt.source}_dead_letters",
        pool=WAREHOUSE_POOL,
    )
    def _checks(context: dg.AssetCheckExecutionContext, warehouse: Warehouse):
        window = run_window(context)
        with warehouse.reader() as reader:
            judged = judge(partition_counts(reader, fmt, window), t)
            errors = top_errors(reader, fmt, window, t.failure_cases_shown)
            errors_by_day = top_errors_by_day(reader, fmt, window, t.failure_cases_shown)
            unreadable = unreadable_files(reader, fmt, window)
            elsewhere = still_over_elsewhere(reader, fmt, window, t)
        metadata = _figures(window.describe(), judged, errors, unreadable)
        noticed = judged[judged["severity"] != ""]
        verdicts = {}
        for day in run_days(window, judged["dt"]):
            on_day = judged[judged["dt"] == day]
            day_errors = errors_by_day[errors_by_day["dt"] == day].drop(columns="dt")
            too_many = on_day[on_day["severity"] == dg.AssetCheckSeverity.ERROR.value]
            verdicts[day] = DayVerdict(
                passed=too_many.empty,
                metadata=_day_metadata(day, on_day, day_errors, unreadable),
                description=(
                    _description(too_many, t.dead_letter_error_ratio, day_errors, 0, fmt.source)
                    if len(too_many)
                    else None
                ),
            )
        yield from day_verdicts(context, ratio_spec.key, verdicts)
        warned = len(noticed) or len(unreadable) or len(elsewhere)
        described = _description(
            noticed, t.dead_letter_warn_ratio, errors, len(unreadable), fmt.source
        )
        if len(elsewhere):
            days = _days_figures(elsewhere)
            described = (
                f"still above {t.dead_letter_error_ratio:.1%} outside this run, held back until "
                f"they pass: {days}; {described}"
            )
        yield dg.AssetCheckResult(
            asset_key=asset,
            check_name=WARNING,
            passed=not warned,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                **metadata,
                "partitions_flagged": day_list(noticed["dt"]),
                "days_still_over_error_ratio": day_list(elsewhere["dt"]),
            },
            description=described if warned else None,
        )

    return _checks


def _day_metadata(
    day: date, on_day: "pd.DataFrame", errors: "pd.DataFrame", unreadable: "pd.DataFrame"
) -> Mapping[str, Any]:
    """One day's verdict metadata: the run-wide check's fields, for that day alone."""
    files = unreadable[unreadable["dt"].dt.date == day]
    flagged = on_day[on_day["severity"] == dg.AssetCheckSeverity.ERROR.value]
    return {
        **_figures(day.isoformat(), on_day, errors, files),
        "partitions_flagged": day_list(flagged["dt"]),
    }


def _figures(
    partitions: str, judged: "pd.DataFrame", errors: "pd.DataFrame", unreadable: "pd.DataFrame"
) -> dict[str, Any]:
    """The figures both checks report, over the days of `judged`."""
    return {
        "partitions": partitions,
        "records": int(judged["records"].sum()),
        "rows_dead_lettered": int(judged["dead_lettered"].sum()),
        "max_ratio": float(judged["ratio"].max()) if len(judged) else 0.0,
        "per_dt": dg.MetadataValue.md(markdown_table(judged)),
        "top_errors": dg.MetadataValue.md(markdown_table(errors)),
        "files_unreadable": len(unreadable),
        "unreadable_files": dg.MetadataValue.md(markdown_table(unreadable)),
    }


def _days_figures(judged: "pd.DataFrame") -> str:
    """`judge`'s days as a description names them: `2026-01-05: 60 of 120 records (50.0%)`."""
    return days_described(
        f"{row.dt}: {row.dead_lettered:,} of {row.records:,} records ({row.ratio:.1%})"
        for row in judged.itertuples()
    )


def _description(
    flagged: "pd.DataFrame",
    threshold: float,
    errors: "pd.DataFrame",
    files_unreadable: int,
    source: str,
) -> str:
    """The failure in one line, for the UI's check and run pages: which days, how many of
    their records, above what, the most common reason, and where every record waits. It said
    "1 partition(s) above the dead-letter ratio threshold", the rest a click deeper."""
    parts = []
    if len(flagged):  # none when only days outside the run are flagged
        days = _days_figures(flagged)
        parts.append(f"dead-lettered above {threshold:.1%} of a day's records: {days}")
        if len(errors):
            parts.append(f"most common reason: {errors['error'].iloc[0]}")
    if files_unreadable:
        parts.append(f"{files_unreadable} file(s) could not be read at all: land them again")
    parts.append(f"each record and its reason: raw.dead_letter where source = '{source}'")
    return "; ".join(parts)
