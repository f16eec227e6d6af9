"""The topic in the UI: an external asset `kafka/events` whose metadata is the sink's lag.

A sensor (not a run: reading lag takes milliseconds, and a blocking Kafka poll inside a sensor
would stall the daemon's heartbeat) reads the lag every 30 s and reports, without a run:
- an observation with the lag per partition, whenever it changed;
- a materialization whenever the group's committed offsets moved (new events landed), or, at
  most every 5 minutes, while the lag is 0 (nothing waits): so the freshness policy fails when
  the sink stops landing while events wait, not when the topic is merely quiet;
- one alert (the platform's alert resource) when the total lag crosses the threshold
  (DATA_PLATFORM_KAFKA_LAG_ALERT), and none again until it has come back under.
The freshness policy's FAIL alerts through the platform's freshness alert sensor as for any asset.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import dagster as dg
from confluent_kafka import KafkaException

from data_platform.partitions import OWNERS
from data_platform.resources.alerts import Alert, AlertWebhook
from data_platform.stream.config import GROUP, TOPIC
from data_platform.stream.lag import PartitionLag, consumer_lag
from data_platform.stream.security import PLAINTEXT, KafkaSecurity

KAFKA_EVENTS = dg.AssetKey(["kafka", "events"])
CAUGHT_UP_EVERY_SECONDS = 300

KAFKA_EVENTS_SPEC = dg.AssetSpec(
    KAFKA_EVENTS,
    description=f"Kafka topic `{TOPIC}`, landed by `data-platform consume` (group {GROUP}) as "
    "events/dt=…/kafka-<topic id>-<partition>-<first>-<last>.jsonl; metadata: consumer lag per "
    "partition.",
    group_name="stream",
    owners=OWNERS,
    kinds={"kafka"},
    freshness_policy=dg.FreshnessPolicy.time_window(
        fail_window=timedelta(minutes=30), warn_window=timedelta(minutes=10)
    ),
)


def lag_metadata(lags: list[PartitionLag]) -> dict[str, dg.MetadataValue]:
    table = "| partition | end offset | committed | lag |\n|---|---|---|---|\n" + "".join(
        f"| {p.partition} | {p.end_offset} | {p.committed if p.committed is not None else '-'} "
        f"| {p.lag} |\n"
        for p in lags
    )
    return {
        "lag_total": dg.MetadataValue.int(sum(p.lag for p in lags)),
        "lag_max_partition": dg.MetadataValue.int(max((p.lag for p in lags), default=0)),
        "lag_by_partition": dg.MetadataValue.md(table),
        **{f"lag_partition_{p.partition}": dg.MetadataValue.int(p.lag) for p in lags},
    }


def build_lag_sensor(
    bootstrap: str,
    threshold: int,
    group: str = GROUP,
    topic: str = TOPIC,
    security: KafkaSecurity = PLAINTEXT,
) -> dg.SensorDefinition:
    @dg.sensor(
        name="kafka_consumer_lag",
        description=f"The sink's consumer lag on `{TOPIC}` -> kafka/events metadata; "
        f"an alert above {threshold} messages.",
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
    )
    def kafka_consumer_lag(context: dg.SensorEvaluationContext, alerts: AlertWebhook):
        seen = json.loads(context.cursor) if context.cursor else {}
        try:
            lags = consumer_lag(bootstrap, group, topic, security=security)
        except KafkaException as error:
            return dg.SkipReason(f"Kafka at {bootstrap} did not answer: {error}")
        lag = {str(p.partition): p.lag for p in lags}
        committed = {str(p.partition): p.committed for p in lags}
        total, now = sum(lag.values()), time.time()
        metadata = lag_metadata(lags)
        events: list[dg.AssetObservation | dg.AssetMaterialization] = []
        if lag != seen.get("lag"):
            events.append(dg.AssetObservation(KAFKA_EVENTS, metadata=metadata))
        caught_up = total == 0 and now - seen.get("materialized_at", 0) >= CAUGHT_UP_EVERY_SECONDS
        if committed != seen.get("committed") or caught_up:
            events.append(dg.AssetMaterialization(KAFKA_EVENTS, metadata=metadata))
        alerting = total > threshold
        if alerting and not seen.get("alerting"):
            reason = f"consumer lag {total} messages (threshold {threshold}): is `data-platform consume` running?"
            alerts.send(
                Alert("Kafka sink is falling behind", reason, asset="kafka/events"), context.log
            )
        materialized = any(isinstance(e, dg.AssetMaterialization) for e in events)
        cursor = {
            "lag": lag,
            "committed": committed,
            "alerting": alerting,
            "materialized_at": now if materialized else seen.get("materialized_at", 0),
        }
        return dg.SensorResult(asset_events=events, cursor=json.dumps(cursor))

    return kafka_consumer_lag
