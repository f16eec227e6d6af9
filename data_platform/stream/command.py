"""`data-platform consume`: the sink on the command line, until SIGTERM or Ctrl-C (exit 0)."""

from __future__ import annotations

import argparse
import signal
import sys

from data_platform.stream.config import (
    GROUP,
    MAX_MESSAGE_BYTES_LIMIT,
    MAX_TOPIC_NAME,
    TOPIC,
    TOPIC_NAME,
    SinkConfig,
)


def _positive(kind: type[int] | type[float], at_most: float = float("inf")):
    """An argparse type: a number > 0 (0 dead-lettered every event, or flushed a file per
    message; a negative or nan limit never flushed), and finite, at most `at_most`."""

    def parse(text: str) -> int | float:
        try:
            number = kind(text)
        except ValueError:
            number = 0
        if not number > 0 or number == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} is not a positive {kind.__name__}")
        if number > at_most:
            raise argparse.ArgumentTypeError(f"{text!r} is more than {at_most:,} (Kafka's limit)")
        return number

    return parse


def _topic_name(text: str) -> str:
    """An argparse type: a name Kafka takes for the topic and its dead-letter topic (an empty
    one failed with a traceback from the first admin request)."""
    if not TOPIC_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Kafka topic name: 1 to {MAX_TOPIC_NAME} letters, digits, "
            "'.', '_' or '-' (its dead-letter topic adds .dlq)"
        )
    return text


def _group_name(text: str) -> str:
    """An argparse type: a consumer group librdkafka takes. A blank one (empty or only white
    space) aborted the sink inside the client's constructor: a C assertion, exit 134, no line."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a consumer group: give a name with a non-blank character "
            f"(default {GROUP})"
        )
    return text


def configure_parser(parser: argparse.ArgumentParser) -> None:
    defaults = SinkConfig(bootstrap="")
    add = parser.add_argument
    add(
        "--topic",
        type=_topic_name,
        default=TOPIC,
        help="topic to land (default %(default)s; dead letters: <topic>.dlq)",
    )
    add("--group", type=_group_name, default=GROUP, help="consumer group (default %(default)s)")
    add(
        "--max-batch-messages",
        type=_positive(int),
        default=defaults.max_batch_messages,
        help="flush a partition's batch at this many messages (default %(default)s)",
    )
    add(
        "--max-batch-bytes",
        type=_positive(int),
        default=defaults.max_batch_bytes,
        help="... or at this many bytes (default %(default)s)",
    )
    add(
        "--max-batch-seconds",
        type=_positive(float),
        default=defaults.max_batch_seconds,
        help="... or when it is this old (default %(default)s)",
    )
    add(
        "--max-message-bytes",
        type=_positive(int, at_most=MAX_MESSAGE_BYTES_LIMIT),
        default=defaults.max_message_bytes,
        help="larger messages go to the dead-letter topic (default %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from data_platform.resources.landing import LandingZone
    from data_platform.settings import KAFKA_BOOTSTRAP_VARIABLE, load_settings
    from data_platform.stream.dead_letters import DeadLetterError
    from data_platform.stream.landing_files import LandingError
    from data_platform.stream.sink import Sink
    from data_platform.stream.topics import TopicIdError, ensure_topics, kafka_error_line

    settings = load_settings()
    if not settings.kafka_bootstrap:
        print(
            f"data-platform consume: {KAFKA_BOOTSTRAP_VARIABLE} is not set: point it at Kafka "
            '(host:port,...) or start the local broker: SERVICES=kafka make services-up && eval "$(make -s services-env)"',
            file=sys.stderr,
        )
        return 2
    config = SinkConfig(
        bootstrap=settings.kafka_bootstrap,
        topic=args.topic,
        group=args.group,
        max_batch_messages=args.max_batch_messages,
        max_batch_bytes=args.max_batch_bytes,
        max_batch_seconds=args.max_batch_seconds,
        max_message_bytes=args.max_message_bytes,
        first_day=settings.start_date,
        security=settings.kafka_security,
    )
    try:
        ensure_topics(config.bootstrap, config.topic, security=config.security)
        sink = Sink(config, LandingZone(url=settings.landing), log_to_stderr)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, sink.stop)
        log_to_stderr(f"landing {config.topic} from {config.bootstrap} into {settings.landing}")
        sink.run()
    except (KafkaException, DeadLetterError, TopicIdError) as error:
        # Nothing past the last durable file was committed: a restart resumes there.
        line = kafka_error_line(config.bootstrap, error, config.security)
        print(f"data-platform consume: {line}", file=sys.stderr)
        return 1
    except LandingError as error:
        print(f"data-platform consume: {error}", file=sys.stderr)
        return 1
    log_to_stderr(f"stopped: {sink.landed} landed, {sink.dead_lettered} dead-lettered")
    return 0


def log_to_stderr(line: str) -> None:
    print(f"consume: {line}", file=sys.stderr, flush=True)
