"""The PII salt: one per home, complete or absent, never shown in resource config."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import string
import subprocess
import sys
import unicodedata
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from data_platform.assets.dbt import FILE_LOG_ARGS, dbt_environment
from data_platform.assets.dbt_project import DBT_PROJECT_DIR
from data_platform.ingestion.tables import SOURCE_DB_TABLES, ensure_raw_tables
from data_platform.resources.build import build_resources
from data_platform.resources.privacy import (
    SALT_FILE,
    Privacy,
    SaltError,
    local_pii_salt,
)
from data_platform.services.registry import service_env
from data_platform.settings import load_settings
from data_platform_tests.helpers import write_postgres_instance
from data_platform_tests.test_dbt_spark import spark, spark_env  # noqa: F401 (fixtures)

SALT_VARIABLE = "DATA_PLATFORM_PII_SALT"


def test_concurrent_first_uses_agree_on_one_complete_salt(tmp_path):
    """Created in place, concurrent first uses read it empty or kept salts of their own (in a
    review: 11 empty and 5 different salts in 200 homes of 4 processes each)."""
    # Spawned, not forked: a fork of a test process with threads (pytest-xdist's) can hang.
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        for attempt in range(20):
            path = tmp_path / str(attempt) / SALT_FILE
            salts = pool.map(local_pii_salt, [path] * 8, chunksize=1)
            assert len(set(salts)) == 1 and len(salts[0]) == 64
            assert path.read_text() == salts[0]
            assert path.stat().st_mode & 0o777 == 0o600
            assert [p.name for p in path.parent.iterdir()] == [SALT_FILE]  # no temp file left


def test_an_empty_salt_file_is_one_line_not_an_empty_salt(tmp_path):
    path = tmp_path / SALT_FILE
    path.write_text("")
    with pytest.raises(SaltError, match="is empty: restore it from a backup"):
        local_pii_salt(path)


def test_the_salt_is_not_in_the_resource_config_the_ui_shows(tmp_path, monkeypatch):
    monkeypatch.delenv("DATA_PLATFORM_PII_SALT", raising=False)
    settings = load_settings({"DATA_PLATFORM_HOME": str(tmp_path)})
    privacy = build_resources(settings)["privacy"]
    salt = privacy.salt()
    assert salt == (Path(tmp_path) / SALT_FILE).read_text()
    assert salt not in json.dumps(privacy.model_dump(), default=str)


# A salt given by hand, with the characters an inlined SQL literal had to escape.
HAND_SALT = "it's a \\secret-é-" + "5f" * 8
EMAILS = {  # user_id -> the address of its one version, as the app database holds it
    1: "  Alice@Example.COM ",
    2: "bob@example.com",
    3: None,
    4: "   ",
    5: "ÉLODIE@Exemple.FR",  # only A-Z lowered, on every engine: its É stays É
    # Unicode spaces trimmed on every engine (Spark's trim() kept them: another hash), and an
    # address of them only is none (Spark hashed it).
    6: "\u00a0Carol@example.com\u3000",
    7: "\u2003\u00a0",
}
RAW_USERS = """
    CREATE SCHEMA IF NOT EXISTS raw;
    CREATE TABLE raw.users (id BIGINT, email VARCHAR, full_name VARCHAR, country VARCHAR,
        created_at TIMESTAMP, updated_at TIMESTAMP, deleted_at TIMESTAMP,
        _extracted_at TIMESTAMP);
"""
USER_ROW = "(?, ?, 'A Name', 'fr', TIMESTAMP '2026-01-01', TIMESTAMP '2026-01-02', NULL, now())"


ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
# The Unicode space separators, by Python's own Unicode database: what the dbt var names.
SPACE_SEPARATORS = "".join(
    c for c in map(chr, range(sys.maxunicode + 1)) if unicodedata.category(c) == "Zs"
)


def salted_hash(salt: str, email: str | None) -> str | None:
    """What the marts' email_hash is: sha256(salt || ascii_lower(trim_spaces(email))), hex; only
    A-Z is lowered (Python's lower(), like each engine's, maps other letters its own way), and
    only the Unicode space separators are trimmed (macro trim_spaces)."""
    address = (email or "").strip(SPACE_SEPARATORS).translate(ASCII_LOWER)
    return hashlib.sha256((salt + address).encode()).hexdigest() if address else None


def files_holding(root: Path, secret: str, exclude: Path) -> list[str]:
    """Every file under `root` (but `exclude`) whose bytes hold `secret` as UTF-8 or hex, or
    its tail after the last backslash (as a SQL literal escapes it, it is no longer whole)."""
    tail = secret.rsplit("\\", 1)[-1]
    needles = [secret.encode(), secret.encode().hex().encode(), tail.encode()]
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p != exclude and any(n in p.read_bytes() for n in needles)
    )


def dbt_build_users_history(settings, environ: dict[str, str]) -> subprocess.CompletedProcess:
    """`dbt build` of users_history and what it reads, as its own process (as the platform runs
    dbt), with its target and logs folders in the platform home."""
    work = settings.home / "dbt"
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("dbt")), "build", "--select", "+users_history",
            "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
            "--target-path", str(work / "target"), "--log-path", str(work / "logs"),
        ],
        env=environ, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_dbt_on_duckdb_writes_no_salt_and_hashes_as_before(tmp_path, monkeypatch):
    """The salt was inlined into users_history's SQL, so dbt wrote it in target/compiled,
    target/run, manifest.json, partial_parse.msgpack and dbt.log. Now the plugin hands it to
    DuckDB as a variable: no file of the home holds it (but the salt file), and every hash is the
    same as before."""
    monkeypatch.delenv(SALT_VARIABLE, raising=False)
    settings = load_settings({"DATA_PLATFORM_HOME": str(tmp_path)})
    (tmp_path / SALT_FILE).write_text(HAND_SALT)
    with duckdb.connect(str(settings.warehouse)) as conn:
        conn.execute(RAW_USERS)
        conn.executemany(f"INSERT INTO raw.users VALUES {USER_ROW}", list(EMAILS.items()))
        # Built by hand as an older platform would have: brought up to the contract, as a run does.
        ensure_raw_tables(conn, SOURCE_DB_TABLES)
    resources = build_resources(settings)
    with dbt_environment(resources["warehouse"], resources["privacy"]):
        environ = dict(os.environ)
    assert environ[SALT_VARIABLE] == HAND_SALT

    built = dbt_build_users_history(settings, environ)
    assert built.returncode == 0, built.stdout[-3000:]
    assert (settings.home / "dbt" / "target" / "run").is_dir()
    assert files_holding(tmp_path, HAND_SALT, exclude=tmp_path / SALT_FILE) == []
    with duckdb.connect(str(settings.warehouse), read_only=True) as conn:
        hashes = dict(
            conn.execute("SELECT user_id, email_hash FROM snapshots.users_history").fetchall()
        )
    assert hashes == {i: salted_hash(HAND_SALT, e) for i, e in EMAILS.items()}

    # Without the salt the hash fails, in one line that names the variable.
    unsalted = dbt_build_users_history(
        settings, {k: v for k, v in environ.items() if k != SALT_VARIABLE}
    )
    assert unsalted.returncode == 1
    assert (
        "DATA_PLATFORM_PII_SALT is not set: the e-mail hash needs a secret salt" in unsalted.stdout
    )


def test_dbt_on_spark_writes_no_salt_and_hashes_as_before(spark, tmp_path, monkeypatch):  # noqa: F811
    """The same on Spark (dbt-spark's session method, a local session in this process): the
    salt reaches the session as a conf and Spark's parser substitutes it; dbt writes no trace."""
    from dbt.cli.main import dbtRunner

    spark.sql("CREATE DATABASE IF NOT EXISTS raw")
    spark.createDataFrame(
        [(i, e, "A Name", "fr") for i, e in EMAILS.items()],
        "id bigint, email string, full_name string, country string",
    ).selectExpr(
        "*",
        *(f"timestamp'2026-01-0{n}' AS {c}" for n, c in ((1, "created_at"), (2, "updated_at"))),
        "CAST(NULL AS timestamp) AS deleted_at",
        "current_timestamp() AS _extracted_at",
        "CAST(NULL AS string) AS _rescued",
    ).write.format("parquet").mode("overwrite").saveAsTable("raw.users")

    def build(salt: str | None):
        if salt is None:
            monkeypatch.delenv(SALT_VARIABLE, raising=False)
        else:
            monkeypatch.setenv(SALT_VARIABLE, salt)
        return dbtRunner().invoke(
            [
                "build", "--select", "+users_history", "--target", "spark",
                "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
                "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs"),
                "--quiet",
            ]
        )  # fmt: skip

    built = build(HAND_SALT)
    assert built.success, built.exception
    assert files_holding(tmp_path, HAND_SALT, exclude=tmp_path / SALT_FILE) == []
    hashes = dict(spark.sql("SELECT user_id, email_hash FROM snapshots.users_history").collect())
    assert hashes == {i: salted_hash(HAND_SALT, e) for i, e in EMAILS.items()}

    unsalted = build(None)
    assert not unsalted.success
    messages = " ".join(str(r.message) for r in unsalted.result or [])
    assert "DATA_PLATFORM_PII_SALT is not set: the e-mail hash needs a secret salt" in messages


def test_an_error_that_prints_the_salt_leaves_no_trace_in_dbt_output(tmp_path, monkeypatch):
    """On Spark an analysis error prints its unresolved plan, the salt's hex in it
    (`unhex(...)`), and dbt showed and kept that text: on stdout (the Dagster event log), in
    dbt.log and run_results.json. The salt's spellings are now dbt secrets, which dbt shows as
    "*****" in all three. A model that fails printing the salt
    in clear and in hex stands for such an error here (DuckDB prints no plan), in a copy of the
    project."""
    monkeypatch.delenv(SALT_VARIABLE, raising=False)
    settings = load_settings({"DATA_PLATFORM_HOME": str(tmp_path / "home")})
    salt_file = settings.home / SALT_FILE
    salt_file.parent.mkdir()
    salt_file.write_text(HAND_SALT)
    duckdb.connect(str(settings.warehouse)).close()
    project = tmp_path / "project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    salt = "getvariable('data_platform_pii_salt')"
    (project / "models" / "leak.sql").write_text(
        "{{ config(materialized='table') }}\n"
        f"select error({salt} || ' hex ' || lower(hex({salt}))) as failed"
    )
    resources = build_resources(settings)
    with dbt_environment(resources["warehouse"], resources["privacy"]):
        environ = dict(os.environ)
    target = settings.home / "dbt" / "target"
    ran = subprocess.run(
        [
            str(Path(sys.executable).with_name("dbt")), "run", "--select", "leak",
            "--project-dir", str(project), "--profiles-dir", str(project),
            "--target-path", str(target), "--log-path", str(target),
            "--log-format", "json", *FILE_LOG_ARGS,  # as the dbt steps run it
        ],
        env=environ, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ran.returncode == 1 and "***** hex *****" in ran.stdout, ran.stdout[-3000:]
    # Written as the error prints it, as JSON escapes it, and the part past the backslash.
    spellings = [HAND_SALT, HAND_SALT.encode().hex(), json.dumps(HAND_SALT)[1:-1]]
    spellings.append(HAND_SALT.rsplit("\\", 1)[-1])

    def holding() -> list[str]:
        return sorted(
            str(p.relative_to(settings.home))
            for p in settings.home.rglob("*")
            if p.is_file()
            and p != salt_file
            and any(s.encode() in p.read_bytes() for s in spellings)
        )

    assert not [s for s in spellings if s in ran.stdout + ran.stderr]
    assert holding() == []
    [result] = json.loads((target / "run_results.json").read_text())["results"]
    assert result["status"] == "error" and "***** hex *****" in result["message"]


@dg.asset
def hashed_emails(privacy: Privacy) -> None:
    """A step that needs the salt, as the dbt steps do (dbt_environment)."""
    privacy.salt()


def test_a_shared_instance_or_celery_refuses_to_make_a_salt(tmp_path, monkeypatch, postgres_url):
    """Each worker machine made a salt of its own (a different hash per worker); distributed, a
    missing DATA_PLATFORM_PII_SALT is one line, and no salt file appears."""
    monkeypatch.delenv(SALT_VARIABLE, raising=False)
    settings = load_settings({"DATA_PLATFORM_HOME": str(tmp_path / "home")})
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    write_postgres_instance(dagster_home, postgres_url)
    resources = {"privacy": build_resources(settings)["privacy"]}
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        result = dg.materialize(
            [hashed_emails], resources=resources, instance=instance, raise_on_error=False
        )
    [failure] = result.get_step_failure_events()
    [line] = failure.step_failure_data.error.cause.message.strip().splitlines()
    assert "DATA_PLATFORM_PII_SALT is not set, and the Dagster instance is shared" in line
    assert "set the same DATA_PLATFORM_PII_SALT for every process" in line
    assert not (settings.home / SALT_FILE).exists()

    celery = {"DATA_PLATFORM_EXECUTOR": "celery", "DATA_PLATFORM_CELERY_BROKER": "redis://x:1/0"}
    on_celery = load_settings({"DATA_PLATFORM_HOME": str(settings.home), **celery})
    with pytest.raises(SaltError, match="not set, and steps run on Celery workers"):
        build_resources(on_celery)["privacy"].salt()
    assert not (settings.home / SALT_FILE).exists()

    # The salt given: used as it is, everywhere.
    monkeypatch.setenv(SALT_VARIABLE, HAND_SALT)
    given = build_resources(on_celery)["privacy"]
    with dg.build_resources({"privacy": given}) as built:
        assert built.privacy.salt() == HAND_SALT
    # On one machine (SQLite) a salt file is still made on first use.
    monkeypatch.delenv(SALT_VARIABLE)
    local = dg.materialize(
        [hashed_emails], resources=resources, instance=dg.DagsterInstance.ephemeral()
    )
    assert local.success and len((settings.home / SALT_FILE).read_text()) == 64


def test_the_local_services_export_the_homes_salt(postgres_server):
    """`make run-distributed` on one machine: its shared instance refuses a salt file, so the
    stack's variables (`make -s services-env`, the Celery workers') carry the home's salt."""
    config = dataclasses.replace(postgres_server.config, environ={})
    exported = service_env(config, ["postgres"])
    home_salt = local_pii_salt(config.platform_home / SALT_FILE)
    assert exported[SALT_VARIABLE] == home_salt
    given = dataclasses.replace(config, environ={SALT_VARIABLE: HAND_SALT})
    assert SALT_VARIABLE not in service_env(given, ["postgres"])  # the caller's own is kept


def test_the_space_separators_staging_trims_are_unicodes_category_zs():
    """One list for dbt's trim_spaces and the checks that read raw as staging does (the
    dbt var); it was written out twice, in the macro and in the checks."""
    from data_platform.checks.vocabulary import vocabulary

    assert vocabulary().space_separators == SPACE_SEPARATORS
