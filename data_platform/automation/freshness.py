"""Freshness policies that follow how often each source delivers, applied in one place.

The collector ships an event file every four hours (six a day), the payment provider exports
twice a day, the application database is read in daily batches. A raw feed WARNs when a
delivery is half an interval overdue and FAILs when two deliveries in a row are missing (plus
an hour for processing). A mart follows its fastest raw feed: the marts are rebuilt within
minutes of a delivery (see conditions.py), so a stale mart means a stale feed or a broken
rebuild; dim_date, which has no feed, is rebuilt daily. Snapshots and analytics follow their
feeds the same way.

What a window is measured from is the time the asset's newest data was last written
(`newest_data_written_at`), not its last materialization: Dagster's freshness (its daemon, the
UI's badge) counts any materialization, so a late file for an old day, or a backfill, made a
feed whose newest day had stopped arriving look fresh. The alert sensor and the exporter's lag
gauge use this rule; the UI's badge still shows Dagster's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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


Deps = Mapping[dg.AssetKey, Iterable[dg.AssetKey]]


def asset_deps(assets: Assets) -> dict[dg.AssetKey, list[dg.AssetKey]]:
    return {spec.key: [dep.asset_key for dep in spec.deps] for spec in _specs(assets)}


def _feed_interval(key: dg.AssetKey) -> timedelta:
    return FEED_INTERVALS.get(key, DAILY)


def followed_feeds(deps: Deps) -> dict[dg.AssetKey, frozenset[dg.AssetKey]]:
    """The raw feeds each asset follows: of the raw assets upstream, those delivering most
    often (raw/events 4 h, raw/payments 12 h, any other 1 day); none for a raw asset itself."""

    @cache
    def raw_upstream(key: dg.AssetKey) -> frozenset[dg.AssetKey]:
        if key.path[0] == "raw":
            return frozenset({key})
        return frozenset().union(*(raw_upstream(dep) for dep in deps.get(key, [])))

    def fastest(key: dg.AssetKey) -> frozenset[dg.AssetKey]:
        raws = raw_upstream(key) - {key}
        shortest = min((_feed_interval(r) for r in raws), default=None)
        return frozenset(r for r in raws if _feed_interval(r) == shortest)

    return {key: fastest(key) for key in deps}


def feed_intervals(assets: Assets) -> dict[dg.AssetKey, timedelta]:
    """Each asset's fastest raw feed's interval: its own for a raw asset, 1 day without one."""
    return {
        key: _feed_interval(key)
        if key.path[0] == "raw"
        else min((_feed_interval(f) for f in feeds), default=DAILY)
        for key, feeds in followed_feeds(asset_deps(assets)).items()
    }


# The layers whose tables hold data: each table has a feed to keep up with. Not the staging
# views (virtual: they hold no data, the tables they read have the policy), nor raw.dead_letter,
# which gets rows only when a record is refused: none for days is good news.
POLICED_LAYERS = ("raw", "snapshots", "marts", "analytics")
RAW_DEAD_LETTER = dg.AssetKey(["raw", "dead_letter"])


def has_policy(key: dg.AssetKey) -> bool:
    return key.path[0] in POLICED_LAYERS and key != RAW_DEAD_LETTER


def with_freshness_policies(assets: Assets) -> list[dg.AssetsDefinition | dg.AssetSpec]:
    """Every table of the raw feeds (files and app tables) and of the layers built from them,
    with the policy of their feed."""
    intervals = feed_intervals(assets)

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        if not has_policy(spec.key):
            return spec
        return spec.replace_attributes(freshness_policy=arrival_policy(intervals[spec.key]))

    return dg.map_asset_specs(apply, list(assets))


def newest_data_written_at(
    instance: dg.DagsterInstance,
    key: dg.AssetKey,
    feeds: Iterable[dg.AssetKey] = (),
    own_times: dict[dg.AssetKey, float | None] | None = None,
) -> float | None:
    """When the asset's newest data was last written (epoch seconds); None: never materialized.

    An asset that follows raw `feeds` (`followed_feeds`) holds data no newer than theirs: it
    is as fresh as the older of its own write and the newest data of the freshest of those
    feeds (they deliver equally often: the orders of a quiet day of user changes are still
    news). Else a mart rebuilt for another reason (a dimension's change, a late file for an
    old day) looked fresh while the feed it follows had stopped arriving.

    A partitioned asset is as fresh as its newest partition: the latest materialization of its
    greatest partition key (the platform's partitions are days, `YYYY-MM-DD`, whose text order
    is their time order); re-loading an older partition writes old data and changes nothing.
    An unpartitioned asset: its latest materialization. One query when the latest
    materialization is of the newest partition (the usual case), three after a late old one.

    `own_times`: each asset's own time as read so far, for a caller judging many assets at
    once (an alert tick, a scrape): raw/events is then read once, not once per mart following
    it.
    """
    own_times = {} if own_times is None else own_times

    def own_time(asset: dg.AssetKey) -> float | None:
        if asset not in own_times:
            own_times[asset] = _own_newest_data_written_at(instance, asset)
        return own_times[asset]

    own = own_time(key)
    if own is None:
        return None
    fed = [t for feed in feeds if (t := own_time(feed)) is not None]
    return min(own, max(fed)) if fed else own


def _own_newest_data_written_at(instance: dg.DagsterInstance, key: dg.AssetKey) -> float | None:
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


class OwnTimesCache:
    """Each asset's own newest-data time, kept while its latest materialization stays the same.

    A scrape read every policed asset's anew: one to three queries each (16 assets, 0.33 s of
    a 0.4 s scrape, over 1 s while a run wrote). Now one query (the assets' records) tells
    which assets were materialized since the last read; only those are read again."""

    def __init__(self) -> None:
        self._known: dict[dg.AssetKey, tuple[int, float | None]] = {}

    def own_times(
        self, instance: dg.DagsterInstance, keys: Iterable[dg.AssetKey]
    ) -> dict[dg.AssetKey, float | None]:
        """`own_times` for `newest_data_written_at`: every one of `keys`, read if changed."""
        keys = set(keys)
        latest = {
            record.asset_entry.asset_key: record.asset_entry.last_materialization_record
            for record in instance.get_asset_records(list(keys))
        }
        times: dict[dg.AssetKey, float | None] = {}
        for key in keys:
            record = latest.get(key)
            if record is None:
                times[key] = None
                continue
            known = self._known.get(key)
            if known is None or known[0] != record.storage_id:
                known = self._known[key] = (
                    record.storage_id,
                    _own_newest_data_written_at(instance, key),
                )
            times[key] = known[1]
        return times
