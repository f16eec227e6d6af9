"""A run process's kept event-log connection and a PostgreSQL restart (a failover, an upgrade)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from data_platform.orchestration.pool_wait import _keep_connections
from data_platform.services.base import start
from data_platform.services.config import load_services_config
from data_platform.services.instance import STORAGE
from data_platform.services.postgres import Postgres
from data_platform.services.process import wait_until
from data_platform_tests.conftest import services_home
from data_platform_tests.helpers import free_port, write_postgres_instance


@pytest.fixture
def own_postgres() -> Iterator[Postgres]:
    """A PostgreSQL of this test alone: restarting the session's would cut other tests off."""
    with services_home("data_platform_pg_restart_") as home:
        environ = {"DATA_PLATFORM_HOME": str(home), "DATA_PLATFORM_POSTGRES_PORT": str(free_port())}
        server = Postgres(load_services_config(environ))
        try:
            start(server)
            yield server
        finally:
            server.stop()


def test_a_kept_event_log_connection_survives_a_postgresql_restart(
    own_postgres, tmp_path: Path, monkeypatch
):
    """The run process keeps its event-log connection (`_keep_connections`); after a restart the
    next claim check or event used the dead connection and failed the step, where a connection
    per query had waited for the server to come back."""
    # The distributed instance's storage, as `services-up` writes it.
    for name, value in own_postgres.env().items():
        monkeypatch.setenv(name, value)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump({"storage": STORAGE}))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        _keep_connections(instance)
        run = instance.add_run(dg.DagsterRun(job_name="j", run_id=str(uuid.uuid4())))
        instance.report_engine_event("before the restart", run)

        own_postgres.stop()
        start(own_postgres)

        instance.report_engine_event("after the restart", run)
        messages = [entry.message for entry in instance.all_logs(run.run_id)]
        assert messages == ["before the restart", "after the restart"]


def test_a_closed_instance_closes_its_kept_event_log_connections(
    postgres_server, postgres_url, tmp_path: Path
):
    """dagster-postgres's dispose() leaves the event log's engine alone (a NullPool holds
    nothing): the kept connection stayed open on the server after the instance was closed."""
    database = sa.engine.make_url(postgres_url).database

    def connections() -> int:
        with postgres_server.admin_engine().connect() as conn:
            count = "SELECT count(*) FROM pg_stat_activity WHERE datname = :d"
            return conn.execute(sa.text(count), {"d": database}).scalar_one()

    write_postgres_instance(tmp_path, postgres_url)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        _keep_connections(instance)
        run = instance.add_run(dg.DagsterRun(job_name="j", run_id=str(uuid.uuid4())))
        instance.report_engine_event("kept", run)
        assert connections() >= 1
    assert wait_until(lambda: connections() == 0, timeout=10), connections()


def test_runs_are_stamped_in_utc_whatever_the_servers_zone(
    postgres_server, postgres_url, tmp_path: Path, monkeypatch
):
    """Dagster stamps a run with the server's CURRENT_TIMESTAMP, in a column without a zone, and
    reads it back as UTC: on a server in New York a run made now was five hours old (the
    never-started sweep failed live runs, the queue-age alert fired), east of UTC younger."""
    url = sa.engine.make_url(postgres_url)
    with postgres_server.admin_engine().connect() as conn:
        conn.execute(
            sa.text(f"ALTER DATABASE \"{url.database}\" SET timezone = 'America/New_York'")
        )
    variables = {
        "DAGSTER_PG_HOST": url.host,
        "DAGSTER_PG_PORT": str(url.port),
        "DAGSTER_PG_USER": url.username,
        "DAGSTER_PG_PASSWORD": url.password,
        "DAGSTER_PG_DB": url.database,
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump({"storage": STORAGE}))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        before = time.time()
        run = instance.add_run(dg.DagsterRun(job_name="j", run_id=str(uuid.uuid4())))
        [record] = instance.get_run_records(dg.RunsFilter(run_ids=[run.run_id]))
    assert before - 60 < record.create_timestamp.timestamp() < time.time() + 60
