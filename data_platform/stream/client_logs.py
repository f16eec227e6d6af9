"""librdkafka's own log lines, each kind once a minute instead of a flood.

Every Kafka client writes its library's lines to stderr itself: with the broker away, the sink
printed 45-195 lines like `%3|...|FAIL|rdkafka#producer-1| ... Connect to ... failed: Connection
refused` within 10 s (one per retry, every 50 ms), before its own one line saying what to do;
the metrics exporter and the lag sensor as many at each scrape and tick. Given a Python logger,
the clients hand their lines to it instead: a warning or worse of a kind (librdkafka's facility:
FAIL, SESSTMOUT...) not shown in the last minute is shown, the rest dropped; the platform's own
line still says what is wrong and what to do.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

# How long a kind of line stays quiet once shown.
QUIET_SECONDS = 60.0


class OncePerKind(logging.Filter):
    """Passes a record of a kind not passed within `seconds`, by `clock`. A librdkafka record's
    first argument is its facility."""

    def __init__(self, seconds: float = QUIET_SECONDS, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self._seconds, self._clock = seconds, clock
        self._shown: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        kind = str(args[0]) if args else record.getMessage()
        now = self._clock()
        if now - self._shown.get(kind, -self._seconds) < self._seconds:
            return False
        self._shown[kind] = now
        return True


def _client_logger() -> logging.Logger:
    logger = logging.getLogger("data_platform.kafka_client")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter(
                f"kafka client: %(message)s (lines of its kind held back for {QUIET_SECONDS:g} s)"
            )
        )
        handler.addFilter(OncePerKind())
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False
    return logger


def with_client_logger(settings: dict[str, object]) -> dict[str, object]:
    """A Kafka client's settings, its library's lines going to the platform's logger."""
    return {**settings, "logger": _client_logger()}
