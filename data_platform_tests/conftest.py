"""Shared fixtures: an isolated platform home per test, and real servers (S3, PostgreSQL)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import text

from data_platform.resources.build import build_resources
from data_platform.resources.landing import LandingZone
from data_platform.services.base import start
from data_platform.services.config import ServicesConfig, load_services_config
from data_platform.services.postgres import Postgres, admin_engine, database_url
from data_platform.settings import Settings, load_settings

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


def free_port() -> int:
    """A port nothing listens on now: each xdist worker runs its own servers side by side."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def services_config(tmp_path_factory) -> ServicesConfig:
    """The session's services: state in a temp folder, free ports, started on first use."""
    return load_services_config(
        {
            "DATA_PLATFORM_HOME": str(tmp_path_factory.mktemp("services_home")),
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


@pytest.fixture
def postgres_url(postgres_server) -> Iterator[str]:
    """A SQLAlchemy URL of a fresh, empty database, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    engine = admin_engine(postgres_server.port)
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield database_url(postgres_server.port, name)
    with engine.connect() as conn:
        # FORCE: a connection the test left open must not keep the database alive.
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
