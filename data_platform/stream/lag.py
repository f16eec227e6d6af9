"""Consumer lag per partition: the topic's end offset minus the sink group's committed offset.

Read by a client of its own (no group membership, so it never triggers a rebalance), for the
Dagster sensor and the Prometheus exporter alike. A partition the group never committed lags by
everything in it. tansu, the local test broker, reports as end offset the first offset of the
newest produce batch plus one, so its lag can read lower than true by up to one batch; Kafka
reports the true end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from data_platform.stream.security import PLAINTEXT, KafkaSecurity, client_settings


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    start_offset: int
    end_offset: int
    committed: int | None  # None: the group has committed nothing on this partition yet

    @property
    def lag(self) -> int:
        start = self.committed if self.committed is not None else self.start_offset
        return max(0, self.end_offset - start)


def consumer_lag(
    bootstrap: str,
    group: str,
    topic: str,
    timeout: float = 5.0,
    security: KafkaSecurity = PLAINTEXT,
) -> list[PartitionLag]:
    """Lag of `group` on every partition of `topic`; KafkaException when the broker is away
    or has not answered every request within `timeout` seconds in all (not each: a request per
    partition would otherwise multiply it)."""
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(deadline - time.monotonic(), 0.001)

    client = Consumer(
        client_settings(bootstrap, security, {"group.id": group, "enable.auto.commit": False})
    )
    try:
        metadata = client.list_topics(topic, timeout=left()).topics[topic]
        if metadata.error is not None:
            return []  # no such topic yet: nothing produced, nothing to lag behind
        partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
        committed = client.committed(partitions, timeout=left())
        lags = []
        for tp in committed:
            offsets = client.get_watermark_offsets(tp, timeout=left(), cached=False)
            if offsets is None:
                # The client's answer to a timeout, not an exception: unpacked, a TypeError
                # that failed the whole scrape and the sensor's tick.
                raise KafkaException(
                    KafkaError(
                        KafkaError._TIMED_OUT, f"no watermarks of {tp.topic}[{tp.partition}]"
                    )
                )
            low, high = offsets
            lags.append(
                PartitionLag(tp.partition, low, high, tp.offset if tp.offset >= 0 else None)
            )
        return lags
    finally:
        client.close()
