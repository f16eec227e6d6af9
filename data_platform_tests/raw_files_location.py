"""A code location with the platform's own file-fed raw assets, landing sensor and run-failure
alerts, and nothing else: a real daemon can heal a run here in seconds, without dbt's minutes."""

import dagster as dg

from data_platform.assets.raw import DEAD_LETTER_SPEC, RAW_FILE_ASSETS
from data_platform.automation.alert_sensors import run_failure_alerts
from data_platform.automation.landing_sensor import landing_zone_sensor
from data_platform.orchestration import pool_wait
from data_platform.resources.build import build_resources
from data_platform.settings import load_settings

pool_wait.install()

defs = dg.Definitions(
    assets=[*RAW_FILE_ASSETS, DEAD_LETTER_SPEC],
    sensors=[landing_zone_sensor, run_failure_alerts],
    resources=build_resources(load_settings()),
    executor=dg.in_process_executor,
)
