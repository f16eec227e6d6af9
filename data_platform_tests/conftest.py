"""Shared fixtures: an isolated platform home per test, and a real S3-compatible server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from data_platform.resources.build import build_resources
from data_platform.resources.landing import LandingZone
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
