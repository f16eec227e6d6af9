"""Freshness, pools and sensors: what the instance says about the platform keeping up.

Freshness is measured against the policies the Definitions declare, from the time the asset's
newest data was written (both in automation/freshness.py): the lag and the policy's windows are
separate gauges, so an alert compares them in PromQL and the thresholds live in one place, the
code.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime

import dagster as dg
import sqlalchemy as sa
from dagster._core.definitions.freshness import TimeWindowFreshnessPolicy
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
)
from dagster._core.storage.schedules.schema import JobTickTable
from dagster._core.storage.schedules.sql_schedule_storage import SqlScheduleStorage
from prometheus_client.core import GaugeMetricFamily, Metric

from data_platform.automation.freshness import OwnTimesCache, newest_data_written_at


def freshness_windows(
    defs: dg.Definitions,
) -> dict[dg.AssetKey, TimeWindowFreshnessPolicy]:
    """Each asset with a time-window freshness policy, and that policy."""
    return {
        spec.key: spec.freshness_policy
        for spec in defs.resolve_all_asset_specs()
        if isinstance(spec.freshness_policy, TimeWindowFreshnessPolicy)
    }


def collect_freshness(
    instance: dg.DagsterInstance,
    policies: Mapping[dg.AssetKey, TimeWindowFreshnessPolicy],
    feeds: Mapping[dg.AssetKey, Iterable[dg.AssetKey]] | None = None,
    cache: OwnTimesCache | None = None,
) -> Iterator[Metric]:
    """`cache`: the exporter's, kept between scrapes."""
    now = time.time()
    lag = GaugeMetricFamily(
        "data_platform_asset_freshness_lag_seconds",
        "Seconds since the asset's newest data was last written: its last materialization, or "
        "for a partitioned asset its newest partition's; a mart's no later than its feed's "
        "(absent: never materialized).",
        labels=["asset"],
    )
    fail = GaugeMetricFamily(
        "data_platform_asset_freshness_fail_window_seconds",
        "The asset's freshness policy: it FAILs when the lag exceeds this.",
        labels=["asset"],
    )
    warn = GaugeMetricFamily(
        "data_platform_asset_freshness_warn_window_seconds",
        "The asset's freshness policy: it WARNs when the lag exceeds this.",
        labels=["asset"],
    )
    feeds = feeds or {}
    read = set(policies) | {feed for key in policies for feed in feeds.get(key, ())}
    own_times = (cache or OwnTimesCache()).own_times(instance, read)
    for key, policy in sorted(policies.items(), key=lambda item: item[0].to_user_string()):
        name = key.to_user_string()
        fail.add_metric([name], policy.fail_window.to_timedelta().total_seconds())
        if policy.warn_window:
            warn.add_metric([name], policy.warn_window.to_timedelta().total_seconds())
        written = newest_data_written_at(instance, key, feeds.get(key, ()), own_times)
        if written is not None:
            lag.add_metric([name], max(0.0, now - written))
    yield from (lag, fail, warn)


def collect_pools(instance: dg.DagsterInstance) -> Iterator[Metric]:
    in_use = GaugeMetricFamily(
        "data_platform_pool_slots_in_use", "Pool slots held by running steps.", labels=["pool"]
    )
    limit = GaugeMetricFamily(
        "data_platform_pool_slots_limit", "Slots the pool allows at once.", labels=["pool"]
    )
    pending = GaugeMetricFamily(
        "data_platform_pool_pending_steps", "Steps waiting for a slot of the pool.", labels=["pool"]
    )
    storage = instance.event_log_storage
    for pool in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(pool)
        in_use.add_metric([pool], len(info.claimed_slots))
        limit.add_metric([pool], info.slot_count)
        pending.add_metric([pool], sum(1 for p in info.pending_steps if not p.assigned_timestamp))
    yield from (in_use, limit, pending)


def code_sensors(defs: dg.Definitions) -> dict[str, bool]:
    """{name: runs by default?} of each sensor the Definitions declare (the implicit
    `automation` sensor included)."""
    return {
        sensor.name: sensor.default_status == dg.DefaultSensorStatus.RUNNING
        for sensor in defs.get_repository_def().sensor_defs
    }


def sensor_state_label(status: InstigatorStatus, runs_by_default: bool) -> str:
    """The state a sensor is in, as Dagster reads it: a stored DECLARED_IN_CODE means "as the
    code says", so it is `stopped` once the code's default is no longer RUNNING."""
    if status == InstigatorStatus.DECLARED_IN_CODE and not runs_by_default:
        return InstigatorStatus.STOPPED.value.lower()
    return status.value.lower()


def collect_sensors(
    instance: dg.DagsterInstance, sensors: Mapping[str, bool] | None = None
) -> Iterator[Metric]:
    """`sensors`: the code's sensors (`code_sensors`). Dagster never deletes the stored state
    of a sensor that left the code (the Kafka sensor once DATA_PLATFORM_KAFKA_BOOTSTRAP is
    unset): its tick age grew forever and paged. Only these are reported; None: every one."""
    age = GaugeMetricFamily(
        "data_platform_sensor_last_tick_age_seconds",
        "Seconds since the sensor last ticked (a running sensor ticks every 5-30 s, by sensor).",
        labels=["sensor", "state"],
    )
    now = time.time()
    states = instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
    if sensors is not None:
        states = [state for state in states if state.instigator_name in sensors]
    latest = last_tick_times(instance, [state.selector_id for state in states])
    ticked = []
    for state in states:
        last = latest.get(state.selector_id)
        if last is None:  # a tick stored without its selector (older Dagster): the slow way
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
            last = ticks[0].timestamp if ticks else None
        if last is not None:
            ticked.append((state, last))
    for name, (state, last) in sorted(newest_per_sensor(ticked).items()):
        runs_by_default = True if sensors is None else sensors[name]
        label = sensor_state_label(state.status, runs_by_default)
        age.add_metric([name, label], now - last)
    yield age


def newest_per_sensor(
    ticked: Iterable[tuple[InstigatorState, float]],
) -> dict[str, tuple[InstigatorState, float]]:
    """{sensor name: (state, last tick)} of the state that ticked last, of each name.

    The instance keeps a state per code location: one the code was loaded under before (`dagster
    dev -f` instead of `-w`, a location renamed) stays, RUNNING and never ticking again. Reported
    too, it was a second sample of the same series, and its age grew and paged forever.
    """
    newest: dict[str, tuple[InstigatorState, float]] = {}
    for state, last in ticked:
        held = newest.get(state.instigator_name)
        if held is None or last > held[1]:
            newest[state.instigator_name] = (state, last)
    return newest


def last_tick_times(instance: dg.DagsterInstance, selector_ids: list[str]) -> dict[str, float]:
    """{selector id: epoch seconds of its latest tick} of those that ticked, one `max` a
    selector on one connection: each is a seek in the (selector_id, timestamp) index.

    Dagster's `get_ticks(limit=1)` matches a selector OR a legacy origin, which no index
    serves: on a year of 30-second ticks it cost 2.1 s of a scrape. One GROUP BY of every
    selector still walked the whole index (121k ticks: ~70 ms of CPU a scrape).
    """
    storage = instance.schedule_storage
    if not isinstance(storage, SqlScheduleStorage):
        return {}
    tick = JobTickTable.c
    query = sa.select(sa.func.max(tick.timestamp)).where(
        tick.selector_id == sa.bindparam("selector")
    )
    latest = {}
    with storage.connect() as conn:
        for selector in selector_ids:
            stamp = conn.execute(query, {"selector": selector}).scalar()
            if stamp is not None:
                latest[selector] = _epoch(stamp)
    return latest


def _epoch(stamp: datetime | str) -> float:
    """The tick table's naive-UTC timestamp (a string where SQLite loses the type) as epoch."""
    moment = datetime.fromisoformat(stamp) if isinstance(stamp, str) else stamp
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
