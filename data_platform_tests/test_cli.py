"""`data-platform materialize`, as a person runs it: a subprocess on a home of its own, with
DAGSTER_HOME unset (the instance is then the home's `dagster_home`, as `make run` has it)."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.events import JobFailureData
from dagster._utils.error import SerializableErrorInfo

from data_platform.assets.dbt_project import missing_manifest, require_manifest, stale_manifest
from data_platform.assets.raw import DEAD_LETTER_SPEC, RAW_FILE_ASSETS, RAW_SOURCE_TABLE_ASSETS
from data_platform.materialize import summarize
from data_platform.resources.landing import LandingZone
from data_platform.settings import SettingsError
from data_platform.simulator import SimulationConfig, simulate
from data_platform_tests.helpers import environ_without_settings, query

REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("data-platform"))
DAY = date(2026, 1, 5)


def run_cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return run_in_home(home, [CLI, *args], **env)


def run_in_home(home: Path, command: list[str], **env: str) -> subprocess.CompletedProcess:
    """`command` on the platform at `home`, with no DATA_PLATFORM_ setting of this process."""
    environ = environ_without_settings(**{"DATA_PLATFORM_HOME": str(home), **env})
    return subprocess.run(
        command, cwd=REPO, env=environ, capture_output=True, text=True, timeout=300
    )


def test_materialize_a_selection_for_a_day_then_a_failure_exits_non_zero(settings, resources):
    simulate(
        SimulationConfig(seed=2, days=1, end_date=DAY, users=30, events_per_day=200),
        resources["landing"],
        settings.source_db_url,
    )
    args = ("materialize", "--start", str(DAY), "--end", str(DAY), "--select", "group:raw")
    ok = run_cli(settings.home, *args)
    assert ok.returncode == 0, ok.stderr[-2000:]
    # Exactly the raw group, each for its one day (no "N partition(s)"), and nothing else.
    raw_assets = [*RAW_FILE_ASSETS, *RAW_SOURCE_TABLE_ASSETS, DEAD_LETTER_SPEC]
    raw = {"/".join(a.key.path) for a in raw_assets}
    lines = [line.strip() for line in ok.stdout.splitlines() if "materialized" in line]
    assert sorted(lines) == sorted(f"materialized {key}" for key in raw)
    assert ok.stdout.strip().endswith("success")
    assert "1 days" in ok.stderr  # progress: what it is about to do
    assert query(settings.warehouse, "SELECT DISTINCT dt FROM raw.events") == [(DAY,)]
    schemas = query(
        settings.warehouse, "SELECT DISTINCT table_schema FROM information_schema.tables"
    )
    assert {s for (s,) in schemas} == {"raw"}
    with dg.DagsterInstance.from_config(str(settings.home / "dagster_home")) as instance:
        assert len(instance.get_runs()) == 1  # recorded in the home's instance

    engine = sa.create_engine(settings.source_db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE orders RENAME COLUMN status TO state"))
    failed = run_cli(settings.home, *args)
    assert failed.returncode == 1
    # The cause, not Dagster's "Error occurred while executing op" around it.
    [line] = [line for line in failed.stdout.splitlines() if "FAILED raw__orders" in line]
    assert "SourceSchemaError" in line and "status" in line, line


def test_a_wrong_setting_is_one_line_and_exit_2(tmp_path):
    result = run_cli(tmp_path, "materialize", DATA_PLATFORM_START_DATE="yesterday")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "DATA_PLATFORM_START_DATE" in result.stderr


def test_a_selection_or_range_that_names_nothing_is_one_line_and_exit_2(tmp_path):
    """A selection matching no asset was read as no subset at all: a typo rebuilt the whole
    graph over all of history. An inverted or empty range was a traceback. Each is now one line
    and exit 2, before any run starts: Dagster's BetaWarnings of the single-run backfill policy
    came before it."""
    cases = [
        (
            ("--select", "key:raw/nope", "--start", "2026-01-05", "--end", "2026-01-05"),
            "matches no asset",
        ),
        (
            ("--select", "raw/events and", "--start", "2026-01-05", "--end", "2026-01-05"),
            "not an asset selection",
        ),
        (
            ("--select", "key:raw/events", "--start", "2026-02-01", "--end", "2026-01-01"),
            "is after --end",
        ),
        (
            ("--select", "key:raw/events", "--start", "1990-01-01", "--end", "1990-01-02"),
            "no daily partition",
        ),
    ]
    for args, reason in cases:
        result = run_cli(tmp_path, "materialize", *args)
        assert result.returncode == 2, result.stderr[-2000:]
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("data-platform: ") and reason in line, line
    assert not (tmp_path / "dagster_home" / "history").exists()  # no run was started


def test_backup_storage_that_refuses_is_one_line_and_exit_1(tmp_path, s3_endpoint):
    """S3 refusing (no such bucket), S3 out of reach and a folder that cannot be made: each one
    line naming what failed and what to check, never a botocore or OSError traceback."""
    aws = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    cases = [
        (("backup", "s3://no-such-bucket/x"), aws, "NoSuchBucket"),
        (("restore", "s3://no-such-bucket/x"), aws, "NoSuchBucket"),
        (("backup", "s3://bucket/x"), {**aws, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, "connect"),
        (("backup", str(not_a_folder / "backups")), {}, "Not a directory"),
    ]
    for args, env, cause in cases:
        result = run_cli(tmp_path / "home", *args, **env)
        assert result.returncode == 1, result.stderr[-2000:]
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
        assert result.stderr.startswith(f"data-platform {args[0]}: ") and cause in result.stderr
        if args[1].startswith("s3://"):
            assert "AWS_ENDPOINT_URL" in result.stderr


def test_an_s3_bucket_missing_or_no_credentials_is_one_line_and_exit_2(tmp_path, s3_endpoint):
    """An endpoint down was one line; a bucket that does not exist or no credentials at all
    were 70-90 lines of traceback (botocore's NoCredentialsError, boto3's S3UploadFailedError),
    and from `materialize` of a step reading the zone 135-273 lines of step log and exit 1."""
    s3 = {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_DEFAULT_REGION": "us-east-1"}
    keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "not-a-real-key"}
    none = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    none |= {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"}
    cases = [
        ({**s3, **keys, "DATA_PLATFORM_LANDING": "s3://no-such-bucket/x"}, "NoSuchBucket"),
        ({**s3, **none, "DATA_PLATFORM_LANDING": "s3://bucket/x"}, "Unable to locate credentials"),
    ]
    small = ("--days", "1", "--users", "5", "--events-per-day", "10", "--quiet")
    materialize = ("materialize", "--start", "2026-01-01", "--end", "2026-01-01")
    commands = [("simulate", *small), (*materialize, "--select", "key:raw/events")]
    for (env, cause), command in itertools.product(cases, commands):
        done = run_cli(tmp_path / "home", *command, **env)
        assert (done.returncode, done.stdout) == (2, ""), done.stderr[-2000:]
        [line] = done.stderr.splitlines()
        assert line.startswith("data-platform: S3 refused a request (") and cause in line, line
        assert (
            f"exists at {s3_endpoint} and that the credentials" in line
            and "not-a-real-key" not in line
        )


def test_a_path_or_server_out_of_reach_is_one_line_and_exit_2(tmp_path):
    """A landing folder under a file, a PostgreSQL or an S3 endpoint that does not answer: each
    was a traceback (OSError, SQLAlchemy's OperationalError, botocore's EndpointConnectionError).
    Each is one line naming the path or URL (password masked) and what to check."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    s3 = {
        "DATA_PLATFORM_LANDING": "s3://bucket/x",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    cases = [
        (
            {"DATA_PLATFORM_LANDING": str(a_file / "landing")},
            f"DATA_PLATFORM_LANDING={str(a_file / 'landing')!r} is under the file {str(a_file)!r}",
            "or move the file away",
        ),
        (
            {"DATA_PLATFORM_SOURCE_DB_URL": "postgresql://u:SECRET@127.0.0.1:9/db"},
            "a database could not be used (connection failed: ",
            "DATA_PLATFORM_SOURCE_DB_URL='postgresql://u:***@127.0.0.1:9/db' names a database",
        ),
        (  # a / in the password (SQLAlchemy reads up to the @), a password in the query
            {
                "DATA_PLATFORM_SOURCE_DB_URL": "postgresql://u:SEC/RET@127.0.0.1:9/db?password=SECRET"
            },
            "a database could not be used (connection failed: ",
            "DATA_PLATFORM_SOURCE_DB_URL='postgresql://u:***@127.0.0.1:9/db?password=***' names",
        ),
        (
            s3,
            'Could not connect to the endpoint URL: "http://127.0.0.1:9/bucket/x/',
            "check AWS_ENDPOINT_URL and that the S3 store is up",
        ),
    ]
    small = ("--days", "1", "--users", "5", "--events-per-day", "10", "--quiet")
    for env, cause, fix in cases:
        done = run_cli(tmp_path / "home", "simulate", *small, **env)
        assert (done.returncode, done.stdout) == (2, ""), done.stderr[-2000:]
        [line] = done.stderr.splitlines()
        assert line.startswith(f"data-platform: {cause}") and fix in line, line
        assert "SECRET" not in line and "RET" not in line


def test_a_landing_folder_that_does_not_exist_is_one_line_not_an_empty_day(
    settings, resources, tmp_path
):
    """A mistyped DATA_PLATFORM_LANDING listed no file: `materialize` read nothing, replaced
    the day with nothing and said success (exit 0), as a run from the UI did."""
    simulate(
        SimulationConfig(seed=2, days=1, end_date=DAY, users=5, events_per_day=20),
        resources["landing"],
        settings.source_db_url,
    )
    mistyped = tmp_path / "landnig"
    args = ("materialize", "--start", str(DAY), "--end", str(DAY), "--select", "key:raw/events")
    done = run_cli(settings.home, *args, DATA_PLATFORM_LANDING=str(mistyped))
    assert (done.returncode, done.stdout) == (2, ""), done.stderr[-2000:]
    expected = f"data-platform: DATA_PLATFORM_LANDING={str(mistyped)!r} does not exist: point"
    [line] = done.stderr.splitlines()
    assert line.startswith(expected), line
    assert not mistyped.exists()
    # The asset says so itself, wherever it is launched from.
    missing = {**resources, "landing": LandingZone(url=str(mistyped))}
    result = dg.materialize(
        RAW_FILE_ASSETS,
        selection="raw/events",
        resources=missing,
        partition_key=str(DAY),
        raise_on_error=False,
    )
    [failure] = result.get_step_failure_events()
    assert "does not exist: point it at the landing zone's folder" in str(
        failure.step_failure_data.error
    )


@contextlib.contextmanager
def read_only_folder(folder: Path) -> Iterator[None]:
    """`folder`, made read-only for this user: by its mode, or, for root (whom a mode does not
    stop), by a read-only tmpfs mounted on it; skipped where root may not mount."""
    folder.mkdir(parents=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"root, and no read-only mount here: {mounted.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("where", ["under-a-file", "read-only"])
def test_a_warehouse_that_cannot_be_written_is_one_line_before_the_run(tmp_path, where):
    """A warehouse on a read-only file system failed six steps with DuckDB's "IO Error: Cannot
    open file ...: Read-only file system", exit 1: a path that cannot be used is the CLI's one
    line naming its setting, exit 2, and no run starts."""
    home = tmp_path / "home"
    (home / "landing").mkdir(parents=True)
    args = ("materialize", "--start", str(DAY), "--end", str(DAY), "--select", "key:raw/events")
    if where == "under-a-file":
        (tmp_path / "a-file").write_text("")
        warehouse = tmp_path / "a-file" / "warehouse.duckdb"
        done = run_cli(home, *args, DATA_PLATFORM_WAREHOUSE=str(warehouse))
        why = f"Not a directory: {tmp_path / 'a-file'}"
    else:
        warehouse = tmp_path / "read-only" / "warehouse.duckdb"
        with read_only_folder(warehouse.parent):
            done = run_cli(home, *args, DATA_PLATFORM_WAREHOUSE=str(warehouse))
        reason = "Permission denied" if os.geteuid() != 0 else "Read-only file system"
        why = f"{reason}: {warehouse.parent}"
    assert (done.returncode, done.stdout) == (2, ""), done.stderr[-3000:]
    [line] = done.stderr.splitlines()
    assert line.startswith(
        f"data-platform: DATA_PLATFORM_WAREHOUSE={str(warehouse)!r} cannot be written ({why}): "
    ), line
    assert not (home / "dagster_home" / "history").exists()  # no run recorded


POSTGRES_INSTANCE = """
storage:
  postgres:
    postgres_db:
      username: dagster
      password: dagster
      hostname: 127.0.0.1
      db_name: dagster
      port:
        env: DAGSTER_PG_PORT
"""


@pytest.mark.parametrize(
    ("yaml_text", "port", "expected"),
    [
        ("storage: [\n  bad: : yaml\n", "5432", "dagster.yaml is not valid YAML ("),
        (POSTGRES_INSTANCE, "abc", "dagster.yaml reads DAGSTER_PG_PORT='abc', which is not of "),
        # Dagster's own line went on with the whole schema expected there (4,066 characters).
        (
            "run_retriez:\n  enabled: true\n",
            "5432",
            "dagster.yaml has a key Dagster does not know, 'run_retriez' at the root: rename or "
            "remove it (did you mean 'run_retries'?)",
        ),
        (
            "run_retries:\n  zzz: 2\n",
            "5432",
            "dagster.yaml has a key Dagster does not know, 'zzz' at root:run_retries: rename or "
            "remove it (the keys there: enabled, max_retries, retry_on_asset_or_op_failure)",
        ),
    ],
)
def test_a_wrong_dagster_instance_is_one_line_for_materialize_and_metrics(
    tmp_path, yaml_text, port, expected
):
    """Each was Dagster's traceback (a YAML ParserError, a PostProcessingError; a PostgreSQL
    that does not answer 169 lines of connection retries) from `materialize` and `metrics`,
    which now open the instance as backup does (its tests cover the PostgreSQL lines)."""
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "dagster.yaml").write_text(yaml_text)
    env = {"DAGSTER_HOME": str(instance), "DAGSTER_PG_PORT": port}
    commands = [
        ("materialize", "--start", "2026-01-01", "--end", "2026-01-01", "--select", "raw/users"),
        ("metrics",),
    ]
    for command in commands:
        done = run_cli(tmp_path / "home", *command, **env)
        assert done.returncode == 1, done.stderr[-2000:]
        [line] = [line for line in done.stderr.splitlines() if "materializing" not in line]
        assert line.startswith(f"data-platform: {instance / 'dagster.yaml'} ") or (
            line.startswith(f"data-platform: {expected}")
        ), line
        assert expected in line, line


def test_an_instance_whose_sqlite_storage_cannot_be_opened_is_named_for_what_it_is(tmp_path):
    """A DAGSTER_HOME whose SQLite storage cannot be opened (a read-only or full disk; here its
    runs database is a folder) was told as "the Dagster instance's PostgreSQL does not answer",
    on an instance with no PostgreSQL."""
    instance = tmp_path / "home" / "dagster_home"
    (instance / "history" / "runs.db").mkdir(parents=True)
    (instance / "dagster.yaml").write_text("")  # SQLite storage in DAGSTER_HOME
    materialize = ("--start", "2026-01-01", "--end", "2026-01-01", "--select", "raw/users")
    for command in [("materialize", *materialize), ("metrics",)]:
        done = run_cli(tmp_path / "home", *command, DAGSTER_HOME=str(instance))
        assert done.returncode == 1, done.stderr[-2000:]
        [line] = [line for line in done.stderr.splitlines() if "materializing" not in line]
        assert line.startswith(
            f"data-platform: the Dagster instance's storage under {instance} cannot be used "
            "(unable to open database file): free space on its disk and make it writable "
            "(DAGSTER_HOME), then run again"
        ), line
        assert "PostgreSQL" not in line


def test_sink_limits_must_be_positive(tmp_path):
    """0 dead-lettered every event (--max-message-bytes) or flushed a file per message; a
    negative or nan limit never flushed."""
    for flag, text in (("--max-message-bytes", "0"), ("--max-batch-messages", "-1"),
                       ("--max-batch-seconds", "nan")):  # fmt: skip
        result = run_cli(tmp_path, "consume", flag, text)
        assert result.returncode == 2
        assert f"argument {flag}: '{text}' is not a positive" in result.stderr


TOPIC_REFUSED = (
    "is not a Kafka topic name: 1 to 245 letters, digits, '.', '_' or '-' (its dead-letter "
    "topic adds .dlq)"
)
GROUP_REFUSED = (
    "is not a consumer group: give a name with a non-blank character (default "
    "data-platform-events-sink)"
)


@pytest.mark.parametrize(
    ("flag", "value", "refusal"),
    [
        *(("--topic", topic, TOPIC_REFUSED) for topic in ["", ".", "a/b", "x" * 246]),
        *(("--group", group, GROUP_REFUSED) for group in ["", " ", "\t"]),
    ],
)
def test_the_sinks_topic_and_group_must_be_names_kafka_takes(tmp_path, flag, value, refusal):
    """An empty topic failed with a traceback from the first admin request; `a/b` reached the
    broker; a name of 246 characters left no room for its dead-letter topic's `.dlq`. A blank
    group reached librdkafka, whose consumer then failed a C assertion: exit 134 and no line
    saying what was wrong (the topics had been created already)."""
    result = run_cli(tmp_path, "consume", flag, value)
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = [line for line in result.stderr.splitlines() if f"argument {flag}" in line]
    assert line.endswith(f"argument {flag}: {value!r} {refusal}"), line


def test_the_largest_message_the_sink_takes_is_within_kafkas_32_bit_sizes(tmp_path):
    result = run_cli(tmp_path, "consume", "--max-message-bytes", "3000000000")
    assert result.returncode == 2
    assert (
        "argument --max-message-bytes: '3000000000' is more than 2,000,000,000 (Kafka's limit)"
        in result.stderr
    )


@pytest.mark.parametrize("timeout", ["nan", "0", "-5", "inf"])
def test_materialize_timeout_must_be_a_finite_positive_number(tmp_path, timeout):
    done = run_cli(tmp_path, "materialize", f"--timeout={timeout}")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"data-platform materialize: error: argument --timeout: {timeout!r} is not a number of "
        "seconds > 0"
    )
    assert "Traceback" not in done.stderr


def test_materialize_with_a_start_date_in_the_future_is_a_usage_error(tmp_path):
    done = run_cli(tmp_path, "materialize", DATA_PLATFORM_START_DATE="2999-01-01")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "data-platform: no daily partition yet: DATA_PLATFORM_START_DATE=2999-01-01 is after "
        "today: set it to the first day of data, e.g. 2026-01-01\n"
    )


class _FailedRun:
    """What `summarize` reads of a result: a run that failed with no step failing."""

    def __init__(self, error: SerializableErrorInfo):
        self.all_events = [
            dg.DagsterEvent(
                event_type_value=dg.DagsterEventType.RUN_FAILURE.value,
                job_name="__ASSET_JOB",
                event_specific_data=JobFailureData(error=error),
            )
        ]

    def get_asset_materialization_events(self) -> list:
        return []


def test_a_run_failed_with_no_step_failing_says_its_cause():
    """Celery's broker down failed the run before any step: the summary said only "FAILED: see
    the run in the UI", the cause 128 lines up in the log."""
    refused = SerializableErrorInfo(
        "redis.exceptions.ConnectionError: Error 111 connecting to 127.0.0.1:1. Connection "
        "refused.\n",
        [],
        "ConnectionError",
    )
    error = SerializableErrorInfo("RuntimeError: \n", [], "RuntimeError", cause=refused)
    assert summarize(_FailedRun(error)) == (
        Counter(),
        [
            "run: redis.exceptions.ConnectionError: Error 111 connecting to 127.0.0.1:1. "
            "Connection refused."
        ],
    )


def _error(message: str, cause=None, context=None) -> SerializableErrorInfo:
    return SerializableErrorInfo(message, [], message.split(":")[0], cause=cause, context=context)


WAREHOUSE_FULL = _error(  # raw__events' (audit e1): the ENOSPC only in the error being handled
    "dagster._core.errors.DagsterExecutionStepExecutionError: Error occurred while executing "
    'op "raw__events"::\n',
    cause=_error(
        "_duckdb.FatalException: FATAL Error: Failed: database has been invalidated because of "
        "a previous fatal error. The database must be restarted prior to being used again.\n"
        'Original error: "Failed to create checkpoint because of error: Could not write file '
        '"/wh/warehouse.duckdb": No space left on device"\n',
        context=_error(
            "_duckdb.FatalException: FATAL Error: Failed to create checkpoint because of error: "
            'Could not write file "/wh/warehouse.duckdb": No space left on device\n'
        ),
    ),
)
DBT_TARGET_FULL = _error(  # dbt's (audit e8): the ENOSPC 12 lines down, in dbt's colours
    "dagster_dbt.errors.DagsterDbtCliRuntimeError: The dbt CLI process with command\n\n"
    "`data-platform-dbt build --select fqn:*`\n\nfailed with exit code `2`.\n\n"
    "Errors parsed from dbt logs:\n\n\x1b[31mUnhandled error while executing x.sql\x1b[0m\n"
    "[Errno 28] No space left on device\n\nEncountered an error:\n"
    "[Errno 28] No space left on device\n"
)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            WAREHOUSE_FULL,
            "run: _duckdb.FatalException: FATAL Error: Failed: database has been invalidated "
            "because of a previous fatal error. The database must be restarted prior to being "
            "used again. (cause: _duckdb.FatalException: FATAL Error: Failed to create "
            'checkpoint because of error: Could not write file "/wh/warehouse.duckdb": No space '
            "left on device)",
        ),
        (
            DBT_TARGET_FULL,
            "run: dagster_dbt.errors.DagsterDbtCliRuntimeError: The dbt CLI process with command "
            "(cause: [Errno 28] No space left on device)",
        ),
    ],
    ids=["warehouse", "dbt"],
)
def test_a_full_disk_is_named_in_the_summary_line(error, expected):
    """A full disk was no cause in the summary: "database has been invalidated because of a
    previous fatal error", or dbt's "The dbt CLI process with command", the ENOSPC further in."""
    assert summarize(_FailedRun(error)) == (Counter(), [expected])


def refused_location_line(cwd: Path, command: str, where: str) -> str:
    """The line `backup`/`restore` refuses `where` with (exit 2), run in `cwd`, which it must
    leave empty; the line's start, naming the argument, checked."""
    cwd.mkdir()
    environ = environ_without_settings(DATA_PLATFORM_HOME=str(cwd.parent / "home"))
    done = subprocess.run(
        [CLI, command, where], cwd=cwd, env=environ, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert not list(cwd.iterdir())
    line = done.stderr.splitlines()[-1]
    argument = "dest" if command == "backup" else "src"
    start = f"data-platform {command}: error: argument {argument}: {where!r} "
    assert line.startswith(start), line
    return line.removeprefix(start)


@pytest.mark.parametrize("command", ["backup", "restore"])
@pytest.mark.parametrize("where", ["", "  "])
def test_a_blank_backup_location_is_a_usage_error(tmp_path, command, where):
    """`backup "$DEST"` with DEST unset wrote its backup into the working folder, exit 0."""
    assert refused_location_line(tmp_path / "cwd", command, where) == (
        "is empty: give a folder or s3://bucket/prefix"
    )


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_a_backup_location_naming_no_bucket_is_a_usage_error_without_its_secret(tmp_path, command):
    """botocore's "Invalid bucket name" quoted `user:secret@bucket`, the secret in the line."""
    done = run_cli(tmp_path / "home", command, "s3://AKIA:SECRETPART@bkt/backups")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "SECRETPART" not in done.stdout + done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"data-platform {command}: error: argument {'dest' if command == 'backup' else 'src'}: "
        "'s3://***@bkt/backups' names no S3 bucket (letters, digits, '.', '-' or '_'; no user, "
        "password or port: credentials go in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY): use "
        "s3://bucket/prefix"
    )


@pytest.mark.parametrize("command", ["backup", "restore"])
@pytest.mark.parametrize(
    "where, why",
    [
        (
            url,
            "is neither a local folder nor s3://bucket/prefix (S3 is written s3://, in lower case)",
        )
        for url in ("s3a://bkt/backups", "S3://bkt/backups", "gs://bkt/backups", "file:///b")
    ]
    + [
        (
            "s3://bkt/backups#daily",
            "has a query or fragment (? or #), which S3 would not see: use s3://bucket/prefix, "
            "a prefix without ? or #",
        )
    ],
)
def test_a_backup_location_of_another_scheme_is_a_usage_error(tmp_path, command, where, why):
    """`backup s3a://bkt/backups` (Hadoop's spelling) wrote the backup into the working folder,
    as ./s3a:/bkt/backups, and said it was verified: the landing zone refuses such a URL, the
    backup took it for a folder. A fragment, which urlparse drops, stored it under another
    prefix. The daily schedule's DATA_PLATFORM_BACKUP_DEST is refused the same way."""
    from data_platform.operations.backup_schedule import DEST_VARIABLE, backup_root

    cwd = tmp_path / "cwd"
    assert refused_location_line(cwd, command, where) == why
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        patch.setenv(DEST_VARIABLE, where)
        with pytest.raises(dg.Failure, match=re.escape(f"{DEST_VARIABLE}={where!r} {why}")):
            backup_root()


def readable_by_others(root: Path) -> list[str]:
    """Every file and folder under `root` that a group or other user may read, write or enter."""
    return sorted(
        f"{oct(path.lstat().st_mode & 0o777)} {path.relative_to(root)}"
        for path in root.rglob("*")
        if not path.is_symlink() and path.lstat().st_mode & 0o077
    )


def test_the_cli_leaves_its_state_to_its_owner_alone_whatever_the_umask(tmp_path):
    """The warehouse holds raw personal data in clear (raw.users' e-mails), the instance's run
    databases and compute logs can hold secrets: under the login's default umask (022), a person
    running `simulate` then `materialize` left them readable by every user of the machine, while
    a backup of the same data is owner-only."""
    home = tmp_path / "home"  # made by the CLI, not by pytest (whose folders are 0700)
    environ = environ_without_settings(DATA_PLATFORM_HOME=str(home))
    commands = [
        ["simulate", "--days", "1", "--end-date", str(DAY), "--users", "20", "--quiet",
         "--events-per-day", "100"],
        ["materialize", "--start", str(DAY), "--end", str(DAY), "--select", "group:raw"],
    ]  # fmt: skip
    for args in commands:
        result = subprocess.run(
            [CLI, *args], cwd=REPO, env=environ, capture_output=True, text=True, timeout=300,
            umask=0o022,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
    instance = home / "dagster_home"
    assert (home / "warehouse.duckdb").is_file() and any(instance.rglob("*.db"))
    assert readable_by_others(home) == []
    assert home.stat().st_mode & 0o077 == 0


def test_a_dbt_manifest_missing_or_older_than_its_sources_is_named_with_its_fix(tmp_path):
    """A checkout without `make install` failed to load the Definitions (a 36-line traceback);
    after a `git pull` without it, the dbt steps failed on a KeyError of a node the new sources
    renamed, once the raw steps had run. `materialize` refuses both first, in one line."""
    project = tmp_path / "dbt"
    (project / "models").mkdir(parents=True)
    (project / "target").mkdir()
    model, manifest = project / "models" / "stg_x.sql", project / "target" / "manifest.json"
    model.write_text("select 1")
    (project / "target" / "run_results.json").write_text("{}")  # built: never a source
    assert missing_manifest(project) == f"the dbt manifest {manifest} does not exist"
    with pytest.raises(SettingsError) as missing:  # materialize's and metrics' one line
        require_manifest(project)
    assert str(missing.value) == (
        f"the dbt manifest {manifest} does not exist: run `make install`, which builds it"
    )
    manifest.write_text("{}")
    require_manifest(project)
    os.utime(model, (1_000, 1_000))
    assert missing_manifest(project) is stale_manifest(project) is None
    os.utime(model, (manifest.stat().st_mtime + 5,) * 2)  # changed after the manifest was built
    assert stale_manifest(project) == f"the dbt manifest {manifest} is older than {model}"
    (project / "target" / "compiled.sql").write_text("select 1")  # built output is no source
    (project / ".user.yml").write_text("id: x")  # what dbt may write beside its profiles
    os.utime(model, (1_000, 1_000))
    assert stale_manifest(project) is None


def test_materialize_with_a_celery_broker_that_does_not_answer_is_one_line(tmp_path):
    """Left to the run, it failed with Dagster's stack traces (133 lines) and a last line naming
    neither the setting nor its fix."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        broker = f"redis://:s3cretpart@127.0.0.1:{closed.getsockname()[1]}/0"
    done = run_cli(
        tmp_path / "home",
        *("materialize", "--start", "2026-01-01", "--end", "2026-01-01", "--select", "raw/users"),
        DATA_PLATFORM_EXECUTOR="celery",
        DATA_PLATFORM_CELERY_BROKER=broker,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "s3cretpart" not in done.stdout + done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("data-platform: DATA_PLATFORM_CELERY_BROKER='redis://:***@127.0.0.1:"), (
        line
    )
    assert line.endswith(
        "does not answer (Error 111 connecting to 127.0.0.1:"
        f"{broker.rsplit(':', 1)[1][:-2]}. Connection refused.): start it (`make services-up`), "
        'or point the variable at a running broker (eval "$(make -s services-env)")'
    ), line


def test_simulate_refuses_days_no_partition_reads_and_more_than_a_century(tmp_path):
    """--end-date before DATA_PLATFORM_START_DATE wrote files and rows no run ever reads, exit
    0; --days 99999999 reached before year 1: an OverflowError traceback."""
    home = tmp_path / "home"
    early = run_cli(home, "simulate", "--end-date", "2025-12-31", "--days", "1", "--quiet")
    assert (early.returncode, early.stdout) == (2, ""), early.stderr[-2000:]
    assert early.stderr.splitlines() == [
        "simulate: every simulated day is before DATA_PLATFORM_START_DATE=2026-01-01, the first "
        "partition, so no run would read them: give an --end-date from that day on, or set an "
        "earlier start date"
    ]
    assert not (home / "landing").exists() or not any((home / "landing").rglob("*.*"))
    many = run_cli(home, "simulate", "--days", "99999999", "--quiet")
    assert many.returncode == 2
    assert many.stderr.splitlines() == ["simulate: days is at most 36500 (a century), got 99999999"]
    # The world and a day are held in memory: 2e9 users grew, silent, until the machine ran out.
    crowd = run_cli(home, "simulate", "--users", "2000000000", "--quiet")
    assert crowd.returncode == 2
    assert crowd.stderr.splitlines() == [
        "simulate: users is at most 10,000,000 (the simulator holds them in memory, about 1 KB "
        "each), got 2,000,000,000"
    ]
    last = run_cli(home, "sql", "SELECT 1", DATA_PLATFORM_START_DATE="9999-12-31")
    assert last.returncode == 2
    assert last.stderr.splitlines() == [
        "data-platform: DATA_PLATFORM_START_DATE='9999-12-31' is the last date there is, with no "
        "day after it: set it to YYYY-MM-DD, e.g. 2026-01-01"
    ]
