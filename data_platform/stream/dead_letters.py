"""The dead-letter topic: messages the sink cannot land at all, with why and where they came from.

A dead letter is the original message (value, key, headers in their order) followed by the
sink's headers: the reason (`not_utf8`, `too_large`, `empty`, `line_break`, `bom`,
`bad_timestamp`, `no_timestamp`), a sentence a person can act on, and the original topic, partition, offset and
timestamp, so a fixed message can be found and produced again into its own day.
Dead letters are flushed before the batch's file is published: a file on the landing zone
therefore implies its range's dead letters are on the topic. They are at-least-once: a crash
after the flush but before the file re-sends them, identifiable by their original offset.

A dead letter the topic refuses as too large (its max.message.bytes is below the original
topic's, or the headers tipped it over) is sent again without its value, with a header saying
so: stopping instead would refuse it again at every restart, and the value is still on the
original topic, at the offset the headers name, until its retention. Refused again (a key or
headers that large: a tombstone with a 70 MB key stopped the sink at every restart), it is
sent with the sink's headers alone.
"""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from data_platform.stream.batch import Rejected

Headers = list[tuple[str, bytes | None]]
# The headers the sink adds after the message's own, in this order.
SINK_HEADERS = (
    "reason",
    "error",
    "original_topic",
    "original_partition",
    "original_offset",
    "original_timestamp",
)
OMITTED = "value_omitted"


class DeadLetterError(RuntimeError):
    """The dead-letter topic refused a message: the sink stops before committing past it."""


class DeadLetters:
    def __init__(
        self,
        producer_settings: dict[str, object],
        topic: str,
        source_topic: str,
        log: Callable[[str], None] = print,
    ):
        self._producer = Producer(producer_settings)
        self._topic = topic
        self._source_topic = source_topic
        self._log = log
        self._failures: list[str] = []
        self._too_large: list[tuple[bytes | None, Headers, int]] = []  # key, headers, size

    def send(self, partition: int, rejected: list[Rejected]) -> None:
        for message in rejected:
            headers = [
                *message.headers,
                ("reason", message.reason.encode()),
                ("error", message.detail.encode()),
                ("original_topic", self._source_topic.encode()),
                ("original_partition", str(partition).encode()),
                ("original_offset", str(message.offset).encode()),
                ("original_timestamp", str(message.timestamp).encode()),
            ]
            self._produce(message.value, message.key, headers)
        self._producer.poll(0)

    def _produce(self, value: bytes | None, key: bytes | None, headers: Headers) -> None:
        while True:
            try:
                self._producer.produce(
                    self._topic, value, key, headers=headers, on_delivery=self._delivered
                )
                return
            except BufferError:
                # The client's queue is full (queue.buffering.max.messages, 100,000): let it
                # send some first, instead of a crash that the restart would repeat.
                self._producer.poll(0.1)
            except KafkaException as error:
                too_large = error.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
                if not too_large or _bare(value, key, headers):
                    raise DeadLetterError(f"dead-letter topic {self._topic}: {error}") from error
                self._too_large.append((key, headers, len(value or b"")))
                return

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            return
        value, key, headers = message.value(), message.key(), message.headers() or []
        if error.code() == KafkaError.MSG_SIZE_TOO_LARGE and not _bare(value, key, headers):
            self._too_large.append((key, headers, len(value or b"")))
        else:
            self._failures.append(str(error))

    def close(self) -> None:
        """Every dead letter was flushed before its commit: nothing is left to send."""
        self._producer.close()

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every dead letter is acknowledged; raise if one was not."""
        left = self._flush(timeout)
        # Without its value; refused again, with the sink's headers alone (refused then, it is
        # in `_failures`).
        for _ in range(2):
            refused, self._too_large = self._too_large, []
            for key, headers, size in refused:
                self._send_smaller(key, headers, size)
            if refused:
                left = self._flush(timeout)
        # Taken, not kept: a sink that goes on after the error (a flush in the rebalance
        # callback logs it) must not have its next, acknowledged dead letters refused for it.
        failures, self._failures = self._failures, []
        if left or failures:
            reason = failures[0] if failures else f"{left} not acknowledged"
            raise DeadLetterError(f"dead-letter topic {self._topic}: {reason}")

    def _flush(self, timeout: float) -> int:
        try:
            return self._producer.flush(timeout)
        except KafkaException as error:
            raise DeadLetterError(f"dead-letter topic {self._topic}: {error}") from error

    def _send_smaller(self, key: bytes | None, headers: Headers, size: int) -> None:
        without_value = bool(headers) and headers[-1][0] == OMITTED
        ours = dict((headers[:-1] if without_value else headers)[-len(SINK_HEADERS) :])
        where = (
            f"{self._source_topic} partition {_text(ours.get('original_partition'))} offset "
            f"{_text(ours.get('original_offset'))}"
        )
        fix = f"give {self._topic} a max.message.bytes above {self._source_topic}'s"
        if size and not without_value:
            self._log(
                f"dead letter of {where}: {self._topic} refused it as too large, sent without "
                "its value"
            )
            omitted = (
                f"{size} bytes, over what {self._topic} takes: read the value from {where} "
                f"(until its retention); {fix}"
            )
            self._produce(None, key, [*headers, (OMITTED, omitted.encode())])
            return
        self._log(
            f"dead letter of {where}: {self._topic} refused it as too large without its value, "
            "sent with the sink's headers alone"
        )
        sink = [(name, ours.get(name)) for name in SINK_HEADERS]
        omitted = (
            f"its value, key ({len(key or b'')} bytes) and own headers were over what "
            f"{self._topic} takes: read the message from {where} (until its retention); {fix}"
        )
        self._produce(None, None, [*sink, (OMITTED, omitted.encode())])


def _bare(value: bytes | None, key: bytes | None, headers: Headers) -> bool:
    """Nothing left to leave out: no value, no key, the sink's headers alone.

    The sink's headers are told by their place (the last ones, `OMITTED` after them once a
    value was left out), not by their names: a message's own header may be named `error` or
    `reason` too, and one that large, counted as the sink's, was never left out (the sink
    stopped at every restart)."""
    ours = len(SINK_HEADERS) + (1 if headers and headers[-1][0] == OMITTED else 0)
    return not value and not key and len(headers) <= ours


def _text(value: bytes | None) -> str:
    return (value or b"?").decode(errors="replace")
