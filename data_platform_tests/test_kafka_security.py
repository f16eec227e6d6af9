"""Kafka client security (stream/security.py): what each protocol hands librdkafka, that every
client of the platform is made with it, and that a client whose protocol the broker does not
speak fails in one line, in bounded time.

The local broker (tansu 0.6.0) speaks neither TLS nor SASL and cannot be made to authenticate
(/tmp/kafkaauth/NOTES.md, README "The Kafka broker takes anyone"), so the real-broker half can
only show the mismatch path; a successful SASL login needs a real cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from data_platform.stream import topics
from data_platform.stream.config import SinkConfig
from data_platform.stream.lag import consumer_lag
from data_platform.stream.lag_metrics import collect_kafka_lag
from data_platform.stream.security import PLAINTEXT, KafkaSecurity, librdkafka_settings

SECRET = "SECRETPART"
DAY = date(2026, 1, 1)
SASL = KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-512", "platform", SECRET)
SASL_ENV = {
    "DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "DATA_PLATFORM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "DATA_PLATFORM_KAFKA_USERNAME": "platform",
    "DATA_PLATFORM_KAFKA_PASSWORD": SECRET,
}
SECURITY_KEYS = {"security.protocol", "sasl.mechanism", "sasl.username", "sasl.password"}


@pytest.mark.parametrize(
    ("security", "expected"),
    [
        (PLAINTEXT, {}),
        (KafkaSecurity("SSL"), {"security.protocol": "SSL"}),
        (
            KafkaSecurity("SSL", ca_file=Path("/etc/ca.pem")),
            {"security.protocol": "SSL", "ssl.ca.location": "/etc/ca.pem"},
        ),
        (
            KafkaSecurity("SASL_PLAINTEXT", "PLAIN", "u", "pw"),
            {
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "PLAIN",
                "sasl.username": "u",
                "sasl.password": "pw",
            },
        ),
        (
            KafkaSecurity("SASL_SSL", "SCRAM-SHA-256", "u", "pw", Path("/etc/ca.pem")),
            {
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-256",
                "sasl.username": "u",
                "sasl.password": "pw",
                "ssl.ca.location": "/etc/ca.pem",
            },
        ),
    ],
)
def test_each_protocol_gives_exactly_its_librdkafka_keys(security, expected):
    assert librdkafka_settings(security) == expected


def test_plaintext_leaves_the_sinks_clients_as_they_were():
    config = SinkConfig("127.0.0.1:9092", first_day=DAY)
    for settings in (config.consumer_settings(), config.producer_settings()):
        assert not SECURITY_KEYS & settings.keys()
        assert settings["bootstrap.servers"] == "127.0.0.1:9092"


def test_the_sinks_three_clients_all_authenticate():
    """The consumer, the dead-letter producer and the admin client (topic ids): one left out
    would connect without credentials and never be answered by the cluster."""
    config = SinkConfig("broker:9096", first_day=DAY, security=SASL)
    for settings in (
        config.consumer_settings(),
        config.producer_settings(),
        config.admin_settings(),
    ):
        assert {k: settings[k] for k in SECURITY_KEYS} == librdkafka_settings(SASL)
    assert config.consumer_settings()["enable.auto.commit"] is False  # its own keys kept


def test_a_refused_login_or_tls_says_which_setting_to_check_never_the_password():
    auth = topics.kafka_error_line(
        "b:9096", KafkaException(KafkaError(KafkaError._AUTHENTICATION, "SASL failed")), SASL
    )
    assert auth.startswith("Kafka at b:9096: SASL failed: the broker refused the credentials")
    assert "DATA_PLATFORM_KAFKA_PASSWORD" in auth and SECRET not in auth
    tls = topics.kafka_error_line(
        "b:9093", KafkaException(KafkaError(KafkaError._SSL, "handshake")), KafkaSecurity("SSL")
    )
    assert "DATA_PLATFORM_KAFKA_CA_FILE" in tls


# The real broker: tansu speaks neither SASL nor TLS, so a client that does gets no answer.


@pytest.mark.parametrize(
    "env",
    [SASL_ENV, {"DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL": "SSL"}],
    ids=["sasl_plaintext", "ssl"],
)
def test_a_sink_whose_protocol_the_broker_does_not_speak_is_one_line_and_exit_1(
    kafka_broker, settings, monkeypatch, env
):
    """With the settings ignored, the sink connected in PLAINTEXT and ran on: here it is killed
    at the timeout and the test fails. Honoured, the broker never answers the handshake and the
    sink stops on the unreachable-broker path, naming the bootstrap and the protocol."""
    monkeypatch.setenv("DATA_PLATFORM_KAFKA_BOOTSTRAP", kafka_broker.bootstrap)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    topic = f"events-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    try:
        consume = subprocess.run(
            [sys.executable, "-m", "data_platform.cli", "consume", "--topic", topic],
            capture_output=True,
            text=True,
            timeout=45,
            env=dict(os.environ),
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"the sink ran on with its security settings ignored: {expired.stderr!r}")
    elapsed = time.monotonic() - started
    lines = [line for line in (consume.stdout + consume.stderr).splitlines() if line.strip()]
    assert consume.returncode == 1 and "Traceback" not in consume.stderr, lines
    assert elapsed < 30, elapsed  # ensure_topics' 10 s, plus the interpreter's start
    assert len(lines) <= 3, lines
    protocol = env["DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL"]
    assert lines[-1].startswith(f"data-platform consume: Kafka at {kafka_broker.bootstrap}: "), (
        lines
    )
    assert f"DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL={protocol}" in lines[-1], lines
    assert SECRET not in consume.stdout + consume.stderr
    assert topic not in topics_of(kafka_broker.bootstrap)  # it never got through


def topics_of(bootstrap: str) -> set[str]:
    from confluent_kafka.admin import AdminClient

    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)


def test_the_lag_client_and_the_exporter_use_the_security_settings(kafka_broker):
    """In PLAINTEXT the same calls answer (an empty lag, kafka_up 1); with SASL the broker
    never answers, within the lag client's own bound."""
    topic = f"events-{uuid.uuid4().hex[:8]}"
    topics.ensure_topics(kafka_broker.bootstrap, topic)
    assert len(consumer_lag(kafka_broker.bootstrap, "g", topic, timeout=5)) == 2
    started = time.monotonic()
    with pytest.raises(KafkaException):
        consumer_lag(kafka_broker.bootstrap, "g", topic, timeout=2.0, security=SASL)
    assert time.monotonic() - started < 5
    up = {
        m.name: m.samples[0].value
        for m in collect_kafka_lag(kafka_broker.bootstrap, "g", topic, security=SASL)
    }
    assert up == {"data_platform_kafka_up": 0}


def test_simulate_to_kafka_uses_the_security_settings(kafka_broker, settings, tmp_path):
    """`simulate --to-kafka` makes its own clients (topic creation, producer): in SASL against
    a broker that speaks none, one line and exit 1, no events produced."""
    from data_platform_tests.test_cli import run_cli

    done = run_cli(
        Path(settings.home),
        "simulate",
        "--to-kafka",
        "--days",
        "1",
        "--events-per-day",
        "10",
        "--quiet",
        DATA_PLATFORM_KAFKA_BOOTSTRAP=kafka_broker.bootstrap,
        **SASL_ENV,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"simulate: Kafka at {kafka_broker.bootstrap}: "), done.stderr
    assert "SASL_PLAINTEXT" in last and SECRET not in done.stdout + done.stderr


def test_the_definitions_lag_sensor_uses_the_settings_security(kafka_broker, tmp_path):
    """The sensor as the Definitions build it from the settings: with SASL against a broker
    that speaks none, its tick is a skip (no answer), not a lag read in PLAINTEXT."""
    import dagster as dg

    from data_platform.resources.alerts import AlertWebhook
    from data_platform.settings import load_settings
    from data_platform.stream.definitions import stream_definitions

    environ = {
        "DATA_PLATFORM_HOME": str(tmp_path),
        "DATA_PLATFORM_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        **SASL_ENV,
    }
    [sensor] = stream_definitions(load_settings(environ)).sensors
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"alerts": AlertWebhook()})
        tick = sensor(context)
    assert isinstance(tick, dg.SkipReason), tick
    assert tick.skip_message.startswith(f"Kafka at {kafka_broker.bootstrap} did not answer")
    assert SECRET not in tick.skip_message
