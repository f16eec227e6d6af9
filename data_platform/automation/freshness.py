"""Freshness policies that follow how often each source delivers, applied in one place.

The collector ships an event file every four hours (six a day), the payment provider exports
twice a day, the application database is read in daily batches. A raw feed WARNs when a
delivery is half an interval overdue and FAILs when two deliveries in a row are missing (plus
an hour for processing). A mart follows its fastest raw feed: the marts are rebuilt within
minutes of a delivery (see conditions.py), so a stale mart means a stale feed or a broken
rebuild; dim_date, which has no feed, is rebuilt daily.

What a window is measured from is the time the asset's newest data was last written
(`newest_data_written_at`), not its last materialization: Dagster's freshness (its daemon, the
UI's badge) counts any materialization, so a late file for an old day, or a backfill, made a
feed whose newest day had stopped arriving look fresh. The alert sensor and the exporter's lag
gauge use this rule; the UI's badge still shows Dagster's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cache

import dagster as dg

RAW_EVENTS = dg.AssetKey(["raw", "events"])
RAW_PAYMENTS = dg.AssetKey(["raw", "payments"])
DAILY = timedelta(days=1)
FEED_INTERVALS = {RAW_EVENTS: timedelta(hours=4), RAW_PAYMENTS: timedelta(hours=12)}
PROCESSING_SLACK = timedelta(hours=1)

Assets = Sequence[dg.AssetsDefinition | dg.AssetSpec]


def arrival_policy(interval: timedelta) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.time_window(
        fail_window=2 * interval + PROCESSING_SLACK, warn_window=interval * 3 / 2
    )


def _specs(assets: Assets) -> list[dg.AssetSpec]:
    return [
        spec for a in assets for spec in (a.specs if isinstance(a, dg.AssetsDefinition) else [a])
    ]


def feed_intervals(assets: Assets) -> dict[dg.AssetKey, timedelta]:
    """Each asset's fastest raw feed: raw/events 4 h, raw/payments 12 h, any other 1 day."""
    deps = {spec.key: [dep.asset_key for dep in spec.deps] for spec in _specs(assets)}

    @cache
    def interval(key: dg.AssetKey) -> timedelta:
        if key.path[0] == "raw":
            return FEED_INTERVALS.get(key, DAILY)
        return min((interval(dep) for dep in deps.get(key, [])), default=DAILY)

    return {key: interval(key) for key in deps}


def has_policy(key: dg.AssetKey) -> bool:
    return key in FEED_INTERVALS or key.path[0] == "marts"


def with_freshness_policies(assets: Assets) -> list[dg.AssetsDefinition | dg.AssetSpec]:
    """The raw file feeds and every mart, with the policy of their feed."""
    intervals = feed_intervals(assets)

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        if not has_policy(spec.key):
            return spec
        return spec.replace_attributes(freshness_policy=arrival_policy(intervals[spec.key]))

    return dg.map_asset_specs(apply, list(assets))


def newest_data_written_at(instance: dg.DagsterInstance, key: dg.AssetKey) -> float | None:
    """When the asset's newest data was last written (epoch seconds); None: never materialized.

    A partitioned asset is as fresh as its newest partition: the latest materialization of its
    greatest partition key (the platform's partitions are days, `YYYY-MM-DD`, whose text order
    is their time order); re-loading an older partition writes old data and changes nothing.
    An unpartitioned asset: its latest materialization. One query when the latest
    materialization is of the newest partition (the usual case), three after a late old one.
    """
    latest = instance.get_latest_materialization_event(key)
    if latest is None or latest.dagster_event is None:
        return None
    partition = latest.dagster_event.partition
    if partition is None:
        return latest.timestamp
    newest = max(instance.get_materialized_partitions(key))
    if newest == partition:
        return latest.timestamp
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[newest]), limit=1
    ).records
    return records[0].timestamp if records else None
