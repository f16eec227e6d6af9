"""A wrong setting, as a person meets it: one line naming the variable and the fix, exit 2 from
the CLI, no traceback, and never a secret (a webhook's path, a token, a password) in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_platform.settings import SettingsError, load_settings
from data_platform_tests.test_cli import run_cli

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
]


@pytest.mark.parametrize(("variables", "line"), CLI_CASES)
def test_a_wrong_setting_is_its_one_line(tmp_path, variables, line):
    assert one_line_error(tmp_path, variables) == line


@pytest.mark.parametrize(
    ("variables", "line"),
    [CLI_CASES[0], CLI_CASES[3], CLI_CASES[5], CLI_CASES[6], CLI_CASES[8]],
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
