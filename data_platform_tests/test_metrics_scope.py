"""What the exporter reports is what the code declares: a sensor or check that left the code
is not reported (its stale state would page forever); the metrics scrape's brief read of the
warehouse never fails a dbt step; and `materialize --timeout` (which pages as a failed run)
never calls a finished run timed out."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from argparse import Namespace
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.remote_origin import (
    RegisteredCodeLocationOrigin,
    RemoteInstigatorOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    SensorInstigatorData,
    TickData,
    TickStatus,
)
from prometheus_client import generate_latest
from prometheus_client.core import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from data_platform.materialize import Deadline
from data_platform.operations.metrics import PlatformCollector, collector_for
from data_platform.operations.warehouse_metrics import DuckDBDayCounts
from data_platform_tests import instance_history as history

DBT_DIR = Path(__file__).resolve().parents[1] / "dbt"
TICK_AGE = "data_platform_sensor_last_tick_age_seconds"
FAILING = "data_platform_asset_check_failing"
EXECUTIONS = "data_platform_asset_check_executions_total"
RAW_EVENTS = dg.AssetKey(["raw", "events"])


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        yield instance


def scrape(collector: PlatformCollector) -> dict[str, dict[frozenset, float]]:
    """{sample name: {labels: value}} of one scrape, parsed from the exposition text."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    samples: dict[str, dict[frozenset, float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            samples.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return samples


def sensor_state(
    instance, name: str, status: InstigatorStatus, at: float, repository=history.REPOSITORY
) -> None:
    """A stored sensor state with one tick at `at`, as the daemon leaves it."""
    origin = RemoteInstigatorOrigin(repository, name)
    state = InstigatorState(
        origin, InstigatorType.SENSOR, status, SensorInstigatorData(last_tick_timestamp=at)
    )
    instance.add_instigator_state(state)
    instance.create_tick(
        TickData(
            instigator_origin_id=origin.get_id(),
            instigator_name=name,
            instigator_type=InstigatorType.SENSOR,
            status=TickStatus.SKIPPED,
            timestamp=at,
            selector_id=state.selector_id,
        )
    )


@dg.asset(key=RAW_EVENTS)
def events() -> None: ...


@dg.asset_check(asset=events)
def conservation() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


@dg.sensor(asset_selection=[events], default_status=dg.DefaultSensorStatus.RUNNING)
def landing_zone_files():
    return None


@dg.sensor(asset_selection=[events], default_status=dg.DefaultSensorStatus.STOPPED)
def now_stopped_by_default():
    return None


DEFS = dg.Definitions(
    assets=[events],
    asset_checks=[conservation],
    sensors=[landing_zone_files, now_stopped_by_default],
)


def stale_history(instance) -> float:
    """Sensors and checks as an instance keeps them after the code changed under it."""
    now = time.time()
    sensor_state(instance, "landing_zone_files", InstigatorStatus.DECLARED_IN_CODE, now - 45)
    # The kafka sensor, gone with DATA_PLATFORM_KAFKA_BOOTSTRAP: its state stays, stale.
    sensor_state(instance, "kafka_consumer_lag", InstigatorStatus.DECLARED_IN_CODE, now - 86400)
    # Ran by default once; the code's default is now STOPPED (what Dagster then shows).
    sensor_state(instance, "now_stopped_by_default", InstigatorStatus.DECLARED_IN_CODE, now - 900)
    run = history.finished_run(instance, "checks_job", now - 500, 1, {})
    error = dg.AssetCheckSeverity.ERROR
    history.check_evaluation(instance, run, now - 500, RAW_EVENTS, "conservation", True, error)
    # A check renamed since (its last result failed): it never runs again.
    history.check_evaluation(instance, run, now - 500, RAW_EVENTS, "old_conservation", False, error)
    return now


def test_sensors_and_checks_gone_from_the_code_are_not_reported(instance, tmp_path, settings):
    stale_history(instance)
    samples = scrape(collector_for(instance, settings, DEFS))

    ages = {dict(labels)["sensor"]: dict(labels)["state"] for labels in samples[TICK_AGE]}
    # Stored DECLARED_IN_CODE means "as the code says": stopped when the code's default is.
    assert ages == {"landing_zone_files": "declared_in_code", "now_stopped_by_default": "stopped"}
    failing = {dict(labels)["check"]: v for labels, v in samples[FAILING].items()}
    assert failing == {"conservation": 0}
    assert {dict(labels)["check"] for labels in samples[EXECUTIONS]} == {"conservation"}


def test_without_the_codes_names_every_stored_state_is_reported(instance, tmp_path):
    """The collector built without Definitions (as the exporter's older tests build it)."""
    stale_history(instance)
    samples = scrape(PlatformCollector(instance, DuckDBDayCounts(tmp_path / "none.duckdb"), {}))
    sensors = {dict(labels)["sensor"] for labels in samples[TICK_AGE]}
    assert sensors == {"landing_zone_files", "kafka_consumer_lag", "now_stopped_by_default"}
    assert len(samples[FAILING]) == 2


def test_a_sensors_state_left_by_another_code_location_is_not_a_second_series(instance, settings):
    """The same sensor, loaded once under another location name: its state stays, stale."""
    now = time.time()
    before = RemoteRepositoryOrigin(
        RegisteredCodeLocationOrigin("definitions.py"), "__repository__"
    )
    sensor_state(instance, "landing_zone_files", InstigatorStatus.RUNNING, now - 86400, before)
    sensor_state(instance, "landing_zone_files", InstigatorStatus.DECLARED_IN_CODE, now - 20)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector_for(instance, settings, DEFS))
    text = generate_latest(registry).decode()

    ages = [
        s
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == TICK_AGE
    ]
    assert len(ages) == 1, text
    assert ages[0].labels == {"sensor": "landing_zone_files", "state": "declared_in_code"}
    assert ages[0].value < 600


def hold_read_only(path: str, ready, release) -> None:
    conn = duckdb.connect(path, read_only=True)
    ready.set()
    # Held until the test says so, not for a fixed time: a test descheduled for that long
    # found the lock gone. Bounded, so that a test that never says so leaves no process behind.
    release.wait(120)
    conn.close()


def test_dbt_waits_for_a_scrape_holding_the_warehouse(tmp_path, monkeypatch):
    """A scrape (or `data-platform sql`) holds the file read-only for a moment; dbt-duckdb,
    connecting once, failed the step in 0.02 s ("Could not set lock"). The real profile,
    rendered by dbt, opened by dbt-duckdb, must wait for the holder instead."""
    from dbt.adapters.duckdb.environments import Environment
    from dbt.config.profile import Profile, read_profile
    from dbt.config.renderer import ProfileRenderer
    from dbt.flags import set_from_args
    from dbt_common.context import set_invocation_context

    path = str(tmp_path / "warehouse.duckdb")
    duckdb.connect(path).close()
    monkeypatch.setenv("DATA_PLATFORM_WAREHOUSE", path)
    monkeypatch.setenv("DATA_PLATFORM_PII_SALT", "salt")
    monkeypatch.setenv("DBT_TARGET", "dev")
    set_from_args(Namespace(), None)
    set_invocation_context(dict(os.environ))
    profile = Profile.from_raw_profiles(
        read_profile(str(DBT_DIR)), "data_platform", ProfileRenderer({})
    )

    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=hold_read_only, args=(path, ready, release))
    holder.start()
    hold = 1.0
    # Started after `began`: the lock is held for at least `hold` of the measured wait.
    releaser = threading.Timer(hold, release.set)
    try:
        assert ready.wait(60)
        began = time.monotonic()
        releaser.start()
        conn = Environment.initialize_db(profile.credentials)
        waited = time.monotonic() - began
        conn.execute("CREATE TABLE written AS SELECT 1 AS x")
        conn.close()
    finally:
        releaser.cancel()
        release.set()  # an assert or error above must not leave the holder waiting
        holder.join(30)
        if holder.is_alive():
            holder.kill()
            holder.join()
    assert waited >= hold  # it met the lock, and waited rather than failed


# `data-platform materialize --timeout`: the deadline and the end of the run agree on which came
# first (materialize.py). No sleeps: each interrupt is sent at a chosen point of the run.


@dg.op
def one() -> int:
    return 1


@dg.job
def tiny_job() -> None:
    one()


def test_a_deadline_that_fires_after_the_run_finished_interrupts_nothing():
    sent: list[str] = []
    late = Deadline(60, interrupt=lambda: sent.append("SIGINT"))
    assert late.finish() is False
    late.expire()  # the timer's wait ends just after the run did
    assert sent == [] and not late.expired

    early = Deadline(60, interrupt=lambda: sent.append("SIGINT"))
    early.expire()
    assert sent == ["SIGINT"] and early.finish() is True


@pytest.fixture
def materialize_tiny_job(settings, monkeypatch):
    """materialize_range on `tiny_job`, execute_run wrapped so that `before` / `after` run
    just before it starts and just after it returned; gives (exit status, the deadline)."""
    from dagster import reconstructable

    from data_platform import materialize

    selected = materialize.SelectedJob(
        reconstructable(tiny_job),
        frozenset(),
        materialize.workspace_job_origin("__repository__", "tiny_job"),
    )
    monkeypatch.setattr(materialize, "selected_job", lambda select: selected)
    deadlines: list[materialize.Deadline] = []

    class Recorded(materialize.Deadline):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            deadlines.append(self)

    monkeypatch.setattr(materialize, "Deadline", Recorded)
    real_execute_run = materialize.execute_run
    sigterm = signal.getsignal(signal.SIGTERM)

    def run(before=lambda d: None, after=lambda d: None) -> int:
        def execute_run(*args, **kwargs):
            before(deadlines[0])
            result = real_execute_run(*args, **kwargs)
            after(deadlines[0])
            return result

        monkeypatch.setattr(materialize, "execute_run", execute_run)
        try:
            return materialize.materialize_range("tiny", None, None, timeout=3600)
        finally:
            monkeypatch.setattr(materialize, "execute_run", real_execute_run)

    yield run
    signal.signal(signal.SIGTERM, sigterm)


def test_a_deadline_reached_as_the_run_returns_leaves_its_success(materialize_tiny_job, capsys):
    """The timer fired (a real SIGINT to this process) after execute_run returned, before the
    main thread stopped the timer: a successful run reported "timed out", exit 3, or a
    traceback."""
    assert materialize_tiny_job(after=lambda deadline: deadline.expire()) == 0
    assert capsys.readouterr().out.strip().endswith("success")


def test_a_deadline_reached_before_the_run_starts_still_stops_it(materialize_tiny_job, capsys):
    assert materialize_tiny_job(before=lambda deadline: deadline.expire()) == 3
    assert "timed out after 3600s: stopped and marked failed" in capsys.readouterr().err


def test_ctrl_c_during_the_run_still_stops_it(materialize_tiny_job, capsys):
    assert materialize_tiny_job(before=lambda _: os.kill(os.getpid(), signal.SIGINT)) == 130
    assert "run interrupted: stopped and marked failed" in capsys.readouterr().err
