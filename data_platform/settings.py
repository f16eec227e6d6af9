"""Environment -> typed settings.

Every setting of the contract's environment table (README.md, "Environment") is read here, so
a wrong value fails once, early, with one line that names the variable and says how to fix it;
AWS_ENDPOINT_URL, the AWS SDK's own, is checked here too, and every S3 client is made with it
(resources/landing.py's s3_client). Settings of one command or server (the services' ports,
backups' retention, the PII salt) are read by the module they configure.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import ParseResult, urlparse

from data_platform.stream.security import PLAINTEXT, KafkaSecurity, kafka_security

if TYPE_CHECKING:  # SQLAlchemy loads when a URL is read, not with the settings
    import sqlalchemy as sa

# rows_* series per source of `data-platform metrics`: a month of arrival days.
METRICS_DAYS = 31
# Seconds a new series of `data-platform metrics` reads 0 first (operations/series_hold.py):
# four scrapes at the shipped 30 s interval, so that three of them may be lost.
METRICS_NEW_SERIES_HOLD = 120
RUN_HEARTBEAT_SECONDS = 10
# Days a finished run's step stdout/stderr files are kept (orchestration/log_retention.py).
COMPUTE_LOG_DAYS = 30
# Days the automation's stored evaluations (the UI's Automation tab) are kept; Dagster's own: 30.
AUTOMATION_EVALUATION_DAYS = 3
CELERY_LEASE_SECONDS = 60
SPARK_RETRY_SECONDS_VARIABLE = "DATA_PLATFORM_SPARK_RETRY_SECONDS"
SPARK_RETRY_SECONDS = 60
DEFAULT_MEMORY_LIMIT = "512MB"
METRICS_PORT = 9108
# Port of the UI `make run` starts (the Makefile passes the same variable to `dagster dev`).
UI_PORT = 3000
KAFKA_LAG_ALERT = 100_000
# The mode mask of every file and folder the platform makes (its commands, `make run`, every
# service spawned): the warehouse holds raw personal data in clear, the Dagster instance's run
# databases and compute logs can hold secrets, Redis's AOF Celery's messages, and backups of the
# same data are owner-only (operations/backup_store.py). The login's umask (022 by default) left
# them readable by every user of the machine.
OWNER_ONLY_UMASK = 0o077


def is_whole_number(raw: str, minimum: int = 0, maximum: int | None = None) -> bool:
    """Whether a setting's text is a whole number within bounds. isdecimal(), not isdigit():
    '²' is a digit to isdigit() but no number to int(), which then raised a traceback instead
    of the setting's one-line error; ASCII only: int() reads '٣' as 3, which no shell or
    Makefile would."""
    if not (raw.isascii() and raw.isdecimal()):
        return False
    return minimum <= int(raw) and (maximum is None or int(raw) <= maximum)


# The largest counts of days and seconds a setting takes: beyond them a date overflowed at every
# metrics scrape (DATA_PLATFORM_METRICS_DAYS=740000), and a heartbeat's sleep killed its thread.
MAX_DAYS, MAX_SECONDS = 36500, 31536000


class SettingsError(ValueError):
    """A setting from the environment is missing or malformed; the message is one actionable line."""


def whole_number(
    env: dict[str, str],
    variable: str,
    default: int,
    wrong: str,
    fix: str,
    minimum: int = 0,
    maximum: int | None = None,
) -> int:
    """The number setting `variable` (`default` when unset), within bounds; else its one line:
    `<variable>='<text>' is not <wrong>: <fix>`."""
    raw = _env(env, variable) or str(default)
    if not is_whole_number(raw, minimum, maximum):
        raise SettingsError(f"{variable}={raw!r} is not {wrong}: {fix}")
    return int(raw)


class UsageError(ValueError):
    """A command's argument names nothing or is malformed; the message is one actionable line."""


@dataclass(frozen=True)
class Settings:
    home: Path
    warehouse: Path
    landing: str
    source_db_url: str
    start_date: date
    alert_webhook: str | None
    dagster_home: Path
    # Where a run's steps execute: in the run's own process (embedded), or on Celery workers
    # (distributed mode, `make -s services-env`), whose broker URL the executor reads itself.
    executor: str = "in_process"
    # Port of `data-platform metrics` (Prometheus text on 127.0.0.1).
    metrics_port: int = METRICS_PORT
    # Port of the UI on 127.0.0.1; checked here, as `dagster dev` took `abc` with a traceback,
    # exit 0 and its code servers left running.
    ui_port: int = UI_PORT
    # Arrival days (dt) of `data_platform_rows_*` the exporter serves, back from the newest.
    metrics_days: int = METRICS_DAYS
    # Seconds a job or duration label set first seen by the exporter reads 0 before its value.
    metrics_new_series_hold: int = METRICS_NEW_SERIES_HOLD
    # How often a run's process stores its heartbeat (orchestration/heartbeat.py).
    run_heartbeat_seconds: int = RUN_HEARTBEAT_SECONDS
    # Days a finished run's captured stdout/stderr are kept; 0: for ever.
    compute_log_days: int = COMPUTE_LOG_DAYS
    # Days the automation's evaluations are kept (Dagster keeps them 30, ~67 MB a landed day).
    automation_evaluation_days: int = AUTOMATION_EVALUATION_DAYS
    # How long a Celery worker's step outlives the worker before another worker takes it
    # (services/celery_lease.py).
    celery_lease_seconds: int = CELERY_LEASE_SECONDS
    # Kafka bootstrap servers of the event stream (`host:port,...`); None: no stream configured.
    kafka_bootstrap: str | None = None
    # How every Kafka client authenticates (stream/security.py); PLAINTEXT: no TLS, no SASL.
    kafka_security: KafkaSecurity = PLAINTEXT
    # Consumer lag (messages, summed over partitions) above which the lag sensor alerts.
    kafka_lag_alert: int = KAFKA_LAG_ALERT
    # The most memory DuckDB holds per connection before it spills to disk (a DuckDB size).
    duckdb_memory_limit: str = DEFAULT_MEMORY_LIMIT
    # Where the warehouse lives: an embedded DuckDB file (duckdb) or a Spark cluster (spark),
    # reached through its Spark Connect endpoint `spark_remote` (sc://host:port).
    engine: str = "duckdb"
    spark_remote: str | None = None
    # How long a Spark session waits for an endpoint that does not answer before its step
    # fails (resources/spark_retries.py).
    spark_retry_seconds: int = SPARK_RETRY_SECONDS


def _env(environ: dict[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


# The first day a partition may be: the landing sensor's cursor counts days from it in 16 bits
# (automation/landing_sensor.py), and a day before it failed every tick of the sensor.
FIRST_DAY = date(1970, 1, 1)


def parse_start_date(raw: str) -> date:
    try:
        start = date.fromisoformat(raw)
    except ValueError:
        start = None
    if start is None:
        raise SettingsError(
            f"DATA_PLATFORM_START_DATE={raw!r} is not a date: set it to YYYY-MM-DD, e.g. 2026-01-01"
        )
    if start < FIRST_DAY:
        raise SettingsError(
            f"DATA_PLATFORM_START_DATE={raw!r} is before {FIRST_DAY}, the first day the landing "
            f"sensor's cursor counts: set it to {FIRST_DAY} or later"
        )
    if start == date.max:  # Dagster's partitions looked for the day after: a traceback
        raise SettingsError(
            f"DATA_PLATFORM_START_DATE={raw!r} is the last date there is, with no day after it: "
            "set it to YYYY-MM-DD, e.g. 2026-01-01"
        )
    return start


def parsed_url(raw: str) -> ParseResult | None:
    """urlparse's reading of `raw`, or None when it raises: "Invalid IPv6 URL" for an unclosed
    `[` (s3://[x), or a port that is no number, which were tracebacks, not one line."""
    try:
        parsed = urlparse(raw)
        parsed.port  # noqa: B018 -- parsed on access, and raises there
    except ValueError:
        return None
    return parsed


# A URL's secrets: a pyspark `;token=` or a query's `password=` parameter, a password before
# the host (up to the first @, as SQLAlchemy reads it: a / in it is the password's).
SECRET_PARAMETER = re.compile(r"((?:token|password)=)[^;&\s]*", re.IGNORECASE)
PASSWORD = re.compile(r"(://[^/@:\s]*:)[^@\s]*@")


def masked(raw: str) -> str:
    """`raw` with its token and password shown as *** (as validate_db_url shows a URL): a
    wrong setting's line is printed and logged."""
    return PASSWORD.sub(r"\1***@", SECRET_PARAMETER.sub(r"\1***", raw))


def masked_url(url: sa.URL) -> str:
    """A database URL as a line may show it: its password masked where SQLAlchemy puts it
    (after the user) and where a driver also takes one (`?password=`, which SQLAlchemy's own
    rendering left in clear: in the run's log, its event log and its alert)."""
    return masked(url.render_as_string(hide_password=True))


# The characters S3 buckets, Kafka hosts and Kafka topics are named with.
NAME_CHARACTERS = "[A-Za-z0-9._-]"
# What botocore takes for a bucket's name (it refuses anything else with a message quoting it
# and two regular expressions): s3://user:secret@bucket/ read `user:secret@bucket` as the bucket.
S3_BUCKET = re.compile(NAME_CHARACTERS + "{1,255}")
# A URL's user information, whole: an S3 URL or endpoint takes none, so none of it is shown
# (a token alone before the @ is a secret too).
USERINFO = re.compile(r"(://)[^/@\s]*@")


def without_userinfo(raw: str) -> str:
    """`raw` as a line may show an S3 URL or endpoint: any user information as ***."""
    return USERINFO.sub(r"\1***@", masked(raw))


def s3_location_refusal(raw: str) -> str | None:
    """Why `raw`, an s3://bucket/prefix URL, names no bucket botocore takes; None when it does."""
    parsed = parsed_url(raw)
    if parsed is None or "@" in parsed.netloc or not S3_BUCKET.fullmatch(parsed.netloc):
        return (
            "names no S3 bucket (letters, digits, '.', '-' or '_'; no user, password or port: "
            "credentials go in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY): use s3://bucket/prefix"
        )
    return None


def location_refusal(raw: str) -> str | None:
    """Why `raw` names neither a local folder nor an s3://bucket/prefix (the landing zone, a
    backup's place); None when it does. A backup took `s3a://b/x`, `S3://b/x`, `gs://b/x` and
    `file:///x` for relative folders (`./s3a:/b/x`, in the working folder) and said it was
    verified; `?` or `#`, which urlparse drops, put it under another prefix than the one named."""
    if raw.startswith("s3://"):
        if "?" in raw or "#" in raw:
            return (
                "has a query or fragment (? or #), which S3 would not see: use "
                "s3://bucket/prefix, a prefix without ? or #"
            )
        return s3_location_refusal(raw)
    if "://" in raw:
        return (
            "is neither a local folder nor s3://bucket/prefix (S3 is written s3://, in lower case)"
        )
    return None


def validate_landing(raw: str) -> str:
    if raw.startswith("s3://"):
        parsed = parsed_url(raw)
        if parsed is None:
            raise SettingsError(
                f"DATA_PLATFORM_LANDING={without_userinfo(raw)!r} is not a URL: use "
                "s3://bucket/prefix"
            )
        if not parsed.netloc:
            raise SettingsError(
                f"DATA_PLATFORM_LANDING={without_userinfo(raw)!r} names no bucket: use "
                "s3://bucket/prefix"
            )
    if refusal := location_refusal(raw):
        raise SettingsError(f"DATA_PLATFORM_LANDING={without_userinfo(raw)!r} {refusal}")
    if raw.startswith("s3://"):
        return raw.rstrip("/")
    # A file there listed no landing file: every run read nothing and succeeded.
    return str(local_folder("DATA_PLATFORM_LANDING", raw))


def local_path(variable: str, raw: str) -> Path:
    """A local file or folder setting, absolute. A URL there was taken for a relative path:
    DATA_PLATFORM_WAREHOUSE=s3://bucket/w.duckdb made ./s3:/bucket/w.duckdb."""
    if "://" in raw:
        raise SettingsError(
            f"{variable}={masked(raw)!r} is a URL, not a local path: set a path on this machine"
        )
    return Path(raw).expanduser().absolute()


def nearest_existing(path: Path) -> Path:
    """`path`, or its nearest parent that exists: what a write there would meet first."""
    return next(p for p in (path, *path.parents) if p.exists())


def local_folder(variable: str, raw: str) -> Path:
    """A local folder setting: absent (made when first written) or a folder. A file there, or
    above it, failed every command later, as a bare NotADirectoryError naming no setting."""
    path = local_path(variable, raw)
    existing = nearest_existing(path)
    if not existing.is_dir():
        where = "a file" if existing == path else f"under the file {str(existing)!r}"
        raise SettingsError(
            f"{variable}={str(path)!r} is {where}, not a folder: set a folder's path (one that "
            "does not exist yet is made), or move the file away"
        )
    return path


def warehouse_file(raw: str) -> Path:
    """DATA_PLATFORM_WAREHOUSE: absent (made when first written) or a file. A folder there was
    DuckDB's "Could not read from file: Is a directory" in every step, naming no setting."""
    path = local_path("DATA_PLATFORM_WAREHOUSE", raw)
    if path.is_dir():
        raise SettingsError(
            f"DATA_PLATFORM_WAREHOUSE={str(path)!r} is a folder, not a DuckDB file: set the "
            f"file's path, e.g. {str(path / 'warehouse.duckdb')!r}"
        )
    return path


def require_writable_warehouse(warehouse: Path) -> None:
    """DuckDB writes the warehouse file, its WAL and its spill folder (`<file>.tmp`) beside it:
    a folder it cannot write (a read-only file system, where chmod does not stop root either)
    failed every step with "IO Error: Cannot open file ...", six of them and exit 1. Asked before
    a run (`materialize.preflight`), not at load: only writers need it. A folder not made yet
    is made by the first step: the nearest one that exists must take it."""
    why = unwritable_reason(warehouse)
    if why is None and warehouse.exists() and not os.access(warehouse, os.W_OK):
        why = f"{_access_reason(warehouse)}: {warehouse}"
    if why is None:
        return
    raise SettingsError(
        f"DATA_PLATFORM_WAREHOUSE={str(warehouse)!r} cannot be written ({why}): make its folder "
        "writable (a read-only or full disk, permissions), or point the setting at a file in "
        "one that is (unset, it is DATA_PLATFORM_HOME/warehouse.duckdb)"
    )


def unwritable_reason(path: Path) -> str | None:
    """Why no file can be made at `path`, naming the folder at fault (the nearest that exists
    is a file, or a folder this user may not write); None when one can."""
    folder = nearest_existing(path.parent)
    if not folder.is_dir():
        return f"Not a directory: {folder}"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{_access_reason(folder)}: {folder}"
    return None


def _access_reason(path: Path) -> str:
    """Why os.access refused writing `path`: a read-only file system, or permissions."""
    try:
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return "Read-only file system" if read_only else "Permission denied"


def refuse_instance_holding(instance: Path, parts: dict[str, Path | None]) -> None:
    """DAGSTER_HOME must be a folder of its own: a backup copies a SQLite instance's folder
    whole and a restore replaces it, so one holding the platform's home copied its own staging
    into the backup and a forced restore deleted the landing folder with the rest."""
    folder = os.path.normpath(instance)  # `..` too: absolute() keeps it
    for variable, part in parts.items():
        if part is not None and Path(os.path.normpath(part)).is_relative_to(folder):
            raise SettingsError(
                f"DAGSTER_HOME={str(instance)!r} holds {variable} ({str(part)!r}): a backup copies "
                "the instance's folder whole and a restore replaces it; set DAGSTER_HOME to a "
                "folder of its own (unset, it is DATA_PLATFORM_HOME/dagster_home)"
            )


def validate_db_url(raw: str) -> str:
    """A SQLAlchemy URL whose driver is installed (checked here, not at the first extraction's
    traceback); messages show it with its password masked."""
    import sqlalchemy as sa

    example = "use e.g. sqlite:////abs/path/app.db or postgresql://user@host/db"
    try:
        url = sa.engine.make_url(raw)
    except sa.exc.ArgumentError:
        raise SettingsError(
            f"DATA_PLATFORM_SOURCE_DB_URL is not a SQLAlchemy URL: {example}"
        ) from None
    except ValueError:  # make_url's int() of the port; its message would quote the URL
        raise SettingsError(
            "DATA_PLATFORM_SOURCE_DB_URL is not a SQLAlchemy URL (is its port a number?): "
            f"{example}"
        ) from None
    shown = masked_url(url)
    try:
        dialect = url.get_dialect()
    except sa.exc.NoSuchModuleError as err:
        raise SettingsError(
            f"DATA_PLATFORM_SOURCE_DB_URL={shown!r} names no installed SQLAlchemy driver "
            f"({err}): {example}"
        ) from None
    # get_dialect() only finds SQLAlchemy's dialect: the driver itself is imported here, or
    # mysql://... passed and every extraction failed with a ModuleNotFoundError.
    try:
        dialect.import_dbapi()
    except ImportError as err:
        raise SettingsError(
            f"DATA_PLATFORM_SOURCE_DB_URL={shown!r} needs the Python module {err.name or err}, "
            f"which is not installed: install the {url.get_driver_name()} driver's package into "
            f"the platform's venv, or {example}"
        ) from None
    # A relative path named another file in each process' working folder (the UI's, a run's, a
    # Celery worker's); `:memory:` an empty database at each connection: extractions found no
    # table, or another app's.
    sqlite_file = url.database and os.path.isabs(url.database)
    if url.get_backend_name() == "sqlite" and (url.host or not sqlite_file):
        raise SettingsError(
            f"DATA_PLATFORM_SOURCE_DB_URL={shown!r} is no SQLite file: give an absolute path "
            "after three slashes (four in all: sqlite:////abs/path/app.db)"
        )
    return raw


# What http.client sends as a URL: printable ASCII, no space (it refuses the rest with an
# InvalidURL whose message quotes the path, or fails to encode it).
URL_TEXT = re.compile(r"[!-~]+")


# What an S3 client is pointed at instead of AWS (MinIO, moto): the AWS SDK's own variable.
AWS_ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL"


def aws_endpoint_url(environ: dict[str, str]) -> str | None:
    """The S3 endpoint every client is made with (None: AWS). Checked with the settings, or
    botocore's "Invalid endpoint" was a traceback at the first S3 request."""
    raw = _env(environ, AWS_ENDPOINT_VARIABLE)
    if raw is None:
        return None
    parsed = parsed_url(raw)
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SettingsError(
            f"{AWS_ENDPOINT_VARIABLE}={without_userinfo(raw)!r} is not an http(s) URL: set it like "
            "http://127.0.0.1:9000 (an S3-compatible store), or unset it for AWS"
        )
    # botocore sends no user or password from the URL, and quoted the URL, password and all, in
    # "Could not connect to the endpoint URL" (every S3 command's line).
    if "@" in parsed.netloc:
        raise SettingsError(
            f"{AWS_ENDPOINT_VARIABLE}={without_userinfo(raw)!r} holds a user or password, which S3 "
            "clients do not send: set the endpoint without them, e.g. http://127.0.0.1:9000, and "
            "the credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    return raw


def validate_webhook(raw: str) -> str:
    """An http(s) URL urllib can send to. Its path is the secret (a Slack webhook's), so a
    line shows the scheme and host at most."""
    parsed = parsed_url(raw)
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SettingsError(
            "DATA_PLATFORM_ALERT_WEBHOOK is not an http(s) URL: set a full URL like "
            "https://hooks.slack.com/services/..., or unset it"
        )
    if not URL_TEXT.fullmatch(raw):
        shown = f"{parsed.scheme}://{parsed.hostname}/..."
        raise SettingsError(
            f"DATA_PLATFORM_ALERT_WEBHOOK={shown!r} has a space, a control or a non-ASCII "
            "character: set the URL exactly as given (percent-encoded), or unset it"
        )
    if "@" in parsed.netloc:
        # urllib sends no user information: every alert failed as "URLError: gaierror", as if
        # the host were unknown.
        raise SettingsError(
            f"DATA_PLATFORM_ALERT_WEBHOOK='{parsed.scheme}://***@{parsed.hostname}/...' holds a "
            "user or password, which the platform does not send: give a URL whose path carries "
            "the secret (as Slack's), or unset it"
        )
    return raw


SOURCE_DB_URL_VARIABLE = "DATA_PLATFORM_SOURCE_DB_URL"
ALERT_WEBHOOK_VARIABLE = "DATA_PLATFORM_ALERT_WEBHOOK"


def refuse_padding(environ: dict[str, str], variable: str) -> None:
    """The resources get `variable` as Dagster's EnvVar, resolved as set (a secret is never
    displayed), while these settings check it stripped: a URL with a trailing space passed
    here and then named no file or host. Its value is not shown: it may hold a secret."""
    raw = environ.get(variable, "")
    if raw.strip() and raw != raw.strip():
        raise SettingsError(
            f"{variable} has spaces or a line break around its value, which would be kept "
            "where it is used: remove the spaces around it"
        )


EXECUTORS = ("in_process", "celery")
CELERY_BROKER_VARIABLE = "DATA_PLATFORM_CELERY_BROKER"


# The brokers the platform's Celery workers are run with (Redis), and RabbitMQ's.
CELERY_BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")


def validate_executor(raw: str, environ: dict[str, str]) -> str:
    if raw not in EXECUTORS:
        raise SettingsError(
            f"DATA_PLATFORM_EXECUTOR={raw!r} is not an executor: use in_process (the default) "
            "or celery"
        )
    if raw != "celery":
        return raw
    broker = _env(environ, CELERY_BROKER_VARIABLE)
    if not broker:
        raise SettingsError(
            f"DATA_PLATFORM_EXECUTOR=celery needs {CELERY_BROKER_VARIABLE}, the Celery broker "
            'URL (e.g. redis://127.0.0.1:16379/0): run eval "$(make -s services-env)"'
        )
    # Celery took `garbage` for a transport module to import: ModuleNotFoundError at launch.
    parsed = parsed_url(broker)
    if parsed is None or parsed.scheme not in CELERY_BROKER_SCHEMES:
        raise SettingsError(
            f"{CELERY_BROKER_VARIABLE}={masked(broker)!r} is not a broker URL: set it like "
            'redis://127.0.0.1:16379/0 (eval "$(make -s services-env)" sets the local one)'
        )
    return raw


KAFKA_BOOTSTRAP_VARIABLE = "DATA_PLATFORM_KAFKA_BOOTSTRAP"


# A bootstrap server's host: a name, an IPv4 address or a bracketed IPv6 one. `u:secret@host`,
# `h1:9092;h2:9092` and `h :9092` were taken, then blamed on the broker, the first with its
# secret in the sink's line.
KAFKA_HOST = re.compile(NAME_CHARACTERS + r"+|\[[0-9A-Fa-f:.]+\]")


def validate_kafka_bootstrap(raw: str) -> str:
    servers = [s.strip() for s in raw.split(",")]
    for server in servers:
        host, _, port = server.rpartition(":")
        if not KAFKA_HOST.fullmatch(host) or not is_whole_number(port, 1, 65535):
            shown = re.sub(r"[^,]*@", "***@", raw)  # user information is a secret
            raise SettingsError(
                f"{KAFKA_BOOTSTRAP_VARIABLE}={shown!r} is not a list of host:port: set it like "
                "127.0.0.1:19092,broker2:9092 (credentials go in DATA_PLATFORM_KAFKA_USERNAME "
                "and DATA_PLATFORM_KAFKA_PASSWORD), or unset it (no event stream)"
            )
    return ",".join(servers)


ENGINES = ("duckdb", "spark")
ENGINE_VARIABLE = "DATA_PLATFORM_ENGINE"
SPARK_REMOTE_VARIABLE = "DATA_PLATFORM_SPARK_REMOTE"


def validate_engine(raw: str, spark_remote: str | None) -> str:
    if raw not in ENGINES:
        raise SettingsError(
            f"{ENGINE_VARIABLE}={raw!r} is not an engine: use duckdb (the default) or spark"
        )
    if raw == "spark" and not spark_remote:
        raise SettingsError(
            f"{ENGINE_VARIABLE}=spark needs {SPARK_REMOTE_VARIABLE}, the Spark Connect URL "
            '(e.g. sc://127.0.0.1:15002): run eval "$(make -s services-env)" after '
            "SERVICES=spark make services-up"
        )
    return raw


def validate_spark_remote(raw: str) -> str:
    """A Spark Connect URL: sc://host[:port][/;param=value...] (pyspark's own syntax). Its
    line shows a token as ***."""
    parsed = parsed_url(raw)
    if (
        parsed is None
        or parsed.scheme != "sc"
        or not parsed.hostname
        or (parsed.port is not None and parsed.port <= 0)
        or parsed.path.split(";")[0].strip("/")
    ):
        raise SettingsError(
            f"{SPARK_REMOTE_VARIABLE}={masked(raw)!r} is not a Spark Connect URL: set it like "
            "sc://127.0.0.1:15002 (a cluster's Connect server; ;token=... may follow a /)"
        )
    # pyspark refuses any other (quoting it, token and all, in every error of every session).
    if any(len(param.split("=")) != 2 for param in parsed.path.split(";")[1:]):
        raise SettingsError(
            f"{SPARK_REMOTE_VARIABLE}={masked(raw)!r} has a parameter that is not key=value with "
            "one '=', the only form pyspark reads (a token's base64 '=' padding included): "
            "use a token without '=', e.g. one issued as hex or base64url unpadded"
        )
    return raw


# A DuckDB size: number, unit, "i" when binary (512MB, 1.5GiB).
SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT])(i?)B$", re.IGNORECASE)


# The least memory limit: the data quality gate's connection holds half of it, and a DuckDB
# connection under 32MB ran out of memory counting a million distinct strings.
MIN_MEMORY_LIMIT, MIN_MEMORY_LIMIT_BYTES = "64MB", 64 * 1000**2


def size_bytes(size: str) -> float | None:
    """The bytes of a DuckDB size (KB = 1000 B, KiB = 1024 B); None when it is no size."""
    match = SIZE.match(size)
    if match is None:
        return None
    number, unit, binary = match.groups()
    return float(number) * (1024 if binary else 1000) ** ("KMGT".index(unit.upper()) + 1)


@functools.lru_cache
def duckdb_refusal(size: str) -> str | None:
    """Why DuckDB refuses `SET memory_limit` to `size` (first line, its error class dropped),
    or None. Asked of an in-memory DuckDB once per process: 99999999TB matched SIZE, then
    every warehouse connection failed with a ParserException."""
    import duckdb

    with duckdb.connect(":memory:") as conn:
        try:
            conn.execute(f"SET memory_limit = '{size}'")
        except duckdb.Error as err:
            return re.sub(r"^[\w ]*Error: ", "", str(err).splitlines()[0])
    return None


def parse_memory_limit(raw: str) -> str:
    fix = "set it like 1GB or 512MB (the most DuckDB holds before it spills to disk)"
    size = size_bytes(raw)
    if size is None:
        raise SettingsError(f"DATA_PLATFORM_DUCKDB_MEMORY_LIMIT={raw!r} is not a size: {fix}")
    if size < MIN_MEMORY_LIMIT_BYTES:  # 0MB, 1KB: DuckDB takes them, every query fails
        raise SettingsError(
            f"DATA_PLATFORM_DUCKDB_MEMORY_LIMIT={raw!r} is below {MIN_MEMORY_LIMIT}, too little "
            f"for the platform's queries: {fix}"
        )
    # The default is known good: no process pays the probe's ~0.1 s for it.
    refusal = None if raw == DEFAULT_MEMORY_LIMIT else duckdb_refusal(raw)
    if refusal:
        raise SettingsError(
            f"DATA_PLATFORM_DUCKDB_MEMORY_LIMIT={raw!r} is refused by DuckDB ({refusal}): "
            "set it like 1GB or 512MB"
        )
    return raw


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read the environment (README.md, "Environment") into Settings, applying its defaults."""
    env = dict(os.environ if environ is None else environ)
    for variable in (SOURCE_DB_URL_VARIABLE, SPARK_REMOTE_VARIABLE, ALERT_WEBHOOK_VARIABLE):
        refuse_padding(env, variable)
    aws_endpoint_url(env)  # read again where an S3 client is made (resources/landing.py)
    home = local_folder("DATA_PLATFORM_HOME", _env(env, "DATA_PLATFORM_HOME") or ".data_platform")
    warehouse = _env(env, "DATA_PLATFORM_WAREHOUSE")
    landing = _env(env, "DATA_PLATFORM_LANDING")
    db_url = _env(env, SOURCE_DB_URL_VARIABLE)
    webhook = _env(env, ALERT_WEBHOOK_VARIABLE)
    dagster_home = _env(env, "DAGSTER_HOME")
    bootstrap = _env(env, KAFKA_BOOTSTRAP_VARIABLE)
    spark_remote = _env(env, SPARK_REMOTE_VARIABLE)
    spark_remote = validate_spark_remote(spark_remote) if spark_remote else None
    warehouse_path = warehouse_file(warehouse) if warehouse else home / "warehouse.duckdb"
    landing = validate_landing(landing or str(home / "landing"))
    instance = local_folder("DAGSTER_HOME", dagster_home) if dagster_home else home / "dagster_home"
    refuse_instance_holding(
        instance,
        {
            "DATA_PLATFORM_HOME": home,
            "DATA_PLATFORM_WAREHOUSE": warehouse_path,
            "DATA_PLATFORM_LANDING": None if landing.startswith("s3://") else Path(landing),
        },
    )
    return Settings(
        home=home,
        warehouse=warehouse_path,
        landing=landing,
        source_db_url=validate_db_url(db_url) if db_url else f"sqlite:///{home / 'source.db'}",
        start_date=parse_start_date(_env(env, "DATA_PLATFORM_START_DATE") or "2026-01-01"),
        alert_webhook=validate_webhook(webhook) if webhook else None,
        dagster_home=instance,
        executor=validate_executor(_env(env, "DATA_PLATFORM_EXECUTOR") or "in_process", env),
        metrics_port=whole_number(
            env,
            "DATA_PLATFORM_METRICS_PORT",
            METRICS_PORT,
            "a TCP port",
            f"set a number from 1 to 65535, e.g. {METRICS_PORT} (the default)",
            1,
            65535,
        ),
        ui_port=whole_number(
            env,
            "DATA_PLATFORM_UI_PORT",
            UI_PORT,
            "a TCP port",
            f"set a number from 1 to 65535, e.g. {UI_PORT} (the default)",
            1,
            65535,
        ),
        metrics_days=whole_number(
            env,
            "DATA_PLATFORM_METRICS_DAYS",
            METRICS_DAYS,
            "a number of days from 1 to 36500",
            f"set e.g. {METRICS_DAYS} (the default), how many days of rows_* series the metrics "
            "serve",
            1,
            MAX_DAYS,
        ),
        metrics_new_series_hold=whole_number(
            env,
            "DATA_PLATFORM_METRICS_NEW_SERIES_HOLD",
            METRICS_NEW_SERIES_HOLD,
            "a whole number of seconds up to 86400",
            f"set e.g. {METRICS_NEW_SERIES_HOLD} (the default), at least 2-3 Prometheus scrape "
            "intervals",
            0,
            86400,
        ),
        run_heartbeat_seconds=whole_number(
            env,
            "DATA_PLATFORM_RUN_HEARTBEAT_SECONDS",
            RUN_HEARTBEAT_SECONDS,
            "a whole number of seconds from 1 to 3600",
            f"set e.g. {RUN_HEARTBEAT_SECONDS} (the default): a run's process that misses its "
            "beats is taken for dead",
            1,
            3600,
        ),
        compute_log_days=whole_number(
            env,
            "DATA_PLATFORM_COMPUTE_LOG_DAYS",
            COMPUTE_LOG_DAYS,
            "a whole number of days up to 36500",
            f"set e.g. {COMPUTE_LOG_DAYS} (the default), how long a finished run's step stdout "
            "and stderr are kept, or 0 to keep them for ever",
            0,
            MAX_DAYS,
        ),
        automation_evaluation_days=whole_number(
            env,
            "DATA_PLATFORM_AUTOMATION_EVALUATION_DAYS",
            AUTOMATION_EVALUATION_DAYS,
            "a whole number of days from 1 to 30",
            f"set e.g. {AUTOMATION_EVALUATION_DAYS} (the default), how long the UI's Automation "
            "tab keeps why each asset was or was not requested (Dagster deletes them at 30)",
            1,
            30,
        ),
        celery_lease_seconds=whole_number(
            env,
            "DATA_PLATFORM_CELERY_LEASE_SECONDS",
            CELERY_LEASE_SECONDS,
            "a whole number of seconds from 10 to 31536000 (a year)",
            f"set e.g. {CELERY_LEASE_SECONDS} (the default), longer than Redis may be unreachable",
            10,
            MAX_SECONDS,
        ),
        kafka_bootstrap=validate_kafka_bootstrap(bootstrap) if bootstrap else None,
        kafka_security=kafka_security(env),
        kafka_lag_alert=whole_number(
            env,
            "DATA_PLATFORM_KAFKA_LAG_ALERT",
            KAFKA_LAG_ALERT,
            "a positive number of messages",
            f"set e.g. {KAFKA_LAG_ALERT} (the default)",
            1,
        ),
        duckdb_memory_limit=parse_memory_limit(
            _env(env, "DATA_PLATFORM_DUCKDB_MEMORY_LIMIT") or DEFAULT_MEMORY_LIMIT
        ),
        engine=validate_engine(_env(env, ENGINE_VARIABLE) or "duckdb", spark_remote),
        spark_remote=spark_remote,
        spark_retry_seconds=whole_number(
            env,
            SPARK_RETRY_SECONDS_VARIABLE,
            SPARK_RETRY_SECONDS,
            "a whole number of seconds from 1 to 31536000 (a year)",
            f"set e.g. {SPARK_RETRY_SECONDS} (the default), longer than the cluster may be away",
            1,
            MAX_SECONDS,
        ),
    )


def main() -> int:
    """`python -m data_platform.settings`: the warehouse file's path, for the Makefile's dbt
    manifest; a wrong setting is its one line and exit 2, as in `data-platform`."""
    try:
        print(load_settings().warehouse)
    except SettingsError as err:
        print(f"data-platform: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
