"""`data-platform metrics`: a Prometheus exporter reading the Dagster instance and the warehouse.

dagster-prometheus pushes from inside a run, so it never sees a run that is queued, crashed or
never started. This exporter reads the instance itself at every scrape (a custom Collector: no
background loop, no state to go stale), plus the warehouse briefly, read-only.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping

import dagster as dg
import sqlalchemy as sa
from dagster._core.definitions.freshness import TimeWindowFreshnessPolicy
from dagster_postgres.utils import DagsterPostgresException
from prometheus_client import start_http_server
from prometheus_client.core import CollectorRegistry, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from data_platform.automation.freshness import OwnTimesCache, asset_deps, followed_feeds
from data_platform.operations.check_metrics import (
    CheckExecutionCounts,
    code_checks,
    collect_checks,
)
from data_platform.operations.durations import RunDurations
from data_platform.operations.run_metrics import RunCountSeries, collect_runs
from data_platform.operations.state_metrics import (
    code_sensors,
    collect_freshness,
    collect_pools,
    collect_sensors,
    freshness_windows,
)
from data_platform.operations.warehouse_metrics import (
    WarehouseDayCounts,
    WarehouseMetrics,
    warehouse_day_counts,
)
from data_platform.orchestration.instance import (
    platform_instance,
    postgres_retries,
    storage_place,
)
from data_platform.settings import METRICS_DAYS, METRICS_NEW_SERIES_HOLD, Settings, load_settings
from data_platform.sql_engines import first_line
from data_platform.stream.lag_metrics import collect_kafka_lag
from data_platform.stream.security import PLAINTEXT, KafkaSecurity

HOST = "127.0.0.1"
# What the instance's storage raises when it cannot be read: its database down or refusing
# (SQLAlchemy's errors; dagster-postgres's own once its retries are spent), a file unreadable.
# Anything else is a bug of the collector: not the database's outage.
STORAGE_ERRORS = (sa.exc.SQLAlchemyError, DagsterPostgresException, OSError)


class PlatformCollector(Collector):
    """Every `data_platform_*` metric, computed when Prometheus scrapes."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        day_counts: WarehouseDayCounts,
        policies: Mapping[dg.AssetKey, TimeWindowFreshnessPolicy],
        kafka_bootstrap: str | None = None,
        jobs: Iterable[str] = (),
        row_days: int = METRICS_DAYS,
        new_series_hold: float = METRICS_NEW_SERIES_HOLD,
        clock: Callable[[], float] = time.monotonic,
        feeds: Mapping[dg.AssetKey, Iterable[dg.AssetKey]] | None = None,
        sensors: Mapping[str, bool] | None = None,
        checks: Collection[tuple[str, str]] | None = None,
        kafka_security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        """`jobs`: the Definitions' job names, whose run series exist from the first scrape;
        `row_days`: how many arrival days of rows_* series to serve (DATA_PLATFORM_METRICS_DAYS);
        `new_series_hold`: seconds a job or duration label set first seen reads 0
        (DATA_PLATFORM_METRICS_NEW_SERIES_HOLD), timed by `clock`; `feeds`: the raw feeds each
        asset follows (`followed_feeds`), which bound a mart's freshness; `sensors` and
        `checks`: the code's (`code_sensors`, `code_checks`), the only ones reported (None:
        every one the instance stores, even those gone from the code)."""
        self._instance = instance
        self._instance_place = storage_place(instance)
        self._kafka_bootstrap, self._kafka_security = kafka_bootstrap, kafka_security
        self._warehouse = WarehouseMetrics(day_counts, row_days)
        self._policies, self._feeds = policies, feeds
        self._own_times = OwnTimesCache()
        self._durations = RunDurations(hold_seconds=new_series_hold, clock=clock)
        self._check_counts = CheckExecutionCounts()
        self._run_series = RunCountSeries(jobs, new_series_hold, clock)
        self._sensors, self._checks = sensors, checks

    def collect(self) -> Iterator[Metric]:
        yield from self._collect_instance()
        yield from self._warehouse.collect()
        yield from collect_kafka_lag(self._kafka_bootstrap, security=self._kafka_security)

    def _collect_instance(self) -> Iterator[Metric]:
        """The instance's series, all or none, and `data_platform_instance_up`: its database
        down failed the whole scrape (HTTP 500, every series gone, the warehouse's and Kafka's
        too, so every other alert resolved).

        Any other error still fails the scrape, traceback in the exporter's log: called
        instance_up 0, a bug of the collector paged as the database's outage, its traceback
        lost; served without the instance's series, it silenced their alerts with no alert of
        its own. The exporter is what is broken, and its target down says so (the server
        answers each scrape apart: the next one is served as ever)."""
        up = GaugeMetricFamily(
            "data_platform_instance_up",
            "1 when this scrape read the Dagster instance (runs, checks, pools, sensors); 0 when "
            "its storage could not be read (the instance's series are then absent).",
        )
        try:
            # No connection retried: dagster-postgres's back-off (~11 s) outlasted Prometheus's
            # 10 s scrape timeout, so an instance database down took the exporter's target down
            # with it (every series lost) instead of reporting instance_up 0. The next scrape
            # tries again, and DataPlatformInstanceDown waits 5 minutes before paging.
            with postgres_retries(gives_up=lambda _: True):
                found = [
                    *collect_runs(self._instance, self._run_series),
                    *self._durations.collect(self._instance),
                    *collect_checks(self._instance, self._check_counts, self._checks),
                    *collect_freshness(
                        self._instance, self._policies, self._feeds, self._own_times
                    ),
                    *collect_pools(self._instance),
                    *collect_sensors(self._instance, self._sensors),
                ]
        except STORAGE_ERRORS as error:
            print(
                f"data-platform metrics: the instance ({self._instance_place}) is unreadable: "
                f"{first_line(error)}",
                file=sys.stderr,
            )
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from found


def collector_for(
    instance: dg.DagsterInstance, settings: Settings, defs: dg.Definitions
) -> PlatformCollector:
    """The exporter's collector for these Definitions: their jobs, freshness policies, feeds,
    sensors and checks (what the code declares, not whatever the instance still stores)."""
    return PlatformCollector(
        instance,
        warehouse_day_counts(settings),
        freshness_windows(defs),
        settings.kafka_bootstrap,
        [job.name for job in defs.get_repository_def().get_all_jobs()],
        settings.metrics_days,
        settings.metrics_new_series_hold,
        feeds=followed_feeds(asset_deps(defs.resolve_all_asset_specs())),
        sensors=code_sensors(defs),
        checks=code_checks(defs),
        kafka_security=settings.kafka_security,
    )


def registry_of(collector: Collector) -> CollectorRegistry:
    """A registry of its own for `collector`: the default one adds process_* and python_*
    series, and every name this endpoint serves starts `data_platform_`.

    The collector names no metrics ahead (`describe`: that would be a scrape at registration),
    and a registry drops such a collector from a scrape restricted by `?name[]=...` unless told
    it may have none: every such scrape was an empty 200, as if no series existed."""
    registry = CollectorRegistry(auto_describe=False, support_collectors_without_names=True)
    registry.register(collector)
    return registry


def serve(port: int | None = None) -> int:
    """Serve /metrics on 127.0.0.1 until SIGINT or SIGTERM, from `registry_of` the collector
    (PlatformCollector; README.md, "Operating the platform", lists the series)."""
    settings = load_settings()
    port = settings.metrics_port if port is None else port
    # The Definitions (the freshness policies) load once, here, never per scrape.
    from data_platform.assets.dbt_project import require_manifest

    require_manifest()
    from data_platform.definitions import defs

    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    with platform_instance(settings) as instance:
        registry = registry_of(collector_for(instance, settings, defs))
        try:
            server, thread = start_http_server(port, addr=HOST, registry=registry)
        except OSError as err:
            print(
                f"data-platform metrics: cannot listen on {HOST}:{port} ({err.strerror}): "
                "stop what uses it or set DATA_PLATFORM_METRICS_PORT to a free port",
                file=sys.stderr,
            )
            return 1
        # prometheus_client serves each scrape on a daemon thread, which neither the exit nor
        # server_close() waits for: stopped mid-scrape, the exporter cut it off without a
        # response, or (seen once in CI) went down under a thread still in native code, a
        # SIGABRT. As plain threads, server_close() below joins them, each response written.
        server.daemon_threads = False
        print(f"serving Prometheus metrics on http://{HOST}:{port}/metrics", file=sys.stderr)
        stopped.wait()
        server.shutdown()
        thread.join()
        server.server_close()
    return 0
