"""What the sink and its observers agree on: topic names, the consumer group, batch limits."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from data_platform.settings import NAME_CHARACTERS
from data_platform.stream.security import PLAINTEXT, KafkaSecurity, client_settings

TOPIC = "events"
# The sink's consumer group: the lag the UI and Prometheus show is this group's.
GROUP = "data-platform-events-sink"
# Kafka's own default message.max.bytes: a larger value would not have reached most brokers.
MAX_MESSAGE_BYTES = 1_000_000
# Kafka's sizes are 32-bit (2,147,483,647 at most), and the dead-letter topic takes its headers'
# room (`topics.DLQ_HEADROOM`) on top of the topic's limit.
MAX_MESSAGE_BYTES_LIMIT = 2_000_000_000
# Kafka's topic names: 1 to 249 letters, digits, `.`, `_` or `-`; the dead-letter topic's adds
# `.dlq`, and Kafka refuses `.` and `..`.
MAX_TOPIC_NAME = 249 - len(".dlq")
TOPIC_NAME = re.compile(rf"(?!\.\.?$){NAME_CHARACTERS}{{1,{MAX_TOPIC_NAME}}}")
FETCH_MAX_BYTES = 64 * 1024 * 1024


def _start_date() -> date:
    from data_platform.settings import load_settings

    return load_settings().start_date


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


@dataclass(frozen=True)
class SinkConfig:
    """A batch is flushed when it reaches any of the three limits (messages, bytes, seconds)."""

    bootstrap: str
    topic: str = TOPIC
    group: str = GROUP
    max_batch_messages: int = 100_000
    max_batch_bytes: int = 64 * 1024 * 1024
    max_batch_seconds: float = 5.0
    max_message_bytes: int = MAX_MESSAGE_BYTES
    # The first day a message may be filed under: DATA_PLATFORM_START_DATE, the first partition.
    first_day: date = field(default_factory=lambda: _start_date())
    # How the sink's three clients authenticate (DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL...).
    security: KafkaSecurity = PLAINTEXT

    @property
    def dlq_topic(self) -> str:
        return dlq_topic(self.topic)

    def consumer_settings(self) -> dict[str, object]:
        return client_settings(
            self.bootstrap,
            self.security,
            {
                "group.id": self.group,
                # Offsets are committed by hand, only once a batch's file is durable.
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                # A member that stops polling this long is dropped. Low (STACK_NOTES: tansu's
                # rejoins stall otherwise): the sink polls every half second and flushes in well
                # under a second, and a member killed with -9 is replaced within this time.
                "max.poll.interval.ms": 10_000,
                "session.timeout.ms": 6_000,
                # Big fetches: Python's cost is per call, not per byte.
                "fetch.max.bytes": FETCH_MAX_BYTES,
                "max.partition.fetch.bytes": 16 * 1024 * 1024,
                "queued.max.messages.kbytes": 256 * 1024,
                # Once a partition's local queue holds queued.min.messages (100,000: one batch),
                # librdkafka pauses its fetches for this long, 1 s by default: the sink then waited
                # on it for over half of its wall time (1M events: 12 s wall, 4.3 s CPU).
                "fetch.queue.backoff.ms": 10,
                # A response larger than this (100 MB by default) is refetched for good: one
                # message over it (tansu enforces no size) stalled its partition, and every other
                # partition of that broker, landing nothing. At the maximum it reaches the sink,
                # which dead-letters it as too large.
                "receive.message.max.bytes": 2_147_483_647,
            },
        )

    def producer_settings(self) -> dict[str, object]:
        return client_settings(
            self.bootstrap,
            self.security,
            {
                # A dead letter must not be lost or doubled by a retry inside the client.
                "enable.idempotence": True,
                # Whatever the sink could fetch it can set aside (librdkafka's default is 1 MB).
                "message.max.bytes": FETCH_MAX_BYTES,
            },
        )

    def admin_settings(self) -> dict[str, object]:
        return client_settings(self.bootstrap, self.security)
