"""The raw files' Pandera gates keep a verdict per day (as conservation and dead_letter_ratio do).

They gave one verdict per run: a 30-day backfill with one bad day recorded one failure without a
day, and a later run of a good day recorded a pass that hid it, from the UI and from automation.
Checked on the instance itself (the check state the UI and automation conditions read), after
real runs of the raw assets and the real gate code over landed lines. The real model passes
anything the ingestion stores, so the gate here judges raw/events with a stricter model (page
views only), which a landed file can break.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import dagster as dg
import pytest
from pandera.typing import Series

from data_platform.checks import QUALITY_CHECKS, models
from data_platform.checks.gates import GATES
from data_platform.checks.pandera_gate import pandera_check
from data_platform.partitions import DAILY_PARTITIONS
from data_platform_tests.helpers import materialize_days, put_lines
from data_platform_tests.test_dead_letter_partitions import check_statuses, run_day
from data_platform_tests.test_unreadable_files import ASSETS, T, event_lines

EVENTS = dg.AssetKey(["raw", "events"])
SCHEMA_KEY = dg.AssetCheckKey(EVENTS, "pandera_schema")
DEAD_LETTER_KEY = dg.AssetCheckKey(EVENTS, "pandera_dead_letter")
GOOD_BEFORE, BAD, GOOD_AFTER = date(2026, 1, 4), date(2026, 1, 5), date(2026, 1, 6)
PASSED, FAILED = "SUCCEEDED", "FAILED"


class PageViewsOnly(models.RawEvents):
    """Stricter than the real gate (raw keeps every event type): a landed file can fail it."""

    event_type: Series[models.Text] = models.text(isin=["page_view"])


@pytest.fixture
def strict_gate(monkeypatch) -> dg.AssetChecksDefinition:
    """raw/events' real pandera_schema gate (its key, scope and code), judging page views only."""
    # Gates name their model in checks/models.py, imported when the gate runs.
    monkeypatch.setattr(models, "PageViewsOnly", PageViewsOnly, raising=False)
    [gate] = [g for g in GATES if g.asset_key == EVENTS and g.name == SCHEMA_KEY.name]
    return pandera_check(replace(gate, model="PageViewsOnly"), T)


def land_events(resources: dict, tmp_path, day: date, name: str, teleports: int = 0) -> None:
    """30 page views, `teleports` events the strict gate refuses, and one broken line (a
    dead letter, which the real pandera_dead_letter gate judges per day too)."""
    lines = [*event_lines(f"{day}-{name}", 30), "not json"]
    lines += [line.replace("page_view", "teleport") for line in event_lines(f"{day}-t", teleports)]
    put_lines(resources["landing"], f"events/dt={day}/{name}.jsonl", lines, tmp_path)


def verdicts(result: dg.ExecuteInProcessResult, key: dg.AssetCheckKey) -> dict:
    return {
        e.partition: e for e in result.get_asset_check_evaluations() if e.asset_check_key == key
    }


def assert_only_the_middle_day_failed(
    found: dict[str | None, dg.AssetCheckEvaluation],
    model: str,
    rows: int,
    failing: int,
    rows_after: int,
) -> None:
    """The verdicts of a run of GOOD_BEFORE..GOOD_AFTER whose middle day alone breaks `model`:
    one a day, the bad day's with its own figures, the next day's with its own rows."""
    assert {day: e.passed for day, e in found.items()} == {
        str(GOOD_BEFORE): True,
        str(BAD): False,
        str(GOOD_AFTER): True,
    }
    bad = found[str(BAD)]
    assert (bad.metadata["rows_validated"].value, bad.metadata["failing_rows"].value) == (
        rows,
        failing,
    )
    assert bad.metadata["partitions"].value == str(BAD)
    assert bad.description == f"{failing} of {rows} rows break 1 rule(s) of {model} ({BAD})"
    assert found[str(GOOD_AFTER)].metadata["rows_validated"].value == rows_after


def test_a_range_run_judges_each_day_and_a_bad_day_stays_failed(
    settings, resources, tmp_path, strict_gate
):
    for day in (GOOD_BEFORE, BAD, GOOD_AFTER):
        land_events(resources, tmp_path, day, "a", teleports=4 if day == BAD else 0)
    assets = [*ASSETS, strict_gate]
    days = {str(GOOD_BEFORE): PASSED, str(BAD): FAILED, str(GOOD_AFTER): PASSED}
    with dg.instance_for_test() as instance:
        backfill = materialize_days(
            assets, resources, [GOOD_BEFORE, BAD, GOOD_AFTER], instance=instance,
            raise_on_error=False,
        )  # fmt: skip
        # Still blocking: the bad day fails the step of the whole range.
        assert not backfill.success
        assert_only_the_middle_day_failed(
            verdicts(backfill, SCHEMA_KEY), "PageViewsOnly", rows=34, failing=4, rows_after=30
        )
        assert check_statuses(instance, SCHEMA_KEY) == days
        # The real dead-letter gate: one dead letter a day, each day judged on its own.
        dead = verdicts(backfill, DEAD_LETTER_KEY)
        assert {
            day: e.metadata["rows_validated"].value for day, e in dead.items()
        } == dict.fromkeys(days, 1)
        assert check_statuses(instance, DEAD_LETTER_KEY) == dict.fromkeys(days, PASSED)

        # More files for a good day, and a run of that day: the bad day is still failed.
        land_events(resources, tmp_path, GOOD_AFTER, "b")
        later = run_day(instance, resources, GOOD_AFTER, assets)
        assert later.success
        assert {d: e.passed for d, e in verdicts(later, SCHEMA_KEY).items()} == {
            str(GOOD_AFTER): True
        }
        assert check_statuses(instance, SCHEMA_KEY) == days

        # Only a run of the bad day that passes clears it.
        land_events(resources, tmp_path, BAD, "a")  # landed again, fixed
        fixed = run_day(instance, resources, BAD, assets)
        assert fixed.success
        assert check_statuses(instance, SCHEMA_KEY) == dict.fromkeys(days, PASSED)


def test_a_day_without_a_row_passes(settings, resources, tmp_path, strict_gate):
    """Every day of the run gets a verdict, one with no file included, as for the other
    checks kept per day: a day emptied by a re-run must not keep an old failure."""
    land_events(resources, tmp_path, GOOD_BEFORE, "a")
    with dg.instance_for_test() as instance:
        result = materialize_days(
            [*ASSETS, strict_gate], resources, [GOOD_BEFORE, BAD], instance=instance
        )
        assert result.success
        assert verdicts(result, SCHEMA_KEY)[str(BAD)].metadata["rows_validated"].value == 0
        assert check_statuses(instance, SCHEMA_KEY) == {str(GOOD_BEFORE): PASSED, str(BAD): PASSED}


def test_the_gates_of_the_daily_tables_and_only_theirs_are_kept_per_day():
    """The raw files' two gates each and the partitioned facts' gates are partitioned by day
    (among DAY_PARTITIONED_CHECKS, which the scorecard does not wait on; see
    test_mart_gate_partitions.py for the facts'); the database tables' and the unpartitioned
    marts' gates keep one verdict a run."""
    gates = {
        spec.key: spec.partitions_def
        for check in QUALITY_CHECKS
        for spec in check.check_specs
        if spec.key.name.startswith("pandera_")
    }
    per_day = {key for key, partitions in gates.items() if partitions == DAILY_PARTITIONS}
    assert {key for key, partitions in gates.items() if partitions} == per_day
    assert {key.asset_key.to_user_string() + ":" + key.name for key in per_day} == {
        f"raw/{source}:{name}"
        for source in ("events", "payments")
        for name in ("pandera_schema", "pandera_dead_letter")
    } | {"marts/fct_events:pandera_schema", "marts/fct_payments:pandera_schema"}
