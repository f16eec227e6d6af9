"""The table of contents: every asset, check, sensor and resource of the platform, in one place."""

import dagster as dg

from data_platform.assets.analytics import ANALYTICS_ASSETS
from data_platform.assets.dbt import DBT_ASSETS
from data_platform.assets.engine_view import shown_on
from data_platform.assets.raw import DEAD_LETTER_SPEC, RAW_FILE_ASSETS, RAW_SOURCE_TABLE_ASSETS
from data_platform.assets.scorecard import SCORECARD_ASSETS
from data_platform.automation.freshness import with_freshness_policies
from data_platform.automation.sensors import SENSORS
from data_platform.automation.source_reconciliation import weekly_source_reconciliation
from data_platform.checks import QUALITY_CHECKS
from data_platform.operations.backup_schedule import daily_backup
from data_platform.operations.restore_journal import finish_interrupted_restores
from data_platform.orchestration import heartbeat, pool_wait
from data_platform.orchestration.log_retention import build_log_retention_sensor
from data_platform.resources.build import build_resources
from data_platform.services.executor import build_executor
from data_platform.settings import load_settings
from data_platform.stream.definitions import stream_definitions

SETTINGS = load_settings()

# Steps waiting for a `duckdb` slot sleep, stop on SIGTERM and name the run they wait behind.
pool_wait.install()
# The process executing a run's steps beats, so that a run on another machine is known dead.
heartbeat.install(SETTINGS.run_heartbeat_seconds)

# A restore killed while putting its backup in place is finished before anything reads the home.
finish_interrupted_restores(SETTINGS)

# The event stream only when DATA_PLATFORM_KAFKA_BOOTSTRAP names a Kafka: without one, the topic's
# asset would never have data and its lag sensor would fail at every tick.
STREAM = stream_definitions(SETTINGS)

defs = dg.Definitions(
    # Freshness policies are set here, for the raw feeds and every mart; automation conditions
    # where each asset is defined (the dbt translator, the Python assets). Each table shows the
    # engine that holds it.
    assets=shown_on(
        SETTINGS.engine,
        with_freshness_policies(
            [
                *RAW_SOURCE_TABLE_ASSETS,
                *RAW_FILE_ASSETS,
                DEAD_LETTER_SPEC,
                *DBT_ASSETS,
                *ANALYTICS_ASSETS,
                *SCORECARD_ASSETS,
                *STREAM.assets,
            ]
        ),
    ),
    asset_checks=QUALITY_CHECKS,
    # Captured logs Dagster keeps for ever (purged ticks' files, old runs' stdout/stderr), and
    # the automation's evaluations it keeps a month: swept hourly (orchestration/log_retention.py).
    sensors=[
        *SENSORS,
        build_log_retention_sensor(SETTINGS.compute_log_days, SETTINGS.automation_evaluation_days),
        *STREAM.sensors,
    ],
    schedules=[daily_backup, weekly_source_reconciliation],
    resources=build_resources(SETTINGS),
    # Embedded: in the run's process. Every step that touches the warehouse is serialised by
    # the `duckdb` pool anyway, so a process per step (the multiprocess default) bought no
    # parallelism and cost ~5 s of imports per step. Distributed (DATA_PLATFORM_EXECUTOR=celery):
    # steps go to Celery workers, which import the Definitions once at start.
    executor=build_executor(SETTINGS),
)
