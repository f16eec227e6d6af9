"""`simulate --to-kafka`: the simulated events go to the Kafka topic instead of event files.

The simulator renders its event files exactly as always (same lines, same defects); this
landing zone takes each event file it is handed and produces its lines, one message a line, to
the topic. Payments and every other file go to the real landing zone unchanged. A message's
timestamp is the simulated arrival time of its file (the start of its four-hour window, or the
start of a late file's arrival day, its folder), so the sink files every event under the same
dt as the file world does: the day it arrived. Blank lines are a file defect with no message
equivalent: they are not produced.
"""

from __future__ import annotations

import gzip
import re
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Producer

from data_platform.resources.landing import LandingFile, LandingZone
from data_platform.simulator.config import SimulationError
from data_platform.stream.security import PLAINTEXT, KafkaSecurity, client_settings

# `events/dt=<day>/20260105-0400.jsonl[.gz]` and `events/dt=<day>/late-20260103.jsonl`: the
# folder is the arrival day; a late file's name is the day of its events, not of its arrival.
_ARRIVAL = re.compile(
    r"^events/dt=(\d{4}-\d{2}-\d{2})/(?:\d{8}-(\d{2})00|late-\d{8})\.jsonl(?:\.gz)?$"
)


def arrival_ms(key: str) -> int:
    match = _ARRIVAL.match(key)
    if match is None:
        raise ValueError(f"not a simulated event file: {key}")
    hour = int(match[2]) if match[2] else 0
    moment = datetime.fromisoformat(match[1]).replace(hour=hour, tzinfo=UTC)
    return int(moment.timestamp() * 1000)


class KafkaEventsLanding:
    """The landing zone, except that event files are produced to `topic` line by line."""

    def __init__(
        self,
        landing: LandingZone,
        bootstrap: str,
        topic: str,
        security: KafkaSecurity = PLAINTEXT,
    ):
        self._landing = landing
        self._topic = topic
        self._producer = Producer(
            client_settings(bootstrap, security, {"linger.ms": 50, "enable.idempotence": True})
        )
        self._failures: list[str] = []
        self.produced = 0

    def list_files(self, prefix: str = "") -> list[LandingFile]:
        return self._landing.list_files(prefix)

    def delete_file(self, key: str) -> None:
        self._landing.delete_file(key)

    def upload_file(self, local_path: Path, key: str) -> None:
        if not key.startswith("events/"):
            self._landing.upload_file(local_path, key)
            return
        data = local_path.read_bytes()
        lines = (gzip.decompress(data) if key.endswith(".gz") else data).split(b"\n")
        timestamp = arrival_ms(key)
        for line in lines:
            if not line.strip():
                continue
            while True:
                try:
                    self._producer.produce(
                        self._topic, line, timestamp=timestamp, on_delivery=self._delivered
                    )
                    break
                except BufferError:  # the client's queue is full: let it send some first
                    self._producer.poll(0.1)
            self.produced += 1
        self._producer.poll(0)

    def _delivered(self, error, _message) -> None:
        if error is not None:
            self._failures.append(str(error))

    def flush(self) -> None:
        """Wait for every event to be acknowledged; raise with the first failure if one was not."""
        left = self._producer.flush(60)
        if left or self._failures:
            reason = self._failures[0] if self._failures else f"{left} events not acknowledged"
            raise SimulationError(f"producing to {self._topic}: {reason}")
