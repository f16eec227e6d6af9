"""The topics the stream needs, created when missing (a real cluster may forbid auto-creation)."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from data_platform.stream.config import dlq_topic


def ensure_topics(bootstrap: str, topic: str, partitions: int = 2) -> None:
    """Create `topic` and its dead-letter topic unless they exist; existing ones are left as is."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=10).topics
    wanted = [
        NewTopic(name, num_partitions=partitions, replication_factor=1)
        for name in (topic, dlq_topic(topic))
        if name not in existing
    ]
    if not wanted:
        return
    for future in admin.create_topics(wanted, operation_timeout=10).values():
        try:
            future.result()
        except KafkaException as error:
            # Another process created it between the listing and here: what we wanted.
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
