"""The platform's Dagster instance, for the commands that run outside `dagster dev`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from data_platform.services.instance import REPO_INSTANCE_YAML
from data_platform.services.process import create_once
from data_platform.settings import Settings


@contextmanager
def platform_instance(settings: Settings) -> Iterator[dg.DagsterInstance]:
    """DAGSTER_HOME's instance, by default `$DATA_PLATFORM_HOME/dagster_home` as the Makefile
    exports it: a command typed by hand (`data-platform materialize`, `metrics`) records its runs
    where `make run` reads them, instead of stopping on Dagster's DAGSTER_HOME-not-set error.
    A DAGSTER_HOME without dagster.yaml gets the repo's, as `make run` copies it.

    Opened as backup opens it: a dagster.yaml that is wrong, a variable it reads unset or of
    the wrong type, its PostgreSQL refusing or not answering are one line (a BackupError, as
    the CLI prints it), not Dagster's traceback. Only the opening: what the command does with
    the instance raises as it would."""
    # Imported here: operations.snapshot itself reads this module.
    from data_platform.operations.snapshot import instance_errors

    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    config = settings.dagster_home / "dagster.yaml"
    if not config.exists():
        # A home set up by the CLI alone had Dagster's defaults: no `duckdb` pool limit, and
        # two `materialize` at once ran warehouse steps side by side (86 overlapping pairs, two
        # dbt builds sharing one target folder), saved only by DuckDB's 120 s lock wait.
        create_once(config, REPO_INSTANCE_YAML.read_text())
    with instance_errors(config):
        instance = dg.DagsterInstance.from_config(str(settings.dagster_home))
    with instance:
        yield instance


def postgres_database(postgres_url: str) -> str:
    """Which database a URL names, without its user and password (the same one, whoever
    logs in)."""
    url = sa.engine.make_url(postgres_url)
    return f"database {url.database} at {url.host}:{url.port}"


def storage_place(instance: dg.DagsterInstance) -> str:
    """Where the instance keeps its runs and events, for an error line: its PostgreSQL
    database (no credentials) or the folder of its SQLite files. SQLite's own "unable to open
    database file" names none."""
    storage = instance.run_storage
    postgres = getattr(storage, "postgres_url", None)
    if postgres:
        return f"PostgreSQL {postgres_database(postgres)}"
    sqlite = getattr(storage, "_conn_string", None)
    if sqlite:
        return f"SQLite files in {Path(sa.engine.make_url(sqlite).database or '').parent}"
    return str(instance.root_directory)


class _PostgresRetries(logging.Filter):
    """dagster-postgres retries a failed connection five times, backing off (~11 s in all), and
    logs each retry as a root warning holding the driver's error: the one hook its retry loop
    offers. Filtered out: before the one line that says what failed, they were a screenful of
    the same error. A failure `gives_up` names ends the retries, raised from its warning."""

    def __init__(self, gives_up: Callable[[Exception], bool]):
        super().__init__()
        self._gives_up = gives_up

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Retrying failed database connection"):
            return True
        failed = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if isinstance(failed, Exception) and self._gives_up(failed):
            raise failed
        return False


@contextmanager
def postgres_retries(gives_up: Callable[[Exception], bool]) -> Iterator[None]:
    """Within the block, dagster-postgres's connection retries log nothing, and a failed
    connection that `gives_up` names is raised at once instead of retried."""
    retries = _PostgresRetries(gives_up)
    logging.getLogger().addFilter(retries)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(retries)
