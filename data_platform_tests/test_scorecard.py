"""The data-quality scorecard against a real Dagster instance: which checks it reads, how it
tells a check that crashed from one that never ran, and how far back it reads."""

from __future__ import annotations

import math
import time
from collections import Counter
from datetime import date

import dagster as dg
import duckdb
import pandas as pd

from data_platform.assets.dbt import DBT_ASSETS
from data_platform.assets.raw import DEAD_LETTER_SPEC, RAW_FILE_ASSETS, RAW_SOURCE_TABLE_ASSETS
from data_platform.assets.scorecard import (
    PLATFORM_CHECKS,
    SCORECARD_ASSETS,
    SCORECARD_COLUMNS,
    check_outcomes,
    scorecard,
)
from data_platform.checks import QUALITY_CHECKS, history
from data_platform.simulator import SimulationConfig, simulate
from data_platform_tests.helpers import materialize_days, query

NO_VOLUMES = pd.DataFrame(columns=["table", "records", "dead_letters"])


def stand_in(check_key: dg.AssetCheckKey, passed: bool) -> dg.AssetsDefinition:
    """An asset with `check_key`'s asset key and check, whose check `passed` or WARNs."""

    @dg.asset(
        key=check_key.asset_key,
        check_specs=[dg.AssetCheckSpec(check_key.name, asset=check_key.asset_key)],
    )
    def table():
        yield dg.Output(1)
        yield dg.AssetCheckResult(
            check_name=check_key.name, passed=passed, severity=dg.AssetCheckSeverity.WARN
        )

    return table


def test_the_scorecard_reads_the_checks_of_the_raw_source_tables(settings, resources):
    """The scorecard's keys were DBT_ASSETS' and QUALITY_CHECKS': the `unversioned_changes`
    checks declared on the raw source-table assets (the WARNs the README says to watch) never
    showed. Here each runs twice, on a real instance, and the scorecard asset counts them."""
    source_checks = [key for asset in RAW_SOURCE_TABLE_ASSETS for key in asset.check_keys]
    assert {key.name for key in source_checks} == {"unversioned_changes", "dead_letters"}
    assert len(source_checks) == 8
    instance = dg.DagsterInstance.ephemeral()
    expected: dict[str, tuple[int, ...]] = {}
    for n, key in enumerate(source_checks):
        passed = n % 3 == 0  # uneven: some tables fail both checks, some one
        for _ in range(2):
            assert dg.materialize([stand_in(key, passed)], instance=instance).success
        table = key.asset_key.to_user_string()
        runs = (2, 2 if passed else 0, 0 if passed else 2)  # executions, passed, failed_warn
        expected[table] = tuple(map(sum, zip(expected.get(table, (0, 0, 0)), runs, strict=True)))
    empty_volume_tables(settings)
    with duckdb.connect(str(settings.warehouse)) as conn:
        # An app row's dead letter: its table has no records per day to weigh it against.
        conn.execute("INSERT INTO raw.dead_letter VALUES ('users', DATE '2026-01-05')")

    assert dg.materialize(SCORECARD_ASSETS, resources=resources, instance=instance).success
    stored = query(
        settings.warehouse,
        'SELECT "table", executions, passed, failed_warn FROM analytics.data_quality_scorecard',
    )
    assert {table: tuple(counts) for table, *counts in stored} == expected
    volumes = "SELECT DISTINCT records, dead_letters FROM analytics.data_quality_scorecard"
    assert query(settings.warehouse, volumes) == [(None, None)]
    # The table holds the columns the asset declares to the UI, of their types.
    assert stored_columns(settings.warehouse, "data_quality_scorecard") == [
        (c.name, c.type) for c in SCORECARD_COLUMNS.columns
    ]


def empty_volume_tables(settings) -> None:
    """The warehouse tables the scorecard reads volumes from, empty."""
    settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.warehouse)) as conn:
        conn.execute("CREATE SCHEMA raw")
        conn.execute("CREATE TABLE raw.events (dt DATE)")
        conn.execute("CREATE TABLE raw.payments (dt DATE)")
        conn.execute("CREATE TABLE raw.dead_letter (source VARCHAR, dt DATE)")


def test_the_scorecard_runs_after_the_checks_no_asset_waits_for(settings, resources):
    """A check that is not blocking holds back no step: the scorecard, ready at the same time,
    ran first in plan order (here, its step's name sorts first) and reported the check's
    previous verdicts. It runs last among the steps ready with it, after every asset it reports
    on: raw/users and its schema_drift check here, in one run with it."""
    users = dg.AssetKey(["raw", "users"])

    @dg.asset(key=users)
    def stand_in_users() -> None:
        pass

    @dg.asset_check(asset=users, name="schema_drift")
    def drifted() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN)

    assert drifted.check_key in PLATFORM_CHECKS
    empty_volume_tables(settings)
    result = dg.materialize(
        [stand_in_users, drifted, *SCORECARD_ASSETS],
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
    )
    started = [e.step_key for e in result.all_events if e.event_type.value == "STEP_START"]
    assert started[-1] == "analytics__data_quality_scorecard", started
    stored = query(
        settings.warehouse,
        'SELECT "table", executions, failed_warn FROM analytics.data_quality_scorecard',
    )
    assert stored == [("raw/users", 1, 1)]


def test_the_scorecard_reports_every_check_of_the_definitions_and_follows_their_assets():
    """Its checks are listed where it is defined (it must follow their assets): the list is
    the Definitions' every check (one kept by hand missed the raw source tables' checks)."""
    from data_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    assert set(PLATFORM_CHECKS) == graph.asset_check_keys
    inputs = graph.get(SCORECARD_ASSETS[0].key).parent_keys
    assert inputs >= {key.asset_key for key in PLATFORM_CHECKS}


def test_after_a_whole_graph_run_the_scorecard_reports_every_checked_asset(settings, resources):
    """Built before the layers below raw in a run, the scorecard listed the raw tables only
    after a first build of the platform (and raw/events without the check that reads
    raw/users). Built last, it holds every asset with a check, each with exactly the check
    executions of that run, counted here from the run's own events."""
    days = [date(2026, 1, 3), date(2026, 1, 4)]
    simulate(
        SimulationConfig(seed=7, days=2, end_date=days[-1], users=100, events_per_day=200),
        resources["landing"],
        settings.source_db_url,
    )
    assets = [
        *RAW_SOURCE_TABLE_ASSETS,
        *RAW_FILE_ASSETS,
        DEAD_LETTER_SPEC,
        *DBT_ASSETS,
        *SCORECARD_ASSETS,
        *QUALITY_CHECKS,
    ]
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_days(assets, resources, days, instance=instance)
    executions = Counter(e.asset_key.to_user_string() for e in result.get_asset_check_evaluations())
    checked = {key.asset_key.to_user_string() for key in PLATFORM_CHECKS}
    assert set(executions) == checked and len(checked) == 24
    stored = query(
        settings.warehouse, 'SELECT "table", executions FROM analytics.data_quality_scorecard'
    )
    assert dict(stored) == executions


def stored_columns(warehouse, table: str) -> list[tuple[str, str]]:
    return [
        tuple(row)
        for row in query(
            warehouse,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'analytics' AND table_name = ? ORDER BY ordinal_position",
            [table],
        )
    ]


def test_a_check_that_never_ran_is_skipped_not_errored():
    """A PLANNED record of a failed run counted as errored, also when the check's step never
    started because a step upstream failed: one failing gate made every downstream check look
    crashed. Errored: its step started (a check that raised, an asset whose inline check did not
    come); skipped: it did not."""

    @dg.asset
    def up() -> int:
        raise RuntimeError("upstream breaks")

    @dg.asset(deps=[up])
    def down() -> int:
        return 1

    @dg.asset_check(asset=down)
    def down_rows() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)

    @dg.asset
    def other() -> int:
        return 1

    @dg.asset_check(asset=other)
    def crashes() -> dg.AssetCheckResult:
        raise RuntimeError("a bug in the check")

    @dg.asset(check_specs=[dg.AssetCheckSpec("inline", asset="boom")])
    def boom():
        raise RuntimeError("the step of an inline check breaks")

    instance = dg.DagsterInstance.ephemeral()
    for _ in range(2):
        result = dg.materialize(
            [up, down, down_rows, other, crashes, boom], instance=instance, raise_on_error=False
        )
        assert not result.success
    keys = [down_rows.check_key, crashes.check_key, *boom.check_keys]
    outcomes = check_outcomes(instance, keys, since=0)
    errored = outcomes[outcomes["errored"].astype(bool)]
    assert sorted(errored["check"]) == ["crashes", "crashes", "inline", "inline"]
    skipped = outcomes[outcomes["skipped"].astype(bool)]
    assert sorted(skipped["check"]) == ["down_rows", "down_rows"]
    assert len(outcomes) == 6
    card = scorecard(outcomes, NO_VOLUMES).set_index("table")
    assert card.loc["down", ["executions", "errored", "skipped"]].tolist() == [0, 0, 2]
    assert math.isnan(card.loc["down", "pass_rate"])
    assert card.loc["other", ["executions", "errored", "skipped"]].tolist() == [2, 2, 0]
    assert card.loc["boom", ["executions", "errored", "skipped"]].tolist() == [2, 2, 0]


def test_history_is_read_page_by_page_back_to_the_window_start(monkeypatch):
    """Executions were read with one limit and never paged: a check run more often than that in
    the window (sensor-driven runs) was undercounted, silently. Pages of 3 here, 7 executions in
    the window, 2 before it."""
    monkeypatch.setattr(history, "PAGE", 3)

    @dg.asset
    def thing() -> int:
        return 1

    @dg.asset_check(asset=thing)
    def odd_runs_pass(context) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=context.run.tags["n"] in {"1", "3", "5"})

    instance = dg.DagsterInstance.ephemeral()

    def run(n: int) -> None:
        assert dg.materialize([thing, odd_runs_pass], instance=instance, tags={"n": str(n)})

    for n in range(2):
        run(n)
    # Records are stamped to the second: the window opens at a second after the old ones.
    time.sleep(1.5)
    since = math.floor(time.time())
    for n in range(7):
        run(n)
    outcomes = check_outcomes(instance, [odd_runs_pass.check_key], since=since)
    assert len(outcomes) == 7
    assert int(outcomes["passed"].sum()) == 3
    assert len(check_outcomes(instance, [odd_runs_pass.check_key], since=0)) == 9


def test_a_check_of_a_partitioned_asset_counts_once_per_run_not_once_per_day():
    """Dagster plans an unpartitioned check of a partitioned asset once per day of the run, and
    records its evaluation apart, without a day: the days' PLANNED records stay PLANNED for good,
    and the scorecard counted each as a skipped execution (errored when the run failed)."""
    days = dg.DailyPartitionsDefinition(start_date="2026-01-01")

    @dg.asset(
        partitions_def=days,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[dg.AssetCheckSpec("whole_table", asset="daily")],
    )
    def daily():
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(check_name="whole_table", passed=False)

    instance = dg.DagsterInstance.ephemeral()
    three_days = {
        "dagster/asset_partition_range_start": "2026-01-01",
        "dagster/asset_partition_range_end": "2026-01-03",
    }
    assert dg.materialize([daily], instance=instance, tags=three_days).success
    outcomes = check_outcomes(instance, daily.check_keys, since=0)
    assert outcomes[["passed", "skipped", "errored"]].astype(bool).values.tolist() == [
        [False, False, False]
    ]
