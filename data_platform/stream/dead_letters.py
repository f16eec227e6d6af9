"""The dead-letter topic: messages the sink cannot land at all, with why and where they came from.

Headers name the reason (`not_utf8`, `too_large`, `empty`), a sentence a person can act on, and
the original topic, partition and offset, so a fixed message can be found and produced again.
Dead letters are flushed before the batch's file is published: a file on the landing zone
therefore implies its range's dead letters are on the topic. They are at-least-once: a crash
after the flush but before the file re-sends them, identifiable by their original offset.
"""

from __future__ import annotations

from confluent_kafka import KafkaException, Producer

from data_platform.stream.batch import Rejected


class DeadLetterError(RuntimeError):
    """The dead-letter topic refused a message: the sink stops before committing past it."""


class DeadLetters:
    def __init__(self, producer_settings: dict[str, object], topic: str, source_topic: str):
        self._producer = Producer(producer_settings)
        self._topic = topic
        self._source_topic = source_topic
        self._failures: list[str] = []

    def send(self, partition: int, rejected: list[Rejected]) -> None:
        for message in rejected:
            headers = [
                ("reason", message.reason.encode()),
                ("error", message.detail.encode()),
                ("original_topic", self._source_topic.encode()),
                ("original_partition", str(partition).encode()),
                ("original_offset", str(message.offset).encode()),
            ]
            self._produce(message.value, headers)
        self._producer.poll(0)

    def _produce(self, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        while True:
            try:
                self._producer.produce(
                    self._topic, value, headers=headers, on_delivery=self._delivered
                )
                return
            except BufferError:
                # The client's queue is full (queue.buffering.max.messages, 100,000): let it
                # send some first, instead of a crash that the restart would repeat.
                self._producer.poll(0.1)

    def _delivered(self, error, _message) -> None:
        if error is not None:
            self._failures.append(str(error))

    def close(self) -> None:
        """Every dead letter was flushed before its commit: nothing is left to send."""
        self._producer.close()

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every dead letter is acknowledged; raise if one was not."""
        try:
            left = self._producer.flush(timeout)
        except KafkaException as error:
            raise DeadLetterError(f"dead-letter topic {self._topic}: {error}") from error
        if left or self._failures:
            reason = self._failures[0] if self._failures else f"{left} not acknowledged"
            raise DeadLetterError(f"dead-letter topic {self._topic}: {reason}")
