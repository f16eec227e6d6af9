"""How the platform's Kafka clients authenticate: TLS and SASL settings for every client it makes.

Production clusters (MSK, Confluent Cloud, Aiven, a self-hosted Kafka with SASL) take no client
without credentials. The five DATA_PLATFORM_KAFKA_* variables below are read once, with the other
settings (`load_settings`), into a `KafkaSecurity`, and `librdkafka_settings` turns it into the
keys every client of the platform is made with (`client_settings`): the sink's consumer, its
admin client and its dead-letter producer, the lag client of the sensor and the exporter, the
topic creation, and `simulate --to-kafka`. A setting that would be silently ignored (a password
with PLAINTEXT, a CA file without TLS) is refused: the client would connect without it and the
operator would believe it was used.

The password is a secret: it goes into the client's settings and nowhere else (no repr, no line).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from data_platform.stream.client_logs import with_client_logger

PROTOCOL_VARIABLE = "DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL"
MECHANISM_VARIABLE = "DATA_PLATFORM_KAFKA_SASL_MECHANISM"
USERNAME_VARIABLE = "DATA_PLATFORM_KAFKA_USERNAME"
PASSWORD_VARIABLE = "DATA_PLATFORM_KAFKA_PASSWORD"
CA_FILE_VARIABLE = "DATA_PLATFORM_KAFKA_CA_FILE"

# librdkafka's `security.protocol` values; the first is its default and the platform's.
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# The SASL mechanisms a username and password are enough for (GSSAPI needs Kerberos, OAUTHBEARER
# a token provider: neither is a password).
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaSecurity:
    """A validated combination: SASL fields are set exactly when `protocol` is SASL_*, and
    `ca_file` only with TLS (SSL, SASL_SSL)."""

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    # repr=False: a Settings printed or logged (a test's assertion, a debugger) shows no secret.
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")


PLAINTEXT = KafkaSecurity()


def librdkafka_settings(security: KafkaSecurity) -> dict[str, str]:
    """The librdkafka keys for `security`. PLAINTEXT adds none, so a platform that sets none
    of the variables makes its clients exactly as before."""
    if security.protocol == "PLAINTEXT":
        return {}
    settings = {"security.protocol": security.protocol}
    if security.uses_sasl:
        assert security.mechanism and security.username and security.password is not None
        settings |= {
            "sasl.mechanism": security.mechanism,
            "sasl.username": security.username,
            "sasl.password": security.password,
        }
    if security.ca_file is not None:
        settings["ssl.ca.location"] = str(security.ca_file)
    return settings


def client_settings(
    bootstrap: str, security: KafkaSecurity, settings: Mapping[str, object] | None = None
) -> dict[str, object]:
    """A Kafka client's whole settings: the brokers, how to authenticate to them, the client's
    own `settings`, and the platform's logger for its library's lines."""
    return with_client_logger(
        {"bootstrap.servers": bootstrap, **librdkafka_settings(security), **(settings or {})}
    )


def _value(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def kafka_security(environ: Mapping[str, str]) -> KafkaSecurity:
    """The five variables, validated; a wrong combination raises SettingsError, one line saying
    what is wrong and what to set, never the password."""
    from data_platform.settings import SettingsError, refuse_padding

    raw_protocol = _value(environ, PROTOCOL_VARIABLE) or "PLAINTEXT"
    protocol = raw_protocol.upper()  # librdkafka reads it in any case; show it as it documents
    if protocol not in PROTOCOLS:
        raise SettingsError(
            f"{PROTOCOL_VARIABLE}={raw_protocol!r} is not a Kafka security protocol: use "
            "PLAINTEXT (the default), SSL, SASL_PLAINTEXT or SASL_SSL (what the cluster's "
            "listener at DATA_PLATFORM_KAFKA_BOOTSTRAP expects)"
        )
    raw_mechanism = _value(environ, MECHANISM_VARIABLE)
    mechanism = raw_mechanism.upper() if raw_mechanism else None
    username = _value(environ, USERNAME_VARIABLE)
    # Not stripped: a password is taken as set; spaces around it are most likely a paste's.
    refuse_padding(dict(environ), PASSWORD_VARIABLE)
    password = environ.get(PASSWORD_VARIABLE) if _value(environ, PASSWORD_VARIABLE) else None
    raw_ca = _value(environ, CA_FILE_VARIABLE)
    ca_file = Path(raw_ca).expanduser() if raw_ca else None
    if protocol.startswith("SASL_"):
        if mechanism is None:
            raise SettingsError(
                f"{PROTOCOL_VARIABLE}={protocol} needs {MECHANISM_VARIABLE}: set PLAIN, "
                "SCRAM-SHA-256 or SCRAM-SHA-512, the one the cluster's listener enables"
            )
        if mechanism not in MECHANISMS:
            raise SettingsError(
                f"{MECHANISM_VARIABLE}={raw_mechanism!r} is not a SASL mechanism the platform "
                "can use: set PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
            )
        for variable, value in ((USERNAME_VARIABLE, username), (PASSWORD_VARIABLE, password)):
            if value is None:
                raise SettingsError(
                    f"{PROTOCOL_VARIABLE}={protocol} needs {variable}: set the cluster's "
                    f"credentials in {USERNAME_VARIABLE} and {PASSWORD_VARIABLE}"
                )
    else:
        given = [
            name
            for name, value in (
                (MECHANISM_VARIABLE, mechanism),
                (USERNAME_VARIABLE, username),
                (PASSWORD_VARIABLE, password),
            )
            if value is not None
        ]
        if given:
            raise SettingsError(
                f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} set but "
                f"{PROTOCOL_VARIABLE}={protocol} sends no credentials, so the clients would "
                "connect without them: set the protocol to SASL_SSL or SASL_PLAINTEXT, or unset "
                "them"
            )
    if ca_file is not None:
        if protocol not in ("SSL", "SASL_SSL"):
            raise SettingsError(
                f"{CA_FILE_VARIABLE} is set but {PROTOCOL_VARIABLE}={protocol} uses no TLS, so "
                "it would be ignored: set the protocol to SSL or SASL_SSL, or unset it"
            )
        problem = _unreadable(ca_file)
        if problem:
            raise SettingsError(
                f"{CA_FILE_VARIABLE}={str(ca_file)!r} {problem}: set the path of the PEM file "
                "of the CA that signed the brokers' certificates, or unset it to trust the "
                "system's CAs"
            )
    return KafkaSecurity(protocol, mechanism, username, password, ca_file)


def _unreadable(path: Path) -> str | None:
    """Why librdkafka could not read `path` as its CA file, or None. Checked here: the client
    reports a bad ssl.ca.location only when a client is made, as `ssl.ca.location failed:
    error:05880020:x509 certificate routines::BIO lib`, which names neither file nor variable."""
    if not path.exists():
        return "does not exist"
    if not path.is_file():
        return "is not a file"
    if not os.access(path, os.R_OK):
        return "is not readable by this user"
    return None
