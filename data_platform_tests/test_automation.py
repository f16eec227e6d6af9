"""Declarative automation on the real asset graph: the marts follow landed partitions, in order,
and nothing downstream of a failed blocking check is ever requested.

The dbt models, views and Python assets are the platform's own (their conditions come from the
translator); raw/events is a stand-in with the same key and partitions and two blocking checks
whose verdicts each test chooses: one judging the run as a whole (as the Pandera gates of the
unpartitioned tables do) and one keeping a verdict per day (as every blocking check of
raw/events does: its Pandera gates, conservation and the dead-letter ratio). Requested assets
are "run" by recording their materializations, so no dbt build is needed: what is under test is
what gets requested.
"""

import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationPlanned,
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.events.log import EventLogEntry
from dagster._core.utils import make_new_run_id

from data_platform.assets.analytics import ANALYTICS_ASSETS
from data_platform.assets.dbt import DBT_ASSETS
from data_platform.assets.raw import DEAD_LETTER_SPEC, RAW_FILE_ASSETS, RAW_SOURCE_TABLE_ASSETS
from data_platform.assets.scorecard import SCORECARD_ASSETS
from data_platform.automation.conditions import AUTOMATION_TAG
from data_platform.automation.landing_sensor import landing_zone_sensor
from data_platform.checks import QUALITY_CHECKS
from data_platform.checks.dead_letter import RATIO as DEAD_LETTER_RATIO
from data_platform.partitions import DAILY_PARTITIONS, SINGLE_RUN_BACKFILL
from data_platform.resources.build import build_resources
from data_platform.settings import load_settings
from data_platform_tests.helpers import materialize_days, put_lines

EVENTS = dg.AssetKey(["raw", "events"])
STG_EVENTS = "staging/stg_events__events"
FCT_EVENTS = "marts/fct_events"
DAU = "marts/daily_active_users"
FACT_GATES = [
    dg.AssetCheckKey(dg.AssetKey(["marts", fact]), "pandera_schema")
    for fact in ("fct_events", "fct_payments")
]
DB_TABLES = ["raw/users", "raw/products", "raw/orders", "raw/order_items"]
RESOURCE_KEYS = (
    "warehouse",
    "warehouse_io_manager",
    "landing",
    "source_database",
    "privacy",
    "dbt",
)


ROWS_ARE_VALID = "rows_are_valid"
SCORECARD = "analytics/data_quality_scorecard"


class Verdict(dg.Config):
    passes: bool = True  # the check of the whole run
    day_passes: bool = True  # the check kept per day
    judged: bool = True  # False: the step raises once the day is written, before any verdict
    written: bool = True  # False: the step raises before writing the day


@dg.asset(
    key=EVENTS,
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=SINGLE_RUN_BACKFILL,
    check_specs=[
        dg.AssetCheckSpec(ROWS_ARE_VALID, asset=EVENTS, blocking=True),
        dg.AssetCheckSpec(
            DEAD_LETTER_RATIO, asset=EVENTS, blocking=True, partitions_def=DAILY_PARTITIONS
        ),
    ],
)
def stand_in_raw_events(config: Verdict):
    if not config.written:
        raise RuntimeError("the day could not be read")
    yield dg.MaterializeResult()
    if not config.judged:
        raise RuntimeError("the checks raised instead of judging the day")
    yield dg.AssetCheckResult(check_name=ROWS_ARE_VALID, passed=config.passes)
    yield dg.AssetCheckResult(check_name=DEAD_LETTER_RATIO, passed=config.day_passes)


def platform_defs(
    raw_events: dg.AssetsDefinition, resources: dict, extra: tuple = ()
) -> dg.Definitions:
    return dg.Definitions(
        assets=[
            raw_events,
            RAW_FILE_ASSETS[1],
            *RAW_SOURCE_TABLE_ASSETS,
            DEAD_LETTER_SPEC,
            *DBT_ASSETS,
            *ANALYTICS_ASSETS,
            *extra,
        ],
        sensors=[landing_zone_sensor],
        resources=resources,
    )


@pytest.fixture(scope="module")
def defs(tmp_path_factory) -> dg.Definitions:
    home = tmp_path_factory.mktemp("home")
    return platform_defs(
        stand_in_raw_events, build_resources(load_settings({"DATA_PLATFORM_HOME": str(home)}))
    )


@pytest.fixture(scope="module")
def gated_defs(tmp_path_factory) -> dg.Definitions:
    """The platform's graph plus the partitioned facts' real Pandera gates (kept per day), whose
    verdicts each test reports (kept out of `defs`, as the scorecard is)."""
    home = tmp_path_factory.mktemp("home")
    resources = build_resources(load_settings({"DATA_PLATFORM_HOME": str(home)}))
    gates = [c for c in QUALITY_CHECKS if any(k in FACT_GATES for k in c.check_keys)]
    assert len(gates) == len(FACT_GATES)
    return platform_defs(stand_in_raw_events, resources, extra=tuple(gates))


@pytest.fixture(scope="module")
def scorecard_defs(tmp_path_factory) -> dg.Definitions:
    """The platform's graph plus the scorecard, which reads raw/events directly (kept out of
    `defs`: it would join what every other test sees requested)."""
    home = tmp_path_factory.mktemp("home")
    resources = build_resources(load_settings({"DATA_PLATFORM_HOME": str(home)}))
    return platform_defs(stand_in_raw_events, resources, extra=tuple(SCORECARD_ASSETS))


def finished_run(tags: dict[str, str]) -> dg.DagsterRun:
    """A run that has ended: one left NOT_STARTED would count as its assets being built."""
    return dg.DagsterRun(
        job_name="__ASSET_JOB",
        run_id=make_new_run_id(),
        tags=tags,
        status=dg.DagsterRunStatus.SUCCESS,
    )


class Platform:
    """An instance plus the automation cursor, ticking as the automation sensor does."""

    def __init__(self, defs: dg.Definitions, at: datetime | None = None):
        """`at`: the time of every evaluation not given its own (else now)."""
        self.defs, self.graph = defs, defs.resolve_asset_graph()
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor, self.at = None, at

    def evaluate(self, at: datetime | None = None) -> dict[str, list[str] | bool]:
        """One evaluation (at `at`, else the platform's time); what it requests, whose runs are
        still to come (see record)."""
        result = dg.evaluate_automation_conditions(
            defs=self.defs,
            instance=self.instance,
            cursor=self.cursor,
            evaluation_time=at or self.at,
        )
        self.cursor = result.cursor
        requested: dict[str, list[str] | bool] = {}
        for key in self.graph.get_all_asset_keys():
            if not result.get_num_requested(key):
                continue
            partitioned = self.graph.get(key).partitions_def is not None
            partitions = sorted(result.get_requested_partitions(key)) if partitioned else True
            requested[key.to_user_string()] = partitions
        return requested

    def tick(self, at: datetime | None = None) -> dict[str, list[str] | bool]:
        """One evaluation; every requested asset then "runs" (its materialization is recorded)."""
        requested = self.evaluate(at)
        for key, partitions in requested.items():
            for partition in partitions if isinstance(partitions, list) else [None]:
                self.record(key, partition)
        return requested

    def settle(self, ticks: int = 8) -> set[str]:
        """Tick until nothing more is requested; the assets requested on the way."""
        seen: set[str] = set()
        for _ in range(ticks):
            requested = self.tick()
            if not requested:
                return seen
            seen |= set(requested)
        raise AssertionError(f"automation did not settle in {ticks} ticks")

    def record(self, key: str, partition: str | None = None, by_automation: bool = True) -> None:
        """A materialization stored by a run, launched by automation (tagged as its are) or not."""
        tags = {AUTOMATION_TAG: "true"} if by_automation else {}
        run = self.instance.add_run(finished_run(tags))
        self.record_in(run.run_id, key, partition)

    def record_in(self, run_id: str, key: str, partition: str | None = None) -> None:
        event = dg.AssetMaterialization(dg.AssetKey.from_user_string(key), partition=partition)
        self.store(run_id, DagsterEventType.ASSET_MATERIALIZATION, StepMaterializationData(event))

    def store(self, run_id: str, event_type: DagsterEventType, data: object) -> None:
        """An event of the run `run_id`, as its step would have reported it."""
        self.instance.store_event(
            EventLogEntry(
                error_info=None,
                level="debug",
                user_message="",
                run_id=run_id,
                timestamp=time.time(),
                dagster_event=DagsterEvent(
                    event_type.value, job_name="__ASSET_JOB", event_specific_data=data
                ),
            )
        )

    def land(
        self,
        day: str,
        passes: bool = True,
        day_passes: bool = True,
        judged: bool = True,
        written: bool = True,
    ) -> None:
        """A run of raw/events for one day, whose blocking checks pass, fail, or raise (or that
        fails before writing the day)."""
        verdict = Verdict(passes=passes, day_passes=day_passes, judged=judged, written=written)
        dg.materialize(
            [stand_in_raw_events],
            partition_key=day,
            instance=self.instance,
            run_config=dg.RunConfig({"raw__events": verdict}),
            raise_on_error=False,
        )

    def filled(self) -> "Platform":
        """The warehouse built once from the database tables and one day of events."""
        self.tick()
        for key in DB_TABLES:
            self.record(key)
        self.land("2026-01-05")
        self.settle()
        return self

    def copy(self) -> "Platform":
        """This platform in its state, to go on apart: the instance's in-memory SQLite storages
        copied whole (storage ids, runs and their statuses as they were, which the cursor,
        copied too, refers to)."""
        twin = Platform(self.defs, self.at)
        twin.cursor = self.cursor
        for storage in ("run_storage", "event_log_storage"):
            source = getattr(self.instance, storage)._engine.raw_connection()
            target = getattr(twin.instance, storage)._engine.raw_connection()
            try:
                source.driver_connection.backup(target.driver_connection)
            finally:
                source.close(), target.close()
        return twin


# Filling the warehouse takes 8 evaluations of the whole graph (~20 s, most of a test's time),
# which most tests start from: each fill below is done once, and its tests go on from copies of
# it (Platform.copy), never from the platform itself. Their ticks are at a fixed time, after the
# days the tests land, so that no UTC midnight (dim_date's cron) falls between a fill and the
# ticks of a test minutes later (at now, one that did requested dim_date as well). Tests that
# fill their own platform tick at that time too, for the same reason.
FILLED_AT = datetime(2026, 1, 10, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def filled(defs) -> Platform:
    return Platform(defs, at=FILLED_AT).filled()


@pytest.fixture(scope="module")
def gated_filled(gated_defs) -> Platform:
    return Platform(gated_defs, at=FILLED_AT).filled()


@pytest.fixture(scope="module")
def scorecard_filled(scorecard_defs) -> Platform:
    """Every table the scorecard reads exists, so the fill builds it too."""
    platform = Platform(scorecard_defs, at=FILLED_AT)
    platform.record("raw/payments", "2026-01-05")
    platform.record("raw/dead_letter", "2026-01-05")
    return platform.filled()


@pytest.fixture(scope="module")
def paid_filled_on_the_7th(defs) -> Platform:
    """Filled with a day of payments too, on 2026-01-07: the latest day is that day."""
    platform = Platform(defs, at=datetime(2026, 1, 7, 12, tzinfo=UTC))
    platform.record("raw/payments", "2026-01-05")
    return platform.filled()


def test_every_asset_below_raw_has_a_condition_chosen_for_it():
    from data_platform.definitions import defs as platform

    graph = platform.resolve_asset_graph()
    labels = {
        key.to_user_string(): graph.get(key).automation_condition.get_label()
        for key in graph.get_all_asset_keys()
        if graph.get(key).automation_condition is not None
    }
    below_raw = {k.to_user_string() for k in graph.get_all_asset_keys() if k.path[0] != "raw"}
    assert set(labels) >= below_raw
    assert not any(key.startswith("raw/") for key in labels)  # sensors drive raw
    assert labels[FCT_EVENTS] == labels["marts/fct_payments"] == "follows raw partitions"
    assert labels["marts/dim_date"] == "daily"
    assert labels[DAU] == labels["analytics/customer_segments"] == "follows its inputs"
    assert labels[SCORECARD] == "after its inputs settle"
    assert graph.get(dg.AssetKey.from_user_string(STG_EVENTS)).is_virtual


def test_dim_date_is_built_once_then_again_after_each_utc_midnight(defs):
    """Its calendar extends once a day: nothing held the cron part of its condition (built
    once, it would never extend)."""
    platform = Platform(defs)
    morning = datetime(2026, 1, 5, 10, tzinfo=UTC)
    assert platform.tick(morning) == {"marts/dim_date": True}
    assert platform.tick(morning + timedelta(hours=13)) == {}  # 23:00, the same day
    assert platform.tick(morning + timedelta(hours=14, minutes=1)) == {"marts/dim_date": True}
    assert platform.tick(morning + timedelta(hours=20)) == {}
    assert platform.tick(morning + timedelta(days=1, hours=14, minutes=1)) == {
        "marts/dim_date": True
    }


def test_an_empty_warehouse_fills_itself_then_marts_follow_each_day_in_order(defs):
    platform = Platform(defs, at=FILLED_AT)
    assert platform.tick() == {"marts/dim_date": True}
    for key in DB_TABLES:
        platform.record(key)
    platform.land("2026-01-05")
    built = platform.settle()
    # Everything but the payments side (no payment file has landed) was built once.
    payments_side = {"marts/fct_payments", "staging/stg_payments__payments"}
    below_raw = {
        k.to_user_string() for k in platform.graph.get_all_asset_keys() if k.path[0] != "raw"
    }
    assert built == below_raw - payments_side - {"marts/dim_date"}

    platform.land("2026-01-06")
    # The view (and its blocking checks) first; the fact waits for it, then the aggregate.
    assert platform.tick() == {STG_EVENTS: ["2026-01-06"]}
    assert platform.tick() == {FCT_EVENTS: ["2026-01-06"]}
    assert platform.tick() == {DAU: True}
    assert platform.tick() == {}


def test_a_late_file_rebuilds_only_its_own_day(filled):
    platform = filled.copy()
    with dg.partition_loading_context(effective_dt=platform.at):
        today = DAILY_PARTITIONS.get_last_partition_key()
    platform.land(today)
    assert platform.settle() == {STG_EVENTS, FCT_EVENTS, DAU}

    platform.land("2026-01-02")
    assert platform.tick() == {STG_EVENTS: ["2026-01-02"]}
    assert platform.tick() == {FCT_EVENTS: ["2026-01-02"]}  # not today's, not every day
    assert platform.tick() == {DAU: True}


def test_nothing_downstream_of_a_failed_blocking_check(filled):
    platform = filled.copy()
    platform.land("2026-01-06", passes=False)
    # The day was written and its check failed: quiet for that reason, not for want of data.
    assert "2026-01-06" in platform.instance.get_materialized_partitions(EVENTS)
    check = dg.AssetCheckKey(EVENTS, ROWS_ARE_VALID)
    evaluation = platform.instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [check]
    )[check]
    assert evaluation.status.value == "FAILED"
    for _ in range(2):
        assert platform.tick() == {}

    # A later day passes: it flows, and the day that failed is not replayed with it.
    platform.land("2026-01-07")
    assert platform.tick() == {STG_EVENTS: ["2026-01-07"]}
    assert platform.tick() == {FCT_EVENTS: ["2026-01-07"]}
    assert platform.tick() == {DAU: True}

    # The failed day, delivered again and passing, flows too.
    platform.land("2026-01-06")
    assert platform.tick() == {STG_EVENTS: ["2026-01-06"]}
    assert platform.tick() == {FCT_EVENTS: ["2026-01-06"]}


def test_a_failed_day_does_not_drop_a_good_day_waiting_for_the_view(filled):
    platform = filled.copy()
    platform.land("2026-01-06")
    assert platform.tick() == {STG_EVENTS: ["2026-01-06"]}  # the fact's day waits for the view
    # Before the fact's day is requested, another day lands and its check fails.
    platform.land("2026-01-07", passes=False)
    for _ in range(2):
        assert platform.tick() == {}

    # The next good day releases the held one (its view partition is built: it goes at once,
    # beside the new day's view); the failed day stays out.
    platform.land("2026-01-08")
    assert platform.tick() == {STG_EVENTS: ["2026-01-08"], FCT_EVENTS: ["2026-01-06"]}
    # The aggregate waits for the new day behind the fact (it was built once per day).
    assert platform.tick() == {FCT_EVENTS: ["2026-01-08"]}
    assert platform.tick() == {DAU: True}
    assert platform.tick() == {}


def test_a_day_failing_its_own_check_holds_only_its_own_days(filled):
    """A check kept per day fails one day only: the good day waiting for the view goes at
    once (a check of the whole run held it until another good day landed), later days flow
    beside the failed one, and the failed day goes once a run of it passes."""
    platform = filled.copy()
    platform.land("2026-01-06")
    assert platform.tick() == {STG_EVENTS: ["2026-01-06"]}
    platform.land("2026-01-07", day_passes=False)
    assert platform.tick() == {FCT_EVENTS: ["2026-01-06"]}
    assert platform.tick() == {DAU: True}
    assert platform.tick() == {}

    platform.land("2026-01-08")  # the failed day is still failed: it is not swept along
    assert platform.tick() == {STG_EVENTS: ["2026-01-08"]}
    assert platform.tick() == {FCT_EVENTS: ["2026-01-08"]}
    assert platform.tick() == {DAU: True}
    assert platform.tick() == {}

    platform.land("2026-01-07")  # landed again, passing
    assert platform.tick() == {STG_EVENTS: ["2026-01-07"]}
    assert platform.tick() == {FCT_EVENTS: ["2026-01-07"]}


def ticks_until_settled(platform: Platform, limit: int = 12) -> list[dict]:
    """What each tick requests (each request then "runs"), until two ticks in a row request
    nothing (not counted): the scorecard is requested a tick after its inputs' last update,
    so one quiet tick is not the end when it waits."""
    ticks: list[dict] = []
    while ticks[-2:] != [{}, {}]:
        ticks.append(platform.tick())
        assert len(ticks) < limit, ticks
    return ticks[:-2]


def test_the_scorecard_follows_raw_whatever_a_day_check_says(scorecard_filled):
    """The scorecard reads raw/events whole: a check kept per day is failed to it while any
    day is, maybe for good, and the scorecard is where that failure shows. So it ignores those
    checks; a failed check of the whole run still holds it."""
    platform = scorecard_filled.copy()  # it is built once every table it reads exists
    assert platform.instance.get_latest_materialization_event(
        dg.AssetKey.from_user_string(SCORECARD)
    )
    platform.land("2026-01-06", day_passes=False)
    # The day's own tables are held; the scorecard waits for a tick with no input updated.
    assert ticks_until_settled(platform) == [{}, {SCORECARD: True}]
    platform.land("2026-01-07")  # while 2026-01-06 is still failed
    assert SCORECARD in ticks_until_settled(platform)[-1]

    platform.land("2026-01-08", passes=False)
    assert ticks_until_settled(platform) == []


def test_the_scorecard_is_built_once_after_every_layer_of_a_wave(scorecard_filled):
    """It reports the checks of every layer, read from the instance: requested with the first
    layer (it followed raw only), it reported the previous wave's verdicts and none of the
    layers below raw after the first build. It waits for a tick in which no input updated or
    is in a run: once per wave, after the last layer, and a failed check below raw, which holds
    the layers under it, does not hold the scorecard that reports it."""
    platform = scorecard_filled.copy()
    platform.land("2026-01-06")
    assert ticks_until_settled(platform) == [
        {STG_EVENTS: ["2026-01-06"]},
        {FCT_EVENTS: ["2026-01-06"]},
        {DAU: True},
        {},  # the aggregate's update: the wave may go on
        {SCORECARD: True},
    ]
    # A change of the app database goes through more layers (the view, the snapshot, the
    # dimension, the facts, the aggregates and analytics): the scorecard once, at the end.
    platform.record("raw/users")
    ticks = ticks_until_settled(platform)
    assert len(ticks) > 3 and ticks[-1] == {SCORECARD: True}
    assert sum(SCORECARD in requested for requested in ticks) == 1
    # The view's blocking test fails: the fact is held, the scorecard shows the failure.
    platform.land("2026-01-07")
    assert platform.tick() == {STG_EVENTS: ["2026-01-07"]}
    report_check(platform, STG_EVENTS, "unique_", False)
    assert ticks_until_settled(platform) == [{}, {SCORECARD: True}]


def test_one_delivery_builds_every_table_below_raw_once_layer_by_layer(defs):
    """The four app tables and two days of files landing before one tick (the sensors' first
    ticks): each layer is requested the tick after the one above it, every asset once (an
    aggregate was requested with each layer above it, customer_segments 5 times; UI review F6)."""
    platform = Platform(defs, at=FILLED_AT)
    platform.record("raw/payments", "2026-01-05")
    platform.filled()
    for key in DB_TABLES:
        platform.record(key)
    days = ["2026-01-06", "2026-01-07"]
    for day in days:
        platform.land(day)
        platform.record("raw/payments", day)
    ticks = ticks_until_settled(platform)
    builds = Counter(key for requested in ticks for key in requested)
    below_raw = {
        k.to_user_string() for k in platform.graph.get_all_asset_keys() if k.path[0] != "raw"
    }
    assert builds == dict.fromkeys(below_raw - {"marts/dim_date"}, 1)
    assert ticks[0].keys() == {k for k in below_raw if k.startswith("staging/")}
    assert ticks[0][STG_EVENTS] == ticks[1][FCT_EVENTS] == days  # the facts' days once each
    # The layers in order: snapshots, dimensions, orders, aggregates, analytics.
    assert ticks[2] == {"marts/dim_customers": True, "marts/dim_products": True}
    assert ticks[3] == {"marts/fct_orders": True}
    assert {"marts/daily_revenue", "marts/customer_lifetime_value"} <= ticks[4].keys()
    assert ticks[5] == {"analytics/customer_segments": True, "analytics/daily_revenue_chart": True}
    assert len(ticks) == 6


@pytest.mark.parametrize("tables", [DB_TABLES, ["raw/users"]], ids=["app", "users"])
def test_a_delivery_of_the_latest_day_builds_each_fact_day_once_after_what_it_joins(
    paid_filled_on_the_7th, tables
):
    """Today's files (the latest partition, the normal case) and app tables in one delivery:
    a fact's latest day was built the tick after its view, then again once the table it joins
    was rebuilt (fct_events after dim_customers, fct_payments after fct_orders, four levels
    below raw/users), which rebuilds the latest day. It waits for that table now."""
    today = "2026-01-07"
    platform = paid_filled_on_the_7th.copy()
    with dg.partition_loading_context(effective_dt=platform.at):
        assert DAILY_PARTITIONS.get_last_partition_key() == today  # the latest time window
    for key in tables:
        platform.record(key)
    platform.land(today)
    platform.record("raw/payments", today)
    ticks = ticks_until_settled(platform)
    builds = Counter(
        (key, day)
        for requested in ticks
        for key, days in requested.items()
        for day in (days if isinstance(days, list) else [None])
    )
    assert builds[(FCT_EVENTS, today)] == builds[("marts/fct_payments", today)] == 1, ticks
    assert set(builds.values()) == {1}, builds
    # Each fact the tick after the table it joins, and the wave no longer than before.
    [events_tick] = [i for i, requested in enumerate(ticks) if FCT_EVENTS in requested]
    [payments_tick] = [i for i, requested in enumerate(ticks) if "marts/fct_payments" in requested]
    assert "marts/dim_customers" in ticks[events_tick - 1]
    assert "marts/fct_orders" in ticks[payments_tick - 1]
    assert (events_tick, payments_tick, len(ticks)) == (3, 4, 6)


def test_the_latest_day_alone_waits_for_nothing_but_its_view(defs):
    """The common case, a file of today and no app table changing: the fact's latest day goes
    the tick after its view, as an older day does (its wait for a wave costs nothing here)."""
    platform = Platform(defs, at=datetime(2026, 1, 7, 12, tzinfo=UTC)).filled()
    platform.land("2026-01-07")
    assert platform.tick() == {STG_EVENTS: ["2026-01-07"]}
    assert platform.tick() == {FCT_EVENTS: ["2026-01-07"]}
    assert platform.tick() == {DAU: True}
    assert platform.tick() == {}


def test_an_input_landing_while_its_reader_runs_rebuilds_the_reader(filled):
    platform = filled.copy()
    platform.land("2026-01-06")
    assert platform.tick() == {STG_EVENTS: ["2026-01-06"]}
    assert platform.tick() == {FCT_EVENTS: ["2026-01-06"]}
    assert platform.evaluate() == {DAU: True}  # its run starts, reading the fact
    platform.land("2026-01-07")
    assert platform.tick() == {STG_EVENTS: ["2026-01-07"]}
    assert platform.evaluate() == {FCT_EVENTS: ["2026-01-07"]}
    # Both runs end before the next evaluation: the aggregate's first, so it lacks 01-07.
    platform.record(DAU)
    platform.record(FCT_EVENTS, "2026-01-07")
    assert platform.tick() == {DAU: True}
    assert platform.tick() == {}


def test_a_run_outside_automation_updating_an_input_and_its_readers_is_not_repeated(filled):
    platform = filled.copy()
    # One run launched by hand (a backfill, "Materialize all") rebuilds a day and what reads it.
    run = platform.instance.add_run(finished_run({}))
    platform.record_in(run.run_id, "raw/events", "2026-01-06")
    platform.record_in(run.run_id, STG_EVENTS, "2026-01-06")
    platform.record_in(run.run_id, FCT_EVENTS, "2026-01-06")
    platform.record_in(run.run_id, DAU)
    for _ in range(2):
        assert platform.tick() == {}


def report_check(
    platform: Platform, key: str, prefix: str, passed: bool, partition: str | None = None
) -> None:
    """The blocking check of `key` whose name starts with `prefix`, judged in its latest run
    (of `partition`: the verdict of a check kept per day, about that day), as the run's check
    step reports it."""
    asset = dg.AssetKey.from_user_string(key)
    (check_key,) = [k for k in platform.graph.get(asset).check_keys if k.name.startswith(prefix)]
    records = dg.AssetRecordsFilter(
        asset_key=asset, asset_partitions=[partition] if partition else None
    )
    [latest] = platform.instance.fetch_materializations(records, limit=1).records
    target = AssetCheckEvaluationTargetMaterializationData(
        storage_id=latest.storage_id, run_id=latest.run_id, timestamp=latest.timestamp
    )
    evaluation = dg.AssetCheckEvaluation(
        asset_key=asset,
        check_name=check_key.name,
        passed=passed,
        partition=partition,
        target_materialization_data=target,
    )
    platform.store(latest.run_id, DagsterEventType.ASSET_CHECK_EVALUATION, evaluation)


def cancel_latest_run(platform: Platform) -> None:
    """The latest run ends canceled instead (its checks, never evaluated, then read SKIPPED)."""
    [run] = platform.instance.get_runs(limit=1)
    platform.instance.report_run_canceled(run)
    assert platform.instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELED


@pytest.mark.parametrize("canceled", [False, True], ids=["raised", "canceled"])
def test_a_day_whose_blocking_checks_did_not_judge_it_is_held_like_a_failed_one(filled, canceled):
    """A check that raised (a lock, a read error) judged nothing: its run failed, Dagster calls
    it "execution failed", not failed, and the day it never judged flowed on to the facts and
    the aggregates. So did a day whose run was canceled once it was written, before its checks
    (by hand, from the UI): its checks are skipped. Either is held until a verdict (a run of the
    day, or a retry of the checks); a run of the day that writes nothing (its ingestion failed,
    or it was canceled first) holds nothing back: what is stored was judged before."""

    def land(day: str, **verdict: bool) -> None:
        platform.land(day, **verdict)
        if canceled:
            cancel_latest_run(platform)

    platform = filled.copy()
    land("2026-01-06", judged=False)
    assert "2026-01-06" in platform.instance.get_materialized_partitions(EVENTS)
    for _ in range(2):
        assert platform.tick() == {}

    platform.land("2026-01-06")  # re-run, judged and passing
    assert platform.tick() == {STG_EVENTS: ["2026-01-06"]}
    assert platform.tick() == {FCT_EVENTS: ["2026-01-06"]}
    assert platform.tick() == {DAU: True}

    # A day's run that ends before writing leaves its judged data as it was: it holds nothing.
    land("2026-01-06", written=False)
    platform.land("2026-01-07")
    assert platform.tick() == {STG_EVENTS: ["2026-01-07"]}
    assert platform.tick() == {FCT_EVENTS: ["2026-01-07"]}
    assert platform.tick() == {DAU: True}
    assert platform.tick() == {}


def test_a_failed_check_on_a_view_holds_the_fact(filled):
    platform = filled.copy()
    platform.land("2026-01-06")
    assert platform.tick() == {STG_EVENTS: ["2026-01-06"]}
    # The view's run reports its unique test failed (about the view's materialization).
    report_check(platform, STG_EVENTS, "unique_", False)
    for _ in range(2):
        assert platform.tick() == {}


def test_a_failed_day_of_a_fact_holds_what_reads_the_whole_fact_until_that_day_passes(
    gated_filled,
):
    """fct_events' gate keeps a verdict per day. daily_active_users reads every day of the
    fact, so it is held while any day is failed: built, it would publish that day's wrong
    numbers. A later good day of the fact, whose run passes, no longer lets it through (the
    gate's one verdict a run did, hiding the bad day); the fact's own days still flow (a failed
    day holds only what reads it), and the bad day, rebuilt and passing, releases the
    aggregate, which is rebuilt whole."""
    platform = gated_filled.copy()
    platform.land("2026-01-06")
    assert platform.tick() == {STG_EVENTS: ["2026-01-06"]}
    assert platform.tick() == {FCT_EVENTS: ["2026-01-06"]}
    report_check(platform, FCT_EVENTS, "pandera_schema", False, "2026-01-06")  # in its run
    for _ in range(2):
        assert platform.tick() == {}

    platform.land("2026-01-07")
    assert platform.tick() == {STG_EVENTS: ["2026-01-07"]}
    assert platform.tick() == {FCT_EVENTS: ["2026-01-07"]}
    report_check(platform, FCT_EVENTS, "pandera_schema", True, "2026-01-07")
    for _ in range(2):
        assert platform.tick() == {}

    platform.land("2026-01-06")  # landed again, fixed
    assert platform.tick() == {STG_EVENTS: ["2026-01-06"]}
    assert platform.tick() == {FCT_EVENTS: ["2026-01-06"]}
    report_check(platform, FCT_EVENTS, "pandera_schema", True, "2026-01-06")
    assert platform.tick() == {DAU: True}
    assert platform.tick() == {}


def test_a_day_whose_checks_raised_flows_once_a_retry_of_the_checks_passes(filled):
    """A run killed once the day was written, before its checks: Dagster's retry re-executes
    from the failure, the checks alone, writing nothing. The day waits for their verdict, and
    goes when they pass: dropped as a failed day is, it was in the facts for good."""
    platform = filled.copy()
    platform.land("2026-01-06", judged=False)
    for _ in range(2):
        assert platform.tick() == {}
    retry = platform.instance.add_run(finished_run({}))
    [latest] = platform.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=EVENTS, asset_partitions=["2026-01-06"]), limit=1
    ).records
    target = AssetCheckEvaluationTargetMaterializationData(
        storage_id=latest.storage_id, run_id=latest.run_id, timestamp=latest.timestamp
    )
    for name, partition in ((ROWS_ARE_VALID, None), (DEAD_LETTER_RATIO, "2026-01-06")):
        evaluation = dg.AssetCheckEvaluation(
            asset_key=EVENTS,
            check_name=name,
            passed=True,
            partition=partition,
            target_materialization_data=target,
        )
        platform.store(retry.run_id, DagsterEventType.ASSET_CHECK_EVALUATION, evaluation)
    assert platform.tick() == {STG_EVENTS: ["2026-01-06"]}
    assert platform.tick() == {FCT_EVENTS: ["2026-01-06"]}


def rebuild_day_whose_gate_raises(platform: Platform, key: str, prefix: str, day: str) -> None:
    """A run that rebuilds `day` of `key` and then fails in the check step of its blocking check
    named `prefix...`: planned, never judged."""
    asset = dg.AssetKey.from_user_string(key)
    (check_key,) = [k for k in platform.graph.get(asset).check_keys if k.name.startswith(prefix)]
    run = platform.instance.add_run(
        dg.DagsterRun(
            job_name="__ASSET_JOB", run_id=make_new_run_id(), status=dg.DagsterRunStatus.STARTED
        )
    )
    days = DAILY_PARTITIONS.empty_subset().with_partition_keys([day]).to_serializable_subset()
    planned = AssetCheckEvaluationPlanned(
        asset_key=asset, check_name=check_key.name, partitions_subset=days
    )
    platform.store(run.run_id, DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED, planned)
    platform.record_in(run.run_id, key, day)
    platform.instance.report_run_failed(run)


def test_a_fact_day_rebuilt_whose_gate_raised_still_holds_what_reads_the_whole_fact(
    gated_filled,
):
    """The bad day of fct_events rebuilt by hand, but its gate raised instead of judging it:
    nothing says the day is right now, and daily_active_users, held by the failed day, was
    released by the check's "execution failed" and published it."""
    platform = gated_filled.copy()
    platform.land("2026-01-06")
    platform.tick(), platform.tick()
    report_check(platform, FCT_EVENTS, "pandera_schema", False, "2026-01-06")
    platform.land("2026-01-07")
    platform.tick(), platform.tick()
    report_check(platform, FCT_EVENTS, "pandera_schema", True, "2026-01-07")
    assert platform.tick() == {}

    rebuild_day_whose_gate_raises(platform, FCT_EVENTS, "pandera_schema", "2026-01-06")
    for _ in range(2):
        assert platform.tick() == {}
    platform.record(FCT_EVENTS, "2026-01-06", by_automation=False)  # re-run, passing
    report_check(platform, FCT_EVENTS, "pandera_schema", True, "2026-01-06")
    assert platform.tick() == {DAU: True}


def test_days_landed_while_a_dimension_fails_are_built_once_it_passes(filled):
    """A failing check on dim_customers (an input of fct_events) dropped the event days landed
    meanwhile, though their own gates passed: once the dimension passed again, nothing
    re-delivered them, and fct_events kept holes for good. They wait for it now."""
    platform = filled.copy()
    report_check(platform, "marts/dim_customers", "unique_dim_customers_customer_key", False)
    for day in ("2026-01-06", "2026-01-07"):
        platform.land(day)
        assert FCT_EVENTS not in platform.tick()  # held by the failing dimension
        platform.tick()
    # The dimension fixed: rebuilt by hand (a re-extraction, a fix), its check passes.
    platform.record("marts/dim_customers", by_automation=False)
    report_check(platform, "marts/dim_customers", "unique_dim_customers_customer_key", True)
    requested = platform.tick()
    assert requested[FCT_EVENTS] == ["2026-01-06", "2026-01-07"], requested


def test_end_to_end_a_landed_file_reaches_the_marts(resources, tmp_path):
    """Drop a file -> landing sensor -> its run (in-process) -> automation requests the marts."""
    line = '{"event_id": "e1", "user_id": 1, "event_type": "login", "occurred_at": "2026-01-05"}'
    put_lines(resources["landing"], "events/dt=2026-01-05/a.jsonl", [line], tmp_path)
    defs = platform_defs(RAW_FILE_ASSETS[0], resources)
    platform = Platform(defs)
    platform.tick()
    for key in DB_TABLES:
        platform.record(key)
    platform.settle()

    with dg.build_sensor_context(
        instance=platform.instance, resources=resources, definitions=defs
    ) as context:
        (request,) = landing_zone_sensor.evaluate_tick(context).run_requests
    assert (request.asset_selection, request.partition_key) == ([EVENTS], "2026-01-05")
    run = materialize_days(
        [RAW_FILE_ASSETS[0], DEAD_LETTER_SPEC],
        resources,
        [date.fromisoformat(request.partition_key)],
        instance=platform.instance,
    )
    assert run.success

    assert platform.tick() == {STG_EVENTS: ["2026-01-05"]}
    assert platform.tick() == {FCT_EVENTS: ["2026-01-05"]}
    assert platform.tick() == {DAU: True}
