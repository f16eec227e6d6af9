"""Freshness policies follow each feed's arrival pattern, turn FAIL after their window, and alert.

Dagster has no public API to evaluate freshness in-process: the freshness daemon's own
evaluator and state-change step run here under a frozen clock (see STACK_NOTES.md).
"""

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.definitions.freshness_evaluator import TimeWindowFreshnessPolicyEvaluator
from dagster._core.test_utils import freeze_time
from dagster._daemon.freshness import FreshnessDaemon

from data_platform.automation.alert_sensors import freshness_alerts
from data_platform.automation.freshness import arrival_policy, newest_data_written_at
from data_platform.operations.state_metrics import collect_freshness
from data_platform.resources.alerts import AlertWebhook

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def windows(policy) -> tuple[timedelta, timedelta]:
    return policy.fail_window.to_timedelta(), policy.warn_window.to_timedelta()


def test_windows_follow_each_feed_and_every_mart_has_one():
    from data_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    policies = {
        k.to_user_string(): graph.get(k).freshness_policy for k in graph.get_all_asset_keys()
    }
    events, payments, daily = (9 * HOUR, 6 * HOUR), (25 * HOUR, 18 * HOUR), (49 * HOUR, 36 * HOUR)
    assert windows(policies["raw/events"]) == events  # a file every 4 h: FAIL after two missed
    assert windows(policies["raw/payments"]) == payments  # two exports a day
    assert windows(policies["marts/fct_events"]) == windows(policies["marts/daily_active_users"])
    assert windows(policies["marts/fct_events"]) == events
    assert windows(policies["marts/fct_payments"]) == payments
    assert windows(policies["marts/dim_customers"]) == windows(policies["marts/dim_date"]) == daily
    marts = [name for name in policies if name.startswith("marts/")]
    assert len(marts) == 10 and all(policies[name] for name in marts)
    # The app tables (read in daily batches), the snapshots and analytics had none: a stalled
    # extraction showed only through a mart's window, and the scorecard never went stale.
    for table in ("users", "orders", "products", "order_items"):
        assert windows(policies[f"raw/{table}"]) == daily
    assert windows(policies["snapshots/users_history"]) == daily
    assert windows(policies["snapshots/products_history"]) == daily
    assert windows(policies["analytics/customer_segments"]) == daily
    assert windows(policies["analytics/daily_revenue_chart"]) == daily
    assert windows(policies["analytics/data_quality_scorecard"]) == events  # it reads raw/events
    # Views hold no data (their tables have the policy); dead letters come only when refused.
    assert all(policies[name] is None for name in policies if name.startswith("staging/"))
    assert [n for n in policies if not policies[n] and not n.startswith("staging/")] == [
        "raw/dead_letter"
    ]


@dg.asset(freshness_policy=arrival_policy(timedelta(hours=4)))
def feed() -> None:
    pass


DEFS = dg.Definitions(assets=[feed], sensors=[freshness_alerts])


def state_at(instance, when: datetime) -> FreshnessState:
    with freeze_time(when):
        view = AssetGraphView.for_test(DEFS, instance)
        node = view.asset_graph.get(feed.key)
        return asyncio.run(TimeWindowFreshnessPolicyEvaluator().evaluate_freshness(view, node))


def test_a_feed_passes_warns_then_fails_after_its_window():
    instance = dg.DagsterInstance.ephemeral()
    assert state_at(instance, T0) == FreshnessState.UNKNOWN
    with freeze_time(T0):
        dg.materialize([feed], instance=instance)
    assert state_at(instance, T0 + 5 * HOUR) == FreshnessState.PASS
    assert state_at(instance, T0 + 7 * HOUR) == FreshnessState.WARN
    assert state_at(instance, T0 + 10 * HOUR) == FreshnessState.FAIL


def daemon_pass(instance, when: datetime) -> None:
    """What the freshness daemon does every 30 s: record the asset's state when it changes."""
    with freeze_time(when):
        view = AssetGraphView.for_test(DEFS, instance)
        asyncio.run(FreshnessDaemon()._evaluate_asset(view, view.asset_graph.get(feed.key)))


@contextlib.contextmanager
def webhook() -> Iterator[tuple[AlertWebhook, list[dict]]]:
    """An alert resource posting to a local HTTP server, and the payloads it received."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        yield AlertWebhook(webhook_url=url, backoff_seconds=0.01), received
    finally:
        server.shutdown()


def tick(instance, defs, alerts: AlertWebhook, cursor: str | None, when: datetime) -> str | None:
    """One tick of the freshness alert sensor at `when`; its new cursor."""
    with (
        freeze_time(when),
        dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"alerts": alerts}, definitions=defs
        ) as context,
    ):
        return freshness_alerts.evaluate_tick(context).cursor


def test_a_freshness_failure_sends_one_alert():
    instance = dg.DagsterInstance.ephemeral()
    with webhook() as (alerts, received):
        with freeze_time(T0):
            dg.materialize([feed], instance=instance)
        before = tick(instance, DEFS, alerts, None, T0 + HOUR)
        assert received == []
        cursor = tick(instance, DEFS, alerts, before, T0 + 10 * HOUR)
        # still failing: no second alert
        assert tick(instance, DEFS, alerts, cursor, T0 + 10 * HOUR + 30 * MINUTE) == cursor
        # The tick again from the cursor before it, as after a daemon killed mid-tick (the
        # cursor is saved at its end): the alert it sent is not sent again.
        assert tick(instance, DEFS, alerts, before, T0 + 10 * HOUR + 30 * MINUTE) == cursor
        (payload,) = received
        assert payload["text"].startswith("Asset is stale: feed")
        assert "9:00:00" in payload["text"]  # the fail window, in the reason

        # Fresh again, then stale again: a new alert.
        with freeze_time(T0 + 11 * HOUR):
            dg.materialize([feed], instance=instance)
        cursor = tick(instance, DEFS, alerts, cursor, T0 + 12 * HOUR)
        assert len(received) == 1
        tick(instance, DEFS, alerts, cursor, T0 + 22 * HOUR)
        assert len(received) == 2


@dg.asset(
    partitions_def=dg.DailyPartitionsDefinition(start_date="2026-01-01", end_offset=1),
    freshness_policy=arrival_policy(timedelta(hours=4)),
)
def daily_feed() -> None:
    pass


DAILY_DEFS = dg.Definitions(assets=[daily_feed], sensors=[freshness_alerts])


def lag_seconds(instance) -> float:
    policies = {daily_feed.key: daily_feed.specs_by_key[daily_feed.key].freshness_policy}
    (lag, *_) = collect_freshness(instance, policies)
    (sample,) = lag.samples
    return sample.value


def test_an_old_day_loaded_late_does_not_make_a_stale_feed_fresh():
    """Freshness is measured from when the newest day's data was written: a late file for
    2026-01-01, loaded 8 h after the last load of the newest day (2026-01-05), wrote old data.
    Dagster's own evaluation (any materialization) calls the feed fresh 10 h after the newest
    day's load; the alert and the lag gauge call it stale."""
    instance = dg.DagsterInstance.ephemeral()
    with webhook() as (alerts, received):
        with freeze_time(T0):
            dg.materialize([daily_feed], instance=instance, partition_key="2026-01-05")
        cursor = tick(instance, DAILY_DEFS, alerts, None, T0 + HOUR)
        with freeze_time(T0 + 8 * HOUR):
            dg.materialize([daily_feed], instance=instance, partition_key="2026-01-01")
        assert newest_data_written_at(instance, daily_feed.key) == T0.timestamp()
        assert time.time() - lag_seconds(instance) == pytest.approx(T0.timestamp(), abs=60)

        with freeze_time(T0 + 10 * HOUR):
            view = AssetGraphView.for_test(DAILY_DEFS, instance)
            node = view.asset_graph.get(daily_feed.key)
            dagster_says = TimeWindowFreshnessPolicyEvaluator().evaluate_freshness(view, node)
            assert asyncio.run(dagster_says) == FreshnessState.PASS
        cursor = tick(instance, DAILY_DEFS, alerts, cursor, T0 + 10 * HOUR)
        (payload,) = received
        assert payload["text"].startswith("Asset is stale: daily_feed: its newest data was last")

        # The newest day loaded again: fresh, and measured from that load.
        with freeze_time(T0 + 11 * HOUR):
            dg.materialize([daily_feed], instance=instance, partition_key="2026-01-05")
        assert newest_data_written_at(instance, daily_feed.key) == (T0 + 11 * HOUR).timestamp()
        tick(instance, DAILY_DEFS, alerts, cursor, T0 + 12 * HOUR)
        assert len(received) == 1


def test_a_feed_that_never_delivers_alerts_once_after_its_window():
    """Dagster keeps a never-materialized asset UNKNOWN, never FAIL: a feed that never
    delivered (a wrong landing prefix) stayed silent for good."""
    from data_platform.automation.alert_sensors import freshness_failures

    instance = dg.DagsterInstance.ephemeral()
    policies = {feed.key: feed.specs_by_key[feed.key].freshness_policy}
    start = T0.timestamp()
    cursor = {"feed": 1.0}  # the first version's cursor: {asset: when it turned FAIL}
    for hours, alerted in ((0, 0), (8.9, 0), (9, 1), (30, 0)):
        found, cursor = freshness_failures(instance, policies, cursor, start + hours * 3600)
        assert [a.title for a in found] == ["Asset never materialized"] * alerted, hours
    assert cursor["failed"] == {"feed": 1.0}
    assert (
        "9:00:00"
        in freshness_failures(
            instance, policies, {**cursor, "unknown_alerted": []}, start + 10 * 3600
        )[0][0].reason
    )

    # Once it has a state, it is watched as usual, and a later silence is a FAIL, not this.
    with freeze_time(T0 + 31 * HOUR):
        dg.materialize([feed], instance=instance)
    daemon_pass(instance, T0 + 32 * HOUR)
    found, cursor = freshness_failures(instance, policies, cursor, start + 32 * 3600)
    assert found == [] and cursor["unknown_since"] == {} and cursor["unknown_alerted"] == []


def test_the_stale_and_the_never_materialized_alerts_name_the_same_window():
    """Both read the fail window through one helper (`_fail_seconds`): a policy without one (a
    cron deadline) never gets a never-materialized alert, and its stale text names the cron."""
    from data_platform.automation.alert_sensors import describe_policy, freshness_failures

    cron = dg.FreshnessPolicy.cron(deadline_cron="0 9 * * *", lower_bound_delta=HOUR)
    window = feed.specs_by_key[feed.key].freshness_policy
    instance = dg.DagsterInstance.ephemeral()
    start = T0.timestamp()
    for policy, after in ((window, 9 * 3600), (cron, 1000 * 86400)):
        cursor = freshness_failures(instance, {feed.key: policy}, {}, start)[1]
        found = freshness_failures(instance, {feed.key: policy}, cursor, start + after)[0]
        if policy is window:
            assert "9:00:00" in describe_policy(policy) and "9:00:00" in found[0].reason
        else:
            assert found == [] and "0 9 * * *" in describe_policy(policy)


@dg.asset(
    key=["raw", "events"],
    partitions_def=dg.DailyPartitionsDefinition(start_date="2026-01-01", end_offset=1),
    freshness_policy=arrival_policy(timedelta(hours=4)),
)
def raw_events() -> None:
    pass


@dg.asset(key=["marts", "active_users"], deps=[raw_events], freshness_policy=arrival_policy(timedelta(hours=4)))  # fmt: skip
def active_users() -> None:
    pass


MART_DEFS = dg.Definitions(assets=[raw_events, active_users], sensors=[freshness_alerts])


def test_a_mart_rebuilt_without_new_data_is_as_stale_as_its_feed():
    """An unpartitioned mart counted as fresh after any rebuild: a late file for an old day (or
    a dimension's change) rebuilt it while raw/events' newest day had stopped arriving, and the
    mart's alert and lag said fresh. Its data is no newer than its feed's newest."""
    instance = dg.DagsterInstance.ephemeral()
    with webhook() as (alerts, received):
        with freeze_time(T0):
            dg.materialize([raw_events], instance=instance, partition_key="2026-01-05")
            dg.materialize([active_users], instance=instance, selection=[active_users.key])
        cursor = tick(instance, MART_DEFS, alerts, None, T0 + HOUR)
        with freeze_time(T0 + 8 * HOUR):  # a late old day, and the mart rebuilt for it
            dg.materialize([raw_events], instance=instance, partition_key="2026-01-01")
            dg.materialize([active_users], instance=instance, selection=[active_users.key])
        tick(instance, MART_DEFS, alerts, cursor, T0 + 10 * HOUR)
        stale = sorted(p["text"].split(":")[1].strip() for p in received)
        assert stale == ["marts/active_users", "raw/events"]

    policies = {key: arrival_policy(timedelta(hours=4)) for key in MART_DEFS.resolve_asset_graph().get_all_asset_keys()}  # fmt: skip
    feeds = {active_users.key: [raw_events.key]}
    (lag, *_) = collect_freshness(instance, policies, feeds)
    written = {s.labels["asset"]: time.time() - s.value for s in lag.samples}
    assert written["marts/active_users"] == pytest.approx(T0.timestamp(), abs=60)
    assert written["raw/events"] == pytest.approx(T0.timestamp(), abs=60)


def test_a_mart_following_feeds_as_frequent_is_as_fresh_as_the_freshest():
    """fct_orders follows raw/orders, raw/order_items and raw/users, all daily: a day without a
    user change made it stale while orders kept arriving."""
    instance = dg.DagsterInstance.ephemeral()
    with freeze_time(T0):
        dg.materialize([raw_events], instance=instance, partition_key="2026-01-05")
    with freeze_time(T0 + 30 * HOUR):
        dg.materialize([feed], instance=instance)
        dg.materialize([active_users], instance=instance, selection=[active_users.key])
    fresh = (T0 + 30 * HOUR).timestamp()
    assert newest_data_written_at(instance, active_users.key, [raw_events.key, feed.key]) == fresh
    assert newest_data_written_at(instance, active_users.key, [raw_events.key]) == T0.timestamp()


def test_a_feed_followed_by_many_marts_is_read_once_per_scrape(monkeypatch):
    """Each mart's freshness reads its feed's newest data: raw/events, followed by most marts,
    was read once per mart, every alert tick and every scrape."""
    instance = dg.DagsterInstance.ephemeral()
    marts = [dg.AssetSpec(["marts", f"m{n}"], deps=[raw_events]) for n in range(5)]
    with freeze_time(T0):
        dg.materialize([raw_events], instance=instance, partition_key="2026-01-05")
        dg.materialize(
            [*(dg.asset(key=m.key, deps=m.deps)(lambda: None) for m in marts), raw_events],
            instance=instance,
            selection=[m.key for m in marts],
        )
    reads = []
    latest = instance.get_latest_materialization_event
    monkeypatch.setattr(
        instance, "get_latest_materialization_event", lambda key: reads.append(key) or latest(key)
    )
    policy = arrival_policy(timedelta(hours=4))
    policies = {m.key: policy for m in marts} | {raw_events.key: policy}
    feeds = {m.key: [raw_events.key] for m in marts}
    (lag, *_) = collect_freshness(instance, policies, feeds)
    assert len(lag.samples) == 6
    assert sorted(reads) == sorted(policies), reads
