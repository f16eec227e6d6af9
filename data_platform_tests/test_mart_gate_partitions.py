"""The partitioned facts' Pandera gates keep a verdict per day, as the raw files' gates do.

They gave one verdict per run: a 30-day backfill of the facts with one bad day recorded one
failure without a day, and a later run of a good day recorded a pass that hid it, from the UI
and from automation (marts/daily_active_users, which reads the whole fact, was let through).
Checked on the instance itself (the check state the UI and automation conditions read), after
real runs of raw/events and of the dbt facts' step (one dbt invocation over the range) with
the real gate code over what dbt wrote. The real model passes anything the dbt model writes,
so the gate here judges marts/fct_events with a stricter model (page views only), which a known
event type that dbt keeps can break.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import dagster as dg
import duckdb
import pytest
from pandera.typing import Series

from data_platform.assets.dbt import DBT_ASSETS
from data_platform.assets.raw import DEAD_LETTER_SPEC, RAW_FILE_ASSETS
from data_platform.assets.scorecard import check_outcomes
from data_platform.checks import models
from data_platform.checks.gates import GATES
from data_platform.checks.pandera_gate import pandera_check
from data_platform_tests.helpers import materialize_days, put_lines
from data_platform_tests.test_dead_letter_partitions import check_statuses
from data_platform_tests.test_gate_partitions import (
    BAD,
    GOOD_AFTER,
    GOOD_BEFORE,
    assert_only_the_middle_day_failed,
)
from data_platform_tests.test_unreadable_files import T, event_lines

EVENTS = dg.AssetKey(["raw", "events"])
STAGING = dg.AssetKey(["staging", "stg_events__events"])
FACT = dg.AssetKey(["marts", "fct_events"])
GATE_KEY = dg.AssetCheckKey(FACT, "pandera_schema")
DAYS = [GOOD_BEFORE, BAD, GOOD_AFTER]
PASSED, FAILED = "SUCCEEDED", "FAILED"


class FactPageViewsOnly(models.FctEvents):
    """Stricter than the real gate (the fact keeps every known event type): a day of logins,
    which dbt builds without complaint, fails it."""

    event_type: Series[models.Text] = models.text(isin=["page_view"])


@pytest.fixture
def strict_gate(monkeypatch) -> dg.AssetChecksDefinition:
    """marts/fct_events' real pandera_schema gate (its key, scope and code), judging page
    views only."""
    # Gates name their model in checks/models.py, imported when the gate runs.
    monkeypatch.setattr(models, "FactPageViewsOnly", FactPageViewsOnly, raising=False)
    [gate] = [g for g in GATES if g.asset_key == FACT and g.name == GATE_KEY.name]
    return pandera_check(replace(gate, model="FactPageViewsOnly"), T)


@pytest.fixture
def customers(settings) -> None:
    """marts.dim_customers, the one table outside the facts' step that fct_events reads (its
    orphan flag), put in place by hand: the core dbt layer that builds it would add a dbt step,
    and the database extraction its sources need, to a test about the facts' gate, which never
    reads it."""
    settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.warehouse)) as conn:
        conn.execute("CREATE SCHEMA marts")
        conn.execute("CREATE TABLE marts.dim_customers AS SELECT range AS user_id FROM range(50)")


def land_events(resources: dict, tmp_path, day: date, name: str, logins: int = 0) -> None:
    """20 page views, and `logins` logins (a known event type, kept by the fact, which the
    strict gate refuses)."""
    lines = event_lines(f"{day}-{name}", 20)
    lines += [line.replace("page_view", "login") for line in event_lines(f"{day}-l", logins)]
    put_lines(resources["landing"], f"events/dt={day}/{name}.jsonl", lines, tmp_path)


def run_facts(
    resources: dict, gate: dg.AssetChecksDefinition, days: list[date], instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    """One run of raw/events, its staging view and fct_events over `days` (the facts' dbt step:
    one invocation over the range), with the gate."""
    [events] = [a for a in RAW_FILE_ASSETS if EVENTS in a.keys]
    return materialize_days(
        [events, DEAD_LETTER_SPEC, *DBT_ASSETS, gate],
        resources,
        days,
        selection=dg.AssetSelection.assets(EVENTS, STAGING, FACT) | dg.AssetSelection.checks(gate),
        instance=instance,
        raise_on_error=False,
    )


def verdicts(result: dg.ExecuteInProcessResult) -> dict[str | None, dg.AssetCheckEvaluation]:
    return {
        e.partition: e
        for e in result.get_asset_check_evaluations()
        if e.asset_check_key == GATE_KEY
    }


def test_a_range_run_of_the_facts_judges_each_day_and_a_bad_day_stays_failed(
    settings, resources, tmp_path, strict_gate, customers
):
    for day in DAYS:
        land_events(resources, tmp_path, day, "a", logins=3 if day == BAD else 0)
    days = {str(GOOD_BEFORE): PASSED, str(BAD): FAILED, str(GOOD_AFTER): PASSED}
    with dg.instance_for_test() as instance:
        backfill = run_facts(resources, strict_gate, DAYS, instance)
        # Still blocking: the bad day fails the gate's step, and with it the range.
        assert not backfill.success
        found = verdicts(backfill)
        assert_only_the_middle_day_failed(
            found, "FactPageViewsOnly", rows=23, failing=3, rows_after=20
        )
        # Each verdict is about its own day's materialization, the one the facts' step wrote.
        written = {
            record.partition_key: record.storage_id
            for record in instance.fetch_materializations(FACT, limit=10).records
            if record.run_id == backfill.run_id
        }
        assert sorted(written) == sorted(days)
        assert {
            day: e.target_materialization_data.storage_id for day, e in found.items()
        } == written
        assert check_statuses(instance, GATE_KEY) == days

        # More events for a good day, and a run of that day: the bad day is still failed.
        land_events(resources, tmp_path, GOOD_AFTER, "b")
        later = run_facts(resources, strict_gate, [GOOD_AFTER], instance)
        assert later.success
        assert {d: e.passed for d, e in verdicts(later).items()} == {str(GOOD_AFTER): True}
        assert verdicts(later)[str(GOOD_AFTER)].metadata["rows_validated"].value == 40
        assert check_statuses(instance, GATE_KEY) == days

        # Only a run of the bad day that passes clears it.
        land_events(resources, tmp_path, BAD, "a")  # landed again, without the logins
        fixed = run_facts(resources, strict_gate, [BAD], instance)
        assert fixed.success
        assert check_statuses(instance, GATE_KEY) == dict.fromkeys(days, PASSED)

        # The scorecard counts a verdict per day: five executions, the bad day's one failed.
        outcomes = check_outcomes(instance, [GATE_KEY], since=0)
        assert len(outcomes) == 5
        assert outcomes[["passed", "severity", "errored", "skipped"]].value_counts().to_dict() == {
            (True, "ERROR", False, False): 4,
            (False, "ERROR", False, False): 1,
        }
