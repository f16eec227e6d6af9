"""The topics the stream needs, created when missing (a real cluster may forbid auto-creation),
and the id that tells one incarnation of a topic from another of the same name.

Offsets identify a message only within one incarnation: a topic deleted and created again (or
every topic of tansu, kept in memory, after a restart) counts from 0 again. Kafka (>= 2.8) gives
each topic a UUID at creation, the same to every client for the topic's life and never reused,
so it names the incarnation wherever offsets are written down (landing file names).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from data_platform.stream.config import dlq_topic
from data_platform.stream.security import (
    CA_FILE_VARIABLE,
    MECHANISM_VARIABLE,
    PASSWORD_VARIABLE,
    PLAINTEXT,
    PROTOCOL_VARIABLE,
    USERNAME_VARIABLE,
    KafkaSecurity,
    client_settings,
)

_U64 = (1 << 64) - 1
# How long an admin request (describe a topic or its configs) waits for the broker.
ADMIN_TIMEOUT_SECONDS = 10.0
# Room for the headers a dead letter gains (reason, error, original_*): a few hundred bytes.
DLQ_HEADROOM = 16 * 1024


# librdkafka's codes for a broker that cannot be reached at all.
_UNREACHABLE = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._TIMED_OUT,
    KafkaError._RESOLVE,
}
# ... and for one that refused the client's SASL credentials.
_AUTHENTICATION = {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED}


def kafka_error_line(bootstrap: str, error: Exception, security: KafkaSecurity = PLAINTEXT) -> str:
    """One line for a Kafka error: librdkafka's own text, and when no broker answered or it
    refused the client, what to do (its KafkaError{code=_TRANSPORT,...} said nothing of the fix).

    A client speaking TLS or SASL to a listener that does not (or the reverse) is not told so:
    the connection just fails, as when no broker runs, so the line names the protocol too."""
    kafka = error.args[0] if isinstance(error, KafkaException) and error.args else None
    if not isinstance(kafka, KafkaError):
        return f"Kafka at {bootstrap}: {error}"
    line = f"Kafka at {bootstrap}: {kafka.str()}"
    code = kafka.code()
    if code in _AUTHENTICATION:
        line += (
            f": the broker refused the credentials: check {USERNAME_VARIABLE}, "
            f"{PASSWORD_VARIABLE} and {MECHANISM_VARIABLE}={security.mechanism}"
        )
    elif code == KafkaError._SSL:
        line += (
            f": the TLS handshake failed: check {CA_FILE_VARIABLE} (the CA that signed the "
            "brokers' certificates) and that the port is the cluster's TLS listener"
        )
    elif code in _UNREACHABLE and security.protocol != "PLAINTEXT":
        line += (
            f": no broker answered with {PROTOCOL_VARIABLE}={security.protocol}: check that "
            f"DATA_PLATFORM_KAFKA_BOOTSTRAP names the cluster's {security.protocol} listener "
            "(a broker serves each protocol on a port of its own) and that it runs"
        )
    elif code in _UNREACHABLE:
        line += (
            ": start the broker (the local one: SERVICES=kafka make services-up) or point "
            "DATA_PLATFORM_KAFKA_BOOTSTRAP at one that runs"
        )
    return line


class TopicIdError(RuntimeError):
    """The topic's incarnation is unknown or changed under the sink: landing on could adopt or
    replace another incarnation's files, so the sink stops before it publishes or commits."""


def ensure_topics(
    bootstrap: str, topic: str, partitions: int = 2, security: KafkaSecurity = PLAINTEXT
) -> None:
    """Create `topic` and its dead-letter topic unless they exist; existing ones are left as is.

    A dead-letter topic is created taking messages as large as `topic` takes, plus
    `DLQ_HEADROOM` for the sink's headers: its dead letters include the too-large ones."""
    admin = AdminClient(client_settings(bootstrap, security))
    existing = admin.list_topics(timeout=10).topics
    if topic not in existing:
        _create(admin, NewTopic(topic, num_partitions=partitions, replication_factor=1))
    dlq = dlq_topic(topic)
    if dlq in existing:
        return
    limit = _max_message_bytes(admin, topic)
    config = {} if limit is None else {"max.message.bytes": str(limit + DLQ_HEADROOM)}
    _create(admin, NewTopic(dlq, num_partitions=partitions, replication_factor=1, config=config))


def _create(admin: AdminClient, new: NewTopic) -> None:
    try:
        admin.create_topics([new], operation_timeout=10)[new.topic].result()
    except KafkaException as error:
        # Another process created it between the listing and here: what we wanted.
        if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise


def _answer(future: Future) -> Any:
    """The admin request's result, within ADMIN_TIMEOUT_SECONDS. Unanswered, the client raises
    a bare TimeoutError, which no caller took for Kafka's: the sink fell to the CLI's
    path-error branch (exit 2, a blank line). The incarnation is then unknown: TopicIdError."""
    try:
        return future.result(ADMIN_TIMEOUT_SECONDS)
    except TimeoutError:
        raise TopicIdError(f"no answer within {ADMIN_TIMEOUT_SECONDS:g} s") from None


def _max_message_bytes(admin: AdminClient, topic: str) -> int | None:
    """The topic's max.message.bytes; None where the broker names none (tansu, for a topic
    created without it: it enforces no limit) and the broker's default then applies."""
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entry = _answer(admin.describe_configs([resource])[resource]).get("max.message.bytes")
    return None if entry is None or entry.value is None else int(entry.value)


def describe_topic_id(admin: AdminClient, topic: str) -> str:
    """The topic's id as 32 hex digits.

    All 128 bits: only the whole id is unique. Kafka draws it at random (UUIDv4), but tansu
    makes UUIDv7s, whose leading 48 bits are the creation time in milliseconds, so a prefix is
    shared by topics created close together (two incarnations a second apart: 9 hex digits).
    Hex, not the base64 Kafka's tools print: that is case-sensitive, and librdkafka's holds `/`.
    """
    found = _answer(admin.describe_topics(TopicCollection([topic]))[topic])
    uuid = found.topic_id  # None, or all zeros, from a broker without topic ids
    if uuid is None or not (uuid.get_most_significant_bits() or uuid.get_least_significant_bits()):
        raise TopicIdError(
            f"the broker gives topic {topic} no topic id (Kafka before 2.8?): without one a "
            "recreated topic's files could not be told from the old one's"
        )
    # The client hands the halves over as signed 64-bit integers.
    high, low = uuid.get_most_significant_bits() & _U64, uuid.get_least_significant_bits() & _U64
    return f"{high:016x}{low:016x}"


def confirm_topic_id(admin: AdminClient, topic: str, assigned: str) -> None:
    """Raise unless the topic is still the incarnation `assigned` (its id at the assignment).

    Everything fetched since then belongs to that incarnation: an id names one incarnation only,
    so the topic cannot have been another one in between."""
    current = describe_topic_id(admin, topic)
    if current != assigned:
        raise TopicIdError(
            f"topic {topic} was deleted and created again while the sink ran (id {assigned} -> "
            f"{current}): the batch in hand was not landed; restart the sink"
        )
