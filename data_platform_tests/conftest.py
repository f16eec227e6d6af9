"""Shared fixtures: an isolated platform home per test, and real servers (S3, PostgreSQL)."""

from __future__ import annotations

import contextlib
import shlex
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import text

from data_platform.resources.build import build_resources
from data_platform.resources.landing import LandingZone
from data_platform.services.base import start
from data_platform.services.config import ServicesConfig, load_services_config
from data_platform.services.kafka_broker import KafkaBroker
from data_platform.services.postgres import Postgres
from data_platform.settings import Settings, load_settings
from data_platform_tests.helpers import environ_without_settings, free_port, run_services

PLATFORM_VARIABLES = (
    "DATA_PLATFORM_WAREHOUSE",
    "DATA_PLATFORM_LANDING",
    "DATA_PLATFORM_SOURCE_DB_URL",
    "DATA_PLATFORM_ALERT_WEBHOOK",
    "DAGSTER_HOME",
)


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    """Settings whose every location is inside this test's temp folder."""
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path / "home"))
    for name in PLATFORM_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return load_settings()


@pytest.fixture
def resources(settings) -> dict:
    return build_resources(settings)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 for the whole session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_landing(s3_endpoint, monkeypatch) -> LandingZone:
    """An empty bucket on the local S3 server, as a landing zone under a prefix."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"landing-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return LandingZone(url=f"s3://{bucket}/zone")


@contextlib.contextmanager
def services_home(prefix: str) -> Iterator[Path]:
    """A platform home for servers, outside pytest's temp root: as root, PostgreSQL runs as the
    `postgres` user, who must traverse every parent folder, and each new pytest session resets
    /tmp/pytest-of-<user> to 0700 (other sessions run beside this one)."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def services_config() -> Iterator[ServicesConfig]:
    """The session's services: state in a temp folder, free ports (each xdist worker runs its
    own servers side by side), started on first use."""
    with services_home("data_platform_services_") as home:
        yield load_services_config(
            {
                "DATA_PLATFORM_HOME": str(home),
                "DATA_PLATFORM_POSTGRES_PORT": str(free_port()),
                "DATA_PLATFORM_REDIS_PORT": str(free_port()),
            }
        )


@pytest.fixture(scope="session")
def postgres_server(services_config) -> Iterator[Postgres]:
    """A real PostgreSQL, started by the services mechanism, for the whole session."""
    server = Postgres(services_config)
    try:
        start(server)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_broker(services_config) -> Iterator[KafkaBroker]:
    """A real Kafka-protocol broker (tansu), started by the services mechanism on a free port."""
    port = {"DATA_PLATFORM_KAFKA_PORT": str(free_port())}
    broker = KafkaBroker(load_services_config({**services_config.environ, **port}))
    try:
        start(broker)
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def postgres_url(postgres_server) -> Iterator[str]:
    """A SQLAlchemy URL of a fresh, empty database, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    engine = postgres_server.admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield postgres_server.database_url(name)
    with engine.connect() as conn:
        # FORCE: a connection the test left open must not keep the database alive.
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))


# A fixed salt: the e-mail hashes of two platform homes compare equal.
PII_SALT = "distributed-test-salt"


@pytest.fixture(scope="session")
def distributed_stack() -> Iterator[dict[str, str]]:
    """PostgreSQL, Redis and two Celery workers, started by `python -m data_platform.services up`
    (what `make services-up` runs) in a platform home of their own; yields the environment
    that points a process at them (what `make -s services-env` prints, plus the platform's)."""
    with services_home("data_platform_distributed_") as home:
        yield from _distributed_stack(home)


def embedded_twin(env: dict[str, str], home: Path) -> dict[str, str]:
    """The environment of an embedded platform in `home` (SQLite instance, steps in the run's
    process) that reads the same sources as the distributed `env`."""
    sources = Path(env["DATA_PLATFORM_HOME"])
    (home / "dagster_home").mkdir(parents=True, exist_ok=True)
    return {
        **{k: v for k, v in env.items() if not k.startswith("DAGSTER_")},
        "DATA_PLATFORM_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster_home"),
        "DATA_PLATFORM_EXECUTOR": "in_process",
        "DATA_PLATFORM_LANDING": str(sources / "landing"),
        "DATA_PLATFORM_SOURCE_DB_URL": f"sqlite:///{sources / 'source.db'}",
    }


def services_env(home: Path, **settings: str) -> dict[str, str]:
    """This process's environment without the platform's settings, for servers of their own
    in `home` on free ports, plus `settings`."""
    inherited = environ_without_settings()
    inherited.pop("SERVICES", None)
    return {
        **inherited,
        "DATA_PLATFORM_HOME": str(home),
        "DATA_PLATFORM_POSTGRES_PORT": str(free_port()),
        "DATA_PLATFORM_REDIS_PORT": str(free_port()),
        **settings,
    }


def _distributed_stack(home: Path) -> Iterator[dict[str, str]]:
    # Short step leases: a lost worker's step is handed on in seconds (the default is 60).
    env = services_env(
        home, DATA_PLATFORM_PII_SALT=PII_SALT, DATA_PLATFORM_CELERY_LEASE_SECONDS="12"
    )

    try:
        up = run_services(env, "up")
        assert up.returncode == 0, up.stderr
        for line in run_services(env, "env").stdout.splitlines():
            name, _, value = shlex.split(line.removeprefix("export "))[0].partition("=")
            env[name] = value
        yield env
    finally:
        down = run_services(env, "down")
        assert down.returncode == 0, down.stderr
