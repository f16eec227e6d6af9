"""`data_platform_kafka_consumer_lag{topic, partition}` for the Prometheus exporter.

Read at each scrape, like every other metric there. A broker that does not answer (within 2 s for
every request of a scrape together, so a scrape never hangs) gives `data_platform_kafka_up 0` and no lag series, rather than a
stale lag.
"""

from __future__ import annotations

from collections.abc import Iterator

from confluent_kafka import KafkaException
from prometheus_client.core import GaugeMetricFamily, Metric

from data_platform.stream.config import GROUP, TOPIC
from data_platform.stream.lag import consumer_lag
from data_platform.stream.security import PLAINTEXT, KafkaSecurity


def collect_kafka_lag(
    bootstrap: str | None,
    group: str = GROUP,
    topic: str = TOPIC,
    security: KafkaSecurity = PLAINTEXT,
) -> Iterator[Metric]:
    if not bootstrap:
        return  # no stream configured: no series at all
    up = GaugeMetricFamily(
        "data_platform_kafka_up", "1 when the event stream's Kafka answered this scrape."
    )
    lag = GaugeMetricFamily(
        "data_platform_kafka_consumer_lag",
        f"Messages in the topic not yet landed and committed by the sink (group {group}).",
        labels=["topic", "partition"],
    )
    try:
        lags = consumer_lag(bootstrap, group, topic, timeout=2.0, security=security)
    except KafkaException:
        up.add_metric([], 0)
        yield up
        return
    up.add_metric([], 1)
    for partition in lags:
        lag.add_metric([topic, str(partition.partition)], partition.lag)
    yield from (up, lag)
