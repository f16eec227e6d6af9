"""What the event stream adds to the Definitions, when a Kafka is configured."""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

from data_platform.settings import Settings


@dataclass(frozen=True)
class StreamDefinitions:
    assets: list[dg.AssetSpec] = field(default_factory=list)
    sensors: list[dg.SensorDefinition] = field(default_factory=list)


def stream_definitions(settings: Settings) -> StreamDefinitions:
    if not settings.kafka_bootstrap:
        return StreamDefinitions()
    # Imported only with a stream: the Kafka client costs nothing to a platform without one.
    from data_platform.stream.assets import KAFKA_EVENTS_SPEC, build_lag_sensor

    sensor = build_lag_sensor(
        settings.kafka_bootstrap, settings.kafka_lag_alert, security=settings.kafka_security
    )
    return StreamDefinitions(assets=[KAFKA_EVENTS_SPEC], sensors=[sensor])
