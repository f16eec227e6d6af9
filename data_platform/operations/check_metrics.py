"""Asset check executions, read from the instance's check execution table at each scrape.

One GROUP BY over the table (in the index database on SQLite, the one database on PostgreSQL)
rather than one history query per check. The severity is the evaluation's own (a check may
yield WARN or ERROR depending on what it found); the table keeps it only inside the serialized
evaluation, so it is matched there, which costs no deserialization per row.
"""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import sqlalchemy as sa
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

_T = AssetCheckExecutionsTable
OUTCOMES = {"SUCCEEDED": "passed", "FAILED": "failed"}


def _severity_column() -> sa.ColumnElement:
    warn = _T.c.evaluation_event.like('%"AssetCheckSeverity.WARN"%')
    return sa.case((warn, "WARN"), else_="ERROR").label("severity")


def check_counts(instance: dg.DagsterInstance) -> dict[tuple[str, str, str, str], int]:
    """{(asset, check, outcome, severity): executions}, over evaluated executions only.

    PLANNED rows are checks a run meant to execute and has not (yet, or ever: skipped).
    """
    severity = _severity_column()
    query = (
        sa.select(_T.c.asset_key, _T.c.check_name, _T.c.execution_status, severity, sa.func.count())
        .where(_T.c.execution_status.in_(OUTCOMES))
        .group_by(_T.c.asset_key, _T.c.check_name, _T.c.execution_status, severity)
    )
    with instance.event_log_storage.index_connection() as conn:
        return {
            (dg.AssetKey.from_db_string(key).to_user_string(), check, OUTCOMES[status], sev): n
            for key, check, status, sev, n in conn.execute(query)
        }


def latest_outcomes(instance: dg.DagsterInstance) -> dict[tuple[str, str, str], bool]:
    """{(asset, check, severity): failing?} of each check's latest evaluated execution."""
    latest = (
        sa.select(sa.func.max(_T.c.id))
        .where(_T.c.execution_status.in_(OUTCOMES))
        .group_by(_T.c.asset_key, _T.c.check_name)
    )
    query = sa.select(
        _T.c.asset_key, _T.c.check_name, _T.c.execution_status, _severity_column()
    ).where(_T.c.id.in_(latest))
    with instance.event_log_storage.index_connection() as conn:
        return {
            (dg.AssetKey.from_db_string(key).to_user_string(), check, sev): status == "FAILED"
            for key, check, status, sev in conn.execute(query)
        }


def collect_checks(instance: dg.DagsterInstance) -> Iterator[Metric]:
    executions = CounterMetricFamily(
        "data_platform_asset_check_executions",
        "Evaluated asset check executions, by asset, check, outcome and the evaluation's severity.",
        labels=["asset", "check", "outcome", "severity"],
    )
    for labels, count in sorted(check_counts(instance).items()):
        executions.add_metric(list(labels), count)
    yield executions
    failing = GaugeMetricFamily(
        "data_platform_asset_check_failing",
        "1 when the check's latest evaluation failed (at that evaluation's severity), else 0.",
        labels=["asset", "check", "severity"],
    )
    for labels, is_failing in sorted(latest_outcomes(instance).items()):
        failing.add_metric(list(labels), 1 if is_failing else 0)
    yield failing
