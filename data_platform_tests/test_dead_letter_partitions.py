"""The blocking dead-letter check keeps a verdict per day (UI audit D1).

It was unpartitioned: the UI, and automation, saw its latest execution only, so a bad day that a
later good day's run passed over read as healthy, and a 30-day backfill showed one outcome.
Checked here on the instance itself (the check state the UI and automation conditions read),
after real runs of the raw assets over landed lines: a single-run range of three days with one
bad day records three verdicts, and later runs of other days leave the bad one failed until a
run of that day passes.
"""

from __future__ import annotations

from datetime import date

import dagster as dg
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionResolvedStatus as Status,
)

from data_platform.checks.dead_letter import RATIO
from data_platform.partitions import DAILY_PARTITIONS
from data_platform_tests.helpers import materialize_days, put_lines
from data_platform_tests.test_unreadable_files import ASSETS, T, event_lines

EVENTS = dg.AssetKey(["raw", "events"])
RATIO_KEY = dg.AssetCheckKey(EVENTS, RATIO)
GOOD_BEFORE, BAD, GOOD_AFTER = date(2026, 1, 4), date(2026, 1, 5), date(2026, 1, 6)


def check_statuses(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey = RATIO_KEY
) -> dict[str, str]:
    """Each day's status of a check partitioned by day (the ratio by default), as the instance
    resolves it for the UI's Partitions tab and for automation conditions."""
    [state] = instance.event_log_storage.get_asset_check_state([(key, DAILY_PARTITIONS)]).values()
    return {
        day: status.value
        for status, subset in state.subsets.items()
        for day in subset.subset_value.get_partition_keys()
    }


def land_day(resources: dict, tmp_path, day: date, good: int, broken: int, name: str) -> None:
    lines = event_lines(f"{day}-{name}", good) + ["not json"] * broken
    put_lines(resources["landing"], f"events/dt={day}/{name}.jsonl", lines, tmp_path)


def run_day(
    instance: dg.DagsterInstance, resources: dict, day: date, assets: list = ASSETS
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        resources=resources,
        partition_key=day.isoformat(),
        instance=instance,
        raise_on_error=False,
    )


def ratio_verdicts(result: dg.ExecuteInProcessResult) -> dict[str | None, bool]:
    return {
        e.partition: e.passed
        for e in result.get_asset_check_evaluations()
        if e.asset_check_key == RATIO_KEY
    }


def test_a_range_run_records_a_verdict_per_day_and_a_bad_day_stays_failed(
    settings, resources, tmp_path
):
    land_day(resources, tmp_path, GOOD_BEFORE, 100, 0, "a")
    land_day(resources, tmp_path, BAD, 60, 60, "a")  # 50% dead-lettered: ERROR
    land_day(resources, tmp_path, GOOD_AFTER, 100, 1, "a")
    days = [GOOD_BEFORE, BAD, GOOD_AFTER]
    passed, failed = Status.SUCCEEDED.value, Status.FAILED.value
    with dg.instance_for_test() as instance:
        backfill = materialize_days(
            ASSETS, resources, days, instance=instance, raise_on_error=False
        )
        # Still blocking: the bad day fails the step of the whole range.
        assert not backfill.success
        assert ratio_verdicts(backfill) == {
            str(GOOD_BEFORE): True,
            str(BAD): False,
            str(GOOD_AFTER): True,
        }
        [bad] = [
            e
            for e in backfill.get_asset_check_evaluations()
            if e.asset_check_key == RATIO_KEY and e.partition == str(BAD)
        ]
        assert (bad.metadata["records"].value, bad.metadata["rows_dead_lettered"].value) == (
            120,
            60,
        )
        assert bad.description.startswith(
            f"dead-lettered above {T.dead_letter_error_ratio:.1%} of a day's records: "
            f"{BAD}: 60 of 120 records (50.0%)"
        ), bad.description
        expected = {str(GOOD_BEFORE): passed, str(BAD): failed, str(GOOD_AFTER): passed}
        assert check_statuses(instance) == expected

        # More files for a good day, and a run of that day: the bad day is still failed.
        land_day(resources, tmp_path, GOOD_AFTER, 50, 0, "b")
        later = run_day(instance, resources, GOOD_AFTER)
        assert later.success
        assert ratio_verdicts(later) == {str(GOOD_AFTER): True}
        assert check_statuses(instance) == expected

        # Only a run of the bad day that passes clears it.
        land_day(resources, tmp_path, BAD, 120, 0, "a")  # landed again, fixed
        fixed = run_day(instance, resources, BAD)
        assert fixed.success
        assert check_statuses(instance) == dict.fromkeys(expected, passed)


def test_a_day_without_a_record_passes_rather_than_staying_unjudged(settings, resources, tmp_path):
    """Every day of the run gets a verdict, the ones with no file included: otherwise a
    range's empty days read SKIPPED, and a day emptied by a re-run kept its old failure."""
    land_day(resources, tmp_path, GOOD_BEFORE, 100, 0, "a")
    with dg.instance_for_test() as instance:
        result = materialize_days(ASSETS, resources, [GOOD_BEFORE, BAD], instance=instance)
        assert result.success
        assert check_statuses(instance) == {
            str(GOOD_BEFORE): Status.SUCCEEDED.value,
            str(BAD): Status.SUCCEEDED.value,
        }
