"""Soft rules: records raw must keep (README.md, "Quality gates") but a person should hear
about. WARN only.

Each rule is a SQL condition over the raw table's rows; per partition of the run, the share of
rows breaking it is compared with the rule's threshold. These checks never block: the records
are valid by contract; the marts flag or filter some (orphans, unknown types and statuses,
amounts out of range), and the others (unknown currencies, far-off timestamps) are only
reported here.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from data_platform.checks.report import day_list, days_described, markdown_table
from data_platform.checks.scope import run_window
from data_platform.checks.thresholds import QualityThresholds
from data_platform.checks.vocabulary import sql_list, vocabulary
from data_platform.ingestion.tables import SOURCE_DB_TABLES
from data_platform.partitions import WAREHOUSE_POOL
from data_platform.resources.warehouse import Warehouse
from data_platform.resources.warehouse_reader import WarehouseReader

if TYPE_CHECKING:  # pandas loads when a check first runs, not with the Definitions
    import pandas as pd


@dataclass(frozen=True)
class SoftRule:
    source: str  # 'events' or 'payments': the raw table and the asset checked
    name: str
    breach: str  # SQL condition over the table (alias t), true on an offending row
    detail: str  # SQL expression that groups offenders in the metadata
    warn_above: float
    description: str
    additional_deps: tuple[dg.AssetKey, ...] = ()


def offences(reader: WarehouseReader, rule: SoftRule, predicate: str, params: list, limit: int):
    """(per-dt records / offending / ratio, the most frequent offending values)."""
    table = f"raw.{rule.source}"
    per_dt = reader.frame(
        f"SELECT dt, count(*) AS records, count(*) FILTER ({rule.breach}) AS offending "
        f"FROM {table} AS t WHERE {predicate} GROUP BY dt ORDER BY dt",
        params,
    )
    per_dt = per_dt.assign(
        dt=per_dt["dt"].dt.date,
        ratio=(per_dt["offending"] / per_dt["records"]).round(4),
    )
    top = reader.frame(
        f"SELECT {rule.detail} AS value, count(*) AS records FROM {table} AS t "
        f"WHERE {predicate} AND ({rule.breach}) GROUP BY ALL "
        f"ORDER BY records DESC, value LIMIT {int(limit)}",
        params,
    )
    return per_dt, top


def soft_rule_check(rule: SoftRule, t: QualityThresholds) -> dg.AssetChecksDefinition:
    referenced = tuple(
        table
        for table in SOURCE_DB_TABLES
        if dg.AssetKey(["raw", table.name]) in rule.additional_deps
    )

    @dg.asset_check(
        asset=dg.AssetKey(["raw", rule.source]),
        name=rule.name,
        pool=WAREHOUSE_POOL,
        additional_deps=list(rule.additional_deps),
        description=f"{rule.description} WARN above {rule.warn_above:.2%} of a partition.",
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: Warehouse):
        window = run_window(context)
        predicate, params = window.where("dt")
        with warehouse.reader() as reader:
            # Events can land before the first extraction: an app table not extracted yet is
            # empty (every id an orphan, reported), not a reason for the check to crash.
            reader.ensure_raw_tables(referenced)
            per_dt, top = offences(reader, rule, predicate, params, t.failure_cases_shown)
        flagged: pd.DataFrame = per_dt[per_dt["offending"] > rule.warn_above * per_dt["records"]]
        return dg.AssetCheckResult(
            passed=flagged.empty,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "partitions": window.describe(),
                "records": int(per_dt["records"].sum()),
                "offending": int(per_dt["offending"].sum()),
                "partitions_flagged": day_list(flagged["dt"]),
                "per_dt": dg.MetadataValue.md(markdown_table(per_dt)),
                "top_offenders": dg.MetadataValue.md(markdown_table(top)),
            },
            description=None
            if flagged.empty
            else f"above {rule.warn_above:.2%} of a day's records: "
            + days_described(
                f"{row.dt}: {row.offending:,} of {row.records:,} ({row.ratio:.2%})"
                for row in flagged.itertuples()
            ),
        )

    return _check


ASCII_LOWER = "abcdefghijklmnopqrstuvwxyz"
ASCII_UPPER = ASCII_LOWER.upper()


def soft_rules(t: QualityThresholds) -> list[SoftRule]:
    words = vocabulary()
    return [
        SoftRule(
            "events",
            "unknown_event_types",
            f"event_type NOT IN {sql_list(words.event_types)}",
            "event_type",
            t.unknown_value_warn_ratio,
            "Events of a type outside dbt var known_event_types (kept in raw, not in marts).",
        ),
        SoftRule(
            "events",
            "occurred_far_from_dt",
            f"abs(date_diff('day', dt, occurred_at::DATE)) > {t.max_days_from_dt}",
            "date_diff('day', dt, occurred_at::DATE)",
            t.far_from_dt_warn_ratio,
            f"Events whose occurred_at is more than {t.max_days_from_dt} days from their dt "
            "(a wrong device clock, or very late uploads); value = days from dt.",
        ),
        SoftRule(
            "payments",
            "unknown_statuses",
            f"status NOT IN {sql_list(words.payment_statuses)}",
            "status",
            t.unknown_value_warn_ratio,
            "Payments of a status outside dbt var known_payment_statuses.",
        ),
        SoftRule(
            "payments",
            "unknown_currencies",
            # As staging reads it (stg_payments__payments): the Unicode spaces around it
            # trimmed, a-z upper-cased (` eur` is EUR, `US Dollars` is not). Spelled out, not
            # trim()/upper(): on Spark (sqlglot) those trim only the ASCII space and map
            # other letters their own way (the ligature `ﬀ` -> FF).
            f"translate(trim(currency, '{words.space_separators}'), '{ASCII_LOWER}', '{ASCII_UPPER}') "
            f"NOT IN {sql_list(words.currencies)}",
            "currency",
            t.unknown_value_warn_ratio,
            "Payments in a currency outside dbt var known_currencies (the ISO 4217 codes the "
            "business takes): a misspelled code, or a currency nobody planned for.",
        ),
        SoftRule(
            "payments",
            "amount_out_of_range",
            f"amount NOT BETWEEN {words.payment_amount_min} AND {words.payment_amount_max}",
            "amount",
            t.out_of_range_warn_ratio,
            f"Payments outside {words.payment_amount_min:g}..{words.payment_amount_max:g} "
            "(dbt vars payment_amount_min/max).",
        ),
    ]
