"""Every sensor of the platform, all running from the start (`dagster dev` needs no clicks)."""

import dagster as dg

from data_platform.automation.alert_sensors import ALERT_SENSORS
from data_platform.automation.landing_sensor import landing_zone_sensor
from data_platform.automation.source_database_sensor import source_database_sensor

# Dagster's default automation sensor starts STOPPED. A tick costs well under a second on this
# graph, so every 15 s keeps the marts within a minute or two of their inputs.
AUTOMATION_SENSOR = dg.AutomationConditionSensorDefinition(
    "automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
)

SENSORS = [landing_zone_sensor, source_database_sensor, *ALERT_SENSORS, AUTOMATION_SENSOR]
