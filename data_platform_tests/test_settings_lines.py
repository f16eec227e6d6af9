"""A wrong setting, as a person meets it: one line naming the variable and the fix, exit 2 from
the CLI, no traceback, and never a secret (a webhook's path, a token, a password) in it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from data_platform.settings import SettingsError, load_settings
from data_platform_tests.helpers import environ_without_settings
from data_platform_tests.test_cli import REPO, run_cli, run_in_home

SECRET = "SECRETPART"


def one_line_error(tmp_path: Path, variables: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as raised:
        load_settings({"DATA_PLATFORM_HOME": str(tmp_path), **variables})
    message = str(raised.value)
    assert "\n" not in message
    assert SECRET not in message
    return message


# (variables, the exact line the CLI prints after "data-platform: ")
CLI_CASES = [
    (
        {"DATA_PLATFORM_ALERT_WEBHOOK": f"hooks.slack.com/services/T0/B0/{SECRET}"},
        "DATA_PLATFORM_ALERT_WEBHOOK is not an http(s) URL: set a full URL like "
        "https://hooks.slack.com/services/..., or unset it",
    ),
    (
        {"DATA_PLATFORM_ALERT_WEBHOOK": f"https://hooks.slack.com/services/T0/B0/{SECRET} x"},
        "DATA_PLATFORM_ALERT_WEBHOOK='https://hooks.slack.com/...' has a space, a control or a "
        "non-ASCII character: set the URL exactly as given (percent-encoded), or unset it",
    ),
    (
        {"DATA_PLATFORM_ALERT_WEBHOOK": f"http://[::1/{SECRET}"},
        "DATA_PLATFORM_ALERT_WEBHOOK is not an http(s) URL: set a full URL like "
        "https://hooks.slack.com/services/..., or unset it",
    ),
    (
        {"DATA_PLATFORM_SPARK_REMOTE": f"sc://host:15002;token={SECRET}"},
        "DATA_PLATFORM_SPARK_REMOTE='sc://host:15002;token=***' is not a Spark Connect URL: "
        "set it like sc://127.0.0.1:15002 (a cluster's Connect server; ;token=... may follow a /)",
    ),
    (  # pyspark's own error quoted it, token and all, wherever a session was opened
        {"DATA_PLATFORM_SPARK_REMOTE": f"sc://host:15002/;token={SECRET}==;use_ssl=true"},
        "DATA_PLATFORM_SPARK_REMOTE='sc://host:15002/;token=***;use_ssl=true' has a parameter "
        "that is not key=value with one '=', the only form pyspark reads (a token's base64 '=' "
        "padding included): use a token without '=', e.g. one issued as hex or base64url unpadded",
    ),
    (
        {"DATA_PLATFORM_SPARK_REMOTE": f"sc://[::1/;token={SECRET}"},
        "DATA_PLATFORM_SPARK_REMOTE='sc://[::1/;token=***' is not a Spark Connect URL: "
        "set it like sc://127.0.0.1:15002 (a cluster's Connect server; ;token=... may follow a /)",
    ),
    (
        {"DATA_PLATFORM_SOURCE_DB_URL": f"postgresql://u:{SECRET}@h:abc/db"},
        "DATA_PLATFORM_SOURCE_DB_URL is not a SQLAlchemy URL (is its port a number?): "
        "use e.g. sqlite:////abs/path/app.db or postgresql://user@host/db",
    ),
    (
        {"DATA_PLATFORM_LANDING": "s3://[x"},
        "DATA_PLATFORM_LANDING='s3://[x' is not a URL: use s3://bucket/prefix",
    ),
    (
        {"DATA_PLATFORM_LANDING": "s3://bkt/pre#x"},
        "DATA_PLATFORM_LANDING='s3://bkt/pre#x' has a query or fragment (? or #), which S3 "
        "would not see: use s3://bucket/prefix, a prefix without ? or #",
    ),
    (
        {"DATA_PLATFORM_DUCKDB_MEMORY_LIMIT": "99999999TB"},
        "DATA_PLATFORM_DUCKDB_MEMORY_LIMIT='99999999TB' is refused by DuckDB (Memory value out "
        "of range: value is too large): set it like 1GB or 512MB",
    ),
    (
        {"DATA_PLATFORM_DUCKDB_MEMORY_LIMIT": "0MB"},
        "DATA_PLATFORM_DUCKDB_MEMORY_LIMIT='0MB' is below 64MB, too little for the platform's "
        "queries: set it like 1GB or 512MB (the most DuckDB holds before it spills to disk)",
    ),
    # Handed to the resources as set (dg.EnvVar), so not stripped: the file or host with a
    # trailing space passed here, and the run failed on it.
    (
        {"DATA_PLATFORM_SOURCE_DB_URL": f"postgresql://u:{SECRET}@h/db "},
        "DATA_PLATFORM_SOURCE_DB_URL has spaces or a line break around its value, which would be "
        "kept where it is used: remove the spaces around it",
    ),
    (
        {"DATA_PLATFORM_SPARK_REMOTE": f" sc://h:15002/;token={SECRET}"},
        "DATA_PLATFORM_SPARK_REMOTE has spaces or a line break around its value, which would be "
        "kept where it is used: remove the spaces around it",
    ),
    # The dialect was found, its driver never imported: a ModuleNotFoundError in the run.
    (
        {"DATA_PLATFORM_SOURCE_DB_URL": f"mysql://u:{SECRET}@h/db"},
        "DATA_PLATFORM_SOURCE_DB_URL='mysql://u:***@h/db' needs the Python module MySQLdb, which "
        "is not installed: install the mysqldb driver's package into the platform's venv, or use "
        "e.g. sqlite:////abs/path/app.db or postgresql://user@host/db",
    ),
    # Was the relative folder ./s3:/bucket/, made silently.
    (
        {"DATA_PLATFORM_WAREHOUSE": "s3://bucket/w.duckdb"},
        "DATA_PLATFORM_WAREHOUSE='s3://bucket/w.duckdb' is a URL, not a local path: set a path "
        "on this machine",
    ),
    # Was botocore's "Invalid endpoint" traceback at the first S3 request.
    (
        {"AWS_ENDPOINT_URL": "notaurl"},
        "AWS_ENDPOINT_URL='notaurl' is not an http(s) URL: set it like http://127.0.0.1:9000 (an "
        "S3-compatible store), or unset it for AWS",
    ),
    # Celery took `garbage` for a transport module: ModuleNotFoundError when a run launched.
    (
        {"DATA_PLATFORM_EXECUTOR": "celery", "DATA_PLATFORM_CELERY_BROKER": "garbage"},
        "DATA_PLATFORM_CELERY_BROKER='garbage' is not a broker URL: set it like "
        'redis://127.0.0.1:16379/0 (eval "$(make -s services-env)" sets the local one)',
    ),
    (
        {
            "DATA_PLATFORM_EXECUTOR": "celery",
            "DATA_PLATFORM_CELERY_BROKER": f"redis://:{SECRET}@[x",
        },
        "DATA_PLATFORM_CELERY_BROKER='redis://:***@[x' is not a broker URL: set it like "
        'redis://127.0.0.1:16379/0 (eval "$(make -s services-env)" sets the local one)',
    ),
    # Kafka client security (stream/security.py). Each wrong combination was silently ignored:
    # the clients connected without credentials, and a cluster that wants them never answered.
    (
        {"DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL": "TLS"},
        "DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL='TLS' is not a Kafka security protocol: use "
        "PLAINTEXT (the default), SSL, SASL_PLAINTEXT or SASL_SSL (what the cluster's listener at "
        "DATA_PLATFORM_KAFKA_BOOTSTRAP expects)",
    ),
    (
        {
            "DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "DATA_PLATFORM_KAFKA_USERNAME": "platform",
            "DATA_PLATFORM_KAFKA_PASSWORD": SECRET,
        },
        "DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs DATA_PLATFORM_KAFKA_SASL_MECHANISM: "
        "set PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, the one the cluster's listener enables",
    ),
    (
        {
            "DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "DATA_PLATFORM_KAFKA_SASL_MECHANISM": "GSSAPI",
            "DATA_PLATFORM_KAFKA_USERNAME": "platform",
            "DATA_PLATFORM_KAFKA_PASSWORD": SECRET,
        },
        "DATA_PLATFORM_KAFKA_SASL_MECHANISM='GSSAPI' is not a SASL mechanism the platform can "
        "use: set PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
    ),
    (
        {
            "DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "DATA_PLATFORM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "DATA_PLATFORM_KAFKA_PASSWORD": SECRET,
        },
        "DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT needs DATA_PLATFORM_KAFKA_USERNAME: "
        "set the cluster's credentials in DATA_PLATFORM_KAFKA_USERNAME and "
        "DATA_PLATFORM_KAFKA_PASSWORD",
    ),
    (
        {
            "DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "DATA_PLATFORM_KAFKA_SASL_MECHANISM": "PLAIN",
            "DATA_PLATFORM_KAFKA_USERNAME": "platform",
        },
        "DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs DATA_PLATFORM_KAFKA_PASSWORD: "
        "set the cluster's credentials in DATA_PLATFORM_KAFKA_USERNAME and "
        "DATA_PLATFORM_KAFKA_PASSWORD",
    ),
    (  # PLAINTEXT by default: the credentials would never be sent
        {"DATA_PLATFORM_KAFKA_USERNAME": "platform", "DATA_PLATFORM_KAFKA_PASSWORD": SECRET},
        "DATA_PLATFORM_KAFKA_USERNAME and DATA_PLATFORM_KAFKA_PASSWORD are set but "
        "DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL=PLAINTEXT sends no credentials, so the clients "
        "would connect without them: set the protocol to SASL_SSL or SASL_PLAINTEXT, or unset them",
    ),
    (
        {
            "DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL": "SSL",
            "DATA_PLATFORM_KAFKA_PASSWORD": SECRET,
        },
        "DATA_PLATFORM_KAFKA_PASSWORD is set but DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL=SSL sends "
        "no credentials, so the clients would connect without them: set the protocol to SASL_SSL "
        "or SASL_PLAINTEXT, or unset them",
    ),
    (
        {"DATA_PLATFORM_KAFKA_CA_FILE": "/etc/hostname"},
        "DATA_PLATFORM_KAFKA_CA_FILE is set but DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL=PLAINTEXT "
        "uses no TLS, so it would be ignored: set the protocol to SSL or SASL_SSL, or unset it",
    ),
    (
        {
            "DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL": "SSL",
            "DATA_PLATFORM_KAFKA_CA_FILE": "/nonexistent/ca.pem",
        },
        "DATA_PLATFORM_KAFKA_CA_FILE='/nonexistent/ca.pem' does not exist: set the path of the "
        "PEM file of the CA that signed the brokers' certificates, or unset it to trust the "
        "system's CAs",
    ),
    (
        {
            "DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL": "SSL",
            "DATA_PLATFORM_KAFKA_CA_FILE": "/",
        },
        "DATA_PLATFORM_KAFKA_CA_FILE='/' is not a file: set the path of the PEM file of the CA "
        "that signed the brokers' certificates, or unset it to trust the system's CAs",
    ),
    (
        {
            "DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "DATA_PLATFORM_KAFKA_SASL_MECHANISM": "PLAIN",
            "DATA_PLATFORM_KAFKA_USERNAME": "platform",
            "DATA_PLATFORM_KAFKA_PASSWORD": f"{SECRET}\n",
        },
        "DATA_PLATFORM_KAFKA_PASSWORD has spaces or a line break around its value, which would be "
        "kept where it is used: remove the spaces around it",
    ),
    (
        {"DATA_PLATFORM_COMPUTE_LOG_DAYS": "a month"},
        "DATA_PLATFORM_COMPUTE_LOG_DAYS='a month' is not a whole number of days up to 36500: set "
        "e.g. 30 (the default), how long a finished run's step stdout and stderr are kept, or 0 "
        "to keep them for ever",
    ),
    # Past a date's range every metrics scrape raised (740,000 days); past threading's longest
    # wait the heartbeat's thread died, and runs on other hosts were never healed.
    (
        {"DATA_PLATFORM_METRICS_DAYS": "740000"},
        "DATA_PLATFORM_METRICS_DAYS='740000' is not a number of days from 1 to 36500: set e.g. 31 "
        "(the default), how many days of rows_* series the metrics serve",
    ),
    (
        {"DATA_PLATFORM_RUN_HEARTBEAT_SECONDS": "10000000000"},
        "DATA_PLATFORM_RUN_HEARTBEAT_SECONDS='10000000000' is not a whole number of seconds from 1 "
        "to 3600: set e.g. 10 (the default): a run's process that misses its beats is taken for "
        "dead",
    ),
    (  # int() read Arabic-Indic digits: port 3, which no shell or Makefile would read
        {"DATA_PLATFORM_METRICS_PORT": "\u0663"},
        "DATA_PLATFORM_METRICS_PORT='\u0663' is not a TCP port: set a number from 1 to 65535, "
        "e.g. 9108 (the default)",
    ),
    # Taken, then blamed on the broker ("Failed to get metadata"); the first with its secret in
    # the sink's line.
    (
        {"DATA_PLATFORM_KAFKA_BOOTSTRAP": f"platform:{SECRET}@127.0.0.1:9092"},
        "DATA_PLATFORM_KAFKA_BOOTSTRAP='***@127.0.0.1:9092' is not a list of host:port: set it "
        "like 127.0.0.1:19092,broker2:9092 (credentials go in DATA_PLATFORM_KAFKA_USERNAME and "
        "DATA_PLATFORM_KAFKA_PASSWORD), or unset it (no event stream)",
    ),
    (
        {"DATA_PLATFORM_KAFKA_BOOTSTRAP": "127.0.0.1:9092;127.0.0.1:9093"},
        "DATA_PLATFORM_KAFKA_BOOTSTRAP='127.0.0.1:9092;127.0.0.1:9093' is not a list of "
        "host:port: set it like 127.0.0.1:19092,broker2:9092 (credentials go in "
        "DATA_PLATFORM_KAFKA_USERNAME and DATA_PLATFORM_KAFKA_PASSWORD), or unset it (no event "
        "stream)",
    ),
    (  # dagster dev took it with a traceback, exit 0 and its code servers left running
        {"DATA_PLATFORM_UI_PORT": "abc"},
        "DATA_PLATFORM_UI_PORT='abc' is not a TCP port: set a number from 1 to 65535, e.g. 3000 "
        "(the default)",
    ),
    (  # 0 would delete the evaluation of the tick the daemon is finishing
        {"DATA_PLATFORM_AUTOMATION_EVALUATION_DAYS": "0"},
        "DATA_PLATFORM_AUTOMATION_EVALUATION_DAYS='0' is not a whole number of days from 1 to 30: "
        "set e.g. 3 (the default), how long the UI's Automation tab keeps why each asset was or "
        "was not requested (Dagster deletes them at 30)",
    ),
    # botocore sends no user or password from the endpoint, and its "Could not connect to the
    # endpoint URL" quoted them in every S3 command's line.
    (
        {"AWS_ENDPOINT_URL": f"http://minio:{SECRET}@127.0.0.1:9000"},
        "AWS_ENDPOINT_URL='http://***@127.0.0.1:9000' holds a user or password, which S3 clients "
        "do not send: set the endpoint without them, e.g. http://127.0.0.1:9000, and the "
        "credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    ),
    # Was botocore's 'Invalid bucket name "u:SECRETPART@bkt"' and two regular expressions.
    (
        {"DATA_PLATFORM_LANDING": f"s3://AKIA:{SECRET}@bkt/pre"},
        "DATA_PLATFORM_LANDING='s3://***@bkt/pre' names no S3 bucket (letters, digits, '.', '-' "
        "or '_'; no user, password or port: credentials go in AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY): use s3://bucket/prefix",
    ),
    # Taken, every tick of the landing sensor failed: its cursor counts days from 1970.
    (
        {"DATA_PLATFORM_START_DATE": "1969-12-31"},
        "DATA_PLATFORM_START_DATE='1969-12-31' is before 1970-01-01, the first day the landing "
        "sensor's cursor counts: set it to 1970-01-01 or later",
    ),
]


@pytest.mark.parametrize(("variables", "line"), CLI_CASES)
def test_a_wrong_setting_is_its_one_line(tmp_path, variables, line):
    assert one_line_error(tmp_path, variables) == line


@pytest.mark.parametrize(
    ("variables", "line"),
    [CLI_CASES[0], CLI_CASES[3], CLI_CASES[5], CLI_CASES[6], CLI_CASES[8], *CLI_CASES[10:]],
)
def test_the_cli_prints_the_one_line_and_exits_2(tmp_path, variables, line):
    done = run_cli(tmp_path, "sql", "SELECT 1", **variables)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"data-platform: {line}\n")


@pytest.mark.parametrize("size", ["1KB", "63MB", "0.01GB"])
def test_a_memory_limit_too_small_for_a_query_is_refused(tmp_path, size):
    assert "is below 64MB" in one_line_error(tmp_path, {"DATA_PLATFORM_DUCKDB_MEMORY_LIMIT": size})


@pytest.mark.parametrize("size", ["64MB", "512MB", "1.5GiB", "2gb", "100000TB"])
def test_a_memory_limit_duckdb_takes_is_kept(tmp_path, size):
    settings = load_settings(
        {"DATA_PLATFORM_HOME": str(tmp_path), "DATA_PLATFORM_DUCKDB_MEMORY_LIMIT": size}
    )
    assert settings.duckdb_memory_limit == size


@pytest.mark.parametrize("landing", ["s3://bkt/pre?versionId=1", "s3://bkt/pre#", "s3://bkt?"])
def test_a_landing_url_with_a_query_or_fragment_is_refused(tmp_path, landing):
    assert "has a query or fragment" in one_line_error(tmp_path, {"DATA_PLATFORM_LANDING": landing})


@pytest.mark.parametrize(
    "webhook",
    [
        f"https://hooks.slack.com/services/T0/B0/{SECRET}\tx",
        f"https://hooks.slack.com/services/T0/B0/{SECRET}é",
        f"https://hooks.slack.com:abc/services/{SECRET}",
        f"https:///services/{SECRET}",
        f"https://user:{SECRET}@hooks.slack.com/services/T0/B0/x",
        f"https://{SECRET}@hooks.slack.com/services/T0/B0/x",
    ],
)
def test_a_webhook_urllib_cannot_send_to_is_refused_without_its_path(tmp_path, webhook):
    message = one_line_error(tmp_path, {"DATA_PLATFORM_ALERT_WEBHOOK": webhook})
    assert message.startswith("DATA_PLATFORM_ALERT_WEBHOOK")


def test_a_good_webhook_and_remote_are_kept(tmp_path):
    webhook = "https://hooks.slack.com/services/T0/B0/abc%20def"
    remote = "sc://spark.example.com:443/;use_ssl=true;token=abc"
    settings = load_settings(
        {
            "DATA_PLATFORM_HOME": str(tmp_path),
            "DATA_PLATFORM_ALERT_WEBHOOK": webhook,
            "DATA_PLATFORM_SPARK_REMOTE": remote,
        }
    )
    assert (settings.alert_webhook, settings.spark_remote) == (webhook, remote)


def test_kafka_credentials_are_kept_and_never_shown(tmp_path):
    """The settings carry the password to the clients, and no repr of them shows it (a test's
    failed assertion, a debugger, a log line formatting the settings)."""
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = load_settings(
        {
            "DATA_PLATFORM_HOME": str(tmp_path),
            "DATA_PLATFORM_KAFKA_BOOTSTRAP": "broker.example.com:9096",
            "DATA_PLATFORM_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "DATA_PLATFORM_KAFKA_SASL_MECHANISM": "scram-sha-512",
            "DATA_PLATFORM_KAFKA_USERNAME": "platform",
            "DATA_PLATFORM_KAFKA_PASSWORD": f"p {SECRET}",
            "DATA_PLATFORM_KAFKA_CA_FILE": str(ca),
        }
    )
    security = settings.kafka_security
    assert (security.protocol, security.mechanism, security.username, security.ca_file) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
        "platform",
        ca,
    )
    assert security.password == f"p {SECRET}"  # inner spaces are the password's own
    assert SECRET not in repr(settings) and SECRET not in str(security)


@pytest.mark.parametrize(
    "variable",
    ["DATA_PLATFORM_SOURCE_DB_URL", "DATA_PLATFORM_SPARK_REMOTE", "DATA_PLATFORM_ALERT_WEBHOOK"],
)
def test_a_setting_passed_on_as_set_is_refused_with_spaces_around_it(tmp_path, variable):
    good = {
        "DATA_PLATFORM_SOURCE_DB_URL": f"sqlite:///{tmp_path}/app.db",
        "DATA_PLATFORM_SPARK_REMOTE": "sc://127.0.0.1:15002",
        "DATA_PLATFORM_ALERT_WEBHOOK": "https://hooks.slack.com/services/T0/B0/x",
    }[variable]
    for padded in (f"{good} ", f"{good}\n", f"\t{good}"):
        message = one_line_error(tmp_path, {variable: padded})
        assert message.startswith(f"{variable} has spaces")
    load_settings({"DATA_PLATFORM_HOME": str(tmp_path), variable: good})
    load_settings({"DATA_PLATFORM_HOME": str(tmp_path), variable: " "})  # blank: unset


@pytest.mark.parametrize(
    "variable", ["DATA_PLATFORM_HOME", "DAGSTER_HOME", "DATA_PLATFORM_LANDING"]
)
def test_a_home_that_is_a_file_is_refused(tmp_path, variable):
    """A file there was "[Errno 20] Not a directory" from every command, or a traceback; as the
    landing zone, it listed no file, and every run read nothing and succeeded."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert one_line_error(tmp_path, {variable: str(a_file)}) == (
        f"{variable}={str(a_file)!r} is a file, not a folder: set a folder's path (one that does "
        "not exist yet is made), or move the file away"
    )
    under = a_file / "home" / "more"
    assert one_line_error(tmp_path, {variable: str(under)}) == (
        f"{variable}={str(under)!r} is under the file {str(a_file)!r}, not a folder: set a "
        "folder's path (one that does not exist yet is made), or move the file away"
    )


def test_a_warehouse_that_is_a_folder_is_refused(tmp_path):
    """DuckDB's "Could not read from file: Is a directory" in every step, naming no setting."""
    folder = tmp_path / "warehouse"
    folder.mkdir()
    assert one_line_error(tmp_path, {"DATA_PLATFORM_WAREHOUSE": str(folder)}) == (
        f"DATA_PLATFORM_WAREHOUSE={str(folder)!r} is a folder, not a DuckDB file: set the "
        f"file's path, e.g. {str(folder / 'warehouse.duckdb')!r}"
    )


@pytest.mark.parametrize(
    ("dagster_home", "held"),
    [(".", "DATA_PLATFORM_HOME"), ("..", "DATA_PLATFORM_HOME"), ("data", "DATA_PLATFORM_LANDING")],
)
def test_an_instance_folder_holding_the_platforms_parts_is_refused(tmp_path, dagster_home, held):
    """DAGSTER_HOME = DATA_PLATFORM_HOME: the backup copied its own staging folder and the
    warehouse twice, and a forced restore, replacing the instance's folder, deleted the landing
    folder and every other file of the home."""
    variables = {"DAGSTER_HOME": str(tmp_path / dagster_home)}
    if held == "DATA_PLATFORM_LANDING":
        variables["DATA_PLATFORM_LANDING"] = str(tmp_path / "data" / "landing")
    message = one_line_error(tmp_path, variables)
    assert message.startswith(
        f"DAGSTER_HOME={str((tmp_path / dagster_home).absolute())!r} holds {held}"
    )
    load_settings({"DATA_PLATFORM_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path / "instance")})


@pytest.mark.parametrize("endpoint", ["ftp://h", "http://", "http://[::1", "http://h:port"])
def test_an_endpoint_that_is_no_http_url_is_refused(tmp_path, endpoint):
    message = one_line_error(tmp_path, {"AWS_ENDPOINT_URL": endpoint})
    assert message.startswith(f"AWS_ENDPOINT_URL={endpoint!r} is not an http(s) URL")


@pytest.mark.parametrize(
    "landing", [f"s3://{SECRET}@bkt/pre", "s3://bkt:9000/pre", "s3://b k/pre", f"s3://{SECRET}@b?"]
)
def test_a_landing_url_naming_no_bucket_is_refused_without_its_user(tmp_path, landing):
    message = one_line_error(tmp_path, {"DATA_PLATFORM_LANDING": landing})
    assert message.startswith("DATA_PLATFORM_LANDING='s3://")


@pytest.mark.parametrize("landing", ["s3://bkt/pre", "s3://my_Bucket.v2-1/a/b"])
def test_a_landing_bucket_botocore_takes_is_kept(tmp_path, landing):
    settings = load_settings(
        {"DATA_PLATFORM_HOME": str(tmp_path), "DATA_PLATFORM_LANDING": landing}
    )
    assert settings.landing == landing


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9000", "https://s3.example.com"])
def test_an_http_endpoint_is_taken_by_the_settings_and_the_s3_client(tmp_path, endpoint):
    from data_platform.resources.landing import s3_client

    load_settings({"DATA_PLATFORM_HOME": str(tmp_path), "AWS_ENDPOINT_URL": endpoint})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", endpoint)
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        assert s3_client().meta.endpoint_url == endpoint


def test_the_settings_module_prints_the_warehouse_or_the_one_line(tmp_path):
    """What the Makefile renders the dbt profile with."""
    command = [sys.executable, "-m", "data_platform.settings"]
    done = run_in_home(tmp_path, command)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{tmp_path}/warehouse.duckdb\n", "")
    url = "s3://bucket/w.duckdb"
    done = run_in_home(tmp_path, command, DATA_PLATFORM_WAREHOUSE=url)
    [refusal] = [m for e, m in CLI_CASES if e.get("DATA_PLATFORM_WAREHOUSE") == url]
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"data-platform: {refusal}\n")


def run_make(*args: str, **env: str) -> subprocess.CompletedProcess:
    """make in the repository, with no setting of this process: only `env`'s."""
    command = ["make", "-s", *args]
    return subprocess.run(
        command, cwd=REPO, env=environ_without_settings(**env), capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("env", "homes"),
    [
        ({}, (".data_platform", ".data_platform/dagster_home")),
        # Was kept empty: DAGSTER_HOME=/dagster_home, while the platform used ./.data_platform.
        ({"DATA_PLATFORM_HOME": ""}, (".data_platform", ".data_platform/dagster_home")),
        # Was relative, and Dagster refused the relative DAGSTER_HOME with a traceback.
        ({"DATA_PLATFORM_HOME": "h", "DAGSTER_HOME": "d/"}, ("h", "d")),
    ],
)
def test_make_exports_absolute_homes_as_the_platform_reads_them(tmp_path, env, homes):
    show = tmp_path / "show.mk"
    show.write_text('show:\n\t@echo "$$DATA_PLATFORM_HOME $$DAGSTER_HOME"\n')
    done = run_make("-f", "Makefile", "-f", str(show), "show", **env)
    assert done.stdout.split() == [str(REPO / home) for home in homes], done.stderr


def test_the_dbt_manifest_rule_stops_at_a_wrong_setting_with_its_one_line():
    """Was a traceback, then dagster-dbt run with an empty DATA_PLATFORM_WAREHOUSE and a second,
    unrelated error. -B: the rule runs whatever the manifest's age; -o: not the install."""
    done = run_make(
        "-B", "-o", ".venv/.installed", "dbt/target/manifest.json", DATA_PLATFORM_START_DATE="x"
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == (
        "data-platform: DATA_PLATFORM_START_DATE='x' is not a date: set it to YYYY-MM-DD, e.g. "
        "2026-01-01"
    )
    assert len(done.stderr.splitlines()) == 2  # and make's own "Error 2"


@pytest.mark.parametrize("variable", ["DATA_PLATFORM_HOME", "DAGSTER_HOME"])
def test_make_refuses_a_home_that_is_a_url(tmp_path, variable):
    """abspath took s3://bucket/x for a relative path: `make services-down` made a folder
    ./s3:/bucket/x and exited 0."""
    env = {"DATA_PLATFORM_HOME": str(tmp_path), variable: "s3://b/x"}
    done = run_make("services-down", **env)
    assert done.returncode == 2
    assert f"*** {variable}=s3://b/x is a URL, not a local path: set a path on this machine" in (
        done.stderr
    )
    assert not (REPO / "s3:").exists()


def test_the_services_command_refuses_a_home_that_is_a_file(tmp_path):
    """Its own reading of DATA_PLATFORM_HOME was a NotADirectoryError traceback."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    done = run_make("services-env", DATA_PLATFORM_HOME=str(a_file))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(
        f"services: DATA_PLATFORM_HOME={str(a_file)!r} is a file, not a folder"
    ), done.stderr
