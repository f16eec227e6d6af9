"""A run waiting for a `duckdb` slot: it sleeps, says behind which run, stops on SIGTERM and on
`--timeout`; and a slot leaked by a dead run is taken back before a headless run starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import psutil
import pytest
from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._core.events import DagsterEventType, EngineEventData
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._grpc.client import DagsterGrpcClient

from data_platform.materialize import WAIT_REPORT_SECONDS
from data_platform.orchestration import pool_wait
from data_platform.orchestration.pool_wait import report_waits
from data_platform.orchestration.run_health import (
    CREATOR_PID_TAG,
    WORKER_HOST_TAG,
    release_dead_runs,
    this_host,
)
from data_platform.partitions import DAILY_PARTITIONS
from data_platform.services.process import wait_until
from data_platform_tests import instance_history as history
from data_platform_tests.helpers import environ_without_settings, free_port, write_postgres_instance
from data_platform_tests.test_cli import DAY, REPO, run_cli

SELECT = ("materialize", "--start", str(DAY), "--end", str(DAY), "--select", "key:raw/events")


def fake_run(
    instance: dg.DagsterInstance,
    pid: int,
    hold_slot: bool = True,
    status: dg.DagsterRunStatus = dg.DagsterRunStatus.STARTED,
) -> str:
    """A run (STARTED unless said) whose process announced `pid`, holding the duckdb slot if
    `hold_slot`."""
    run = instance.add_run(
        dg.DagsterRun(job_name="holder", run_id=str(uuid.uuid4()), status=status)
    )
    instance.report_engine_event(
        f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid)
    )
    instance.event_log_storage.initialize_concurrency_limit_to_default("duckdb")
    assert (
        not hold_slot
        or instance.event_log_storage.claim_concurrency_slot(
            "duckdb", run.run_id, "raw__events"
        ).is_claimed
    )
    return run.run_id


@pytest.fixture
def instance(settings):
    # An empty landing zone: the runs here read no file (a zone that does not exist is refused).
    (settings.home / "landing").mkdir(parents=True)
    home = settings.home / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def dead_pid() -> int:
    process = subprocess.Popen(["sleep", "60"])
    process.kill()
    process.wait()
    return process.pid


def test_a_slot_the_run_frees_is_asked_for_by_its_waiting_steps_at_once(instance):
    """The run's next warehouse step takes the slot its last one freed at the next check, not
    after the claim back-off (1-2 s a step on Celery workers, most of a small graph's time)."""
    from dagster._core.execution.plan.instance_concurrency_context import (
        InstanceConcurrencyContext,
    )

    pool_wait.install()
    run = instance.add_run(dg.DagsterRun(job_name="steps", run_id=str(uuid.uuid4())))
    with InstanceConcurrencyContext(instance, run) as steps:
        assert steps.claim("duckdb", "first")
        assert not steps.claim("duckdb", "second")  # behind "first", now backing off
        assert not steps.claim("duckdb", "third")
        steps.free_step("first")
        assert steps.claim("duckdb", "second")  # first in the pool's queue: at once
        assert not steps.claim("duckdb", "third")
        # A slot freed by another run (or a step of this one that held none) changes no
        # back-off: the waiting step asks again when it ends.
        steps.free_step("never_claimed")
        assert not steps.claim("duckdb", "third")
    info = instance.event_log_storage.get_concurrency_info("duckdb")
    assert [(s.run_id, s.step_key) for s in info.claimed_slots] == [(run.run_id, "second")]


def test_a_dead_run_is_failed_and_its_slot_freed_a_live_one_is_left_alone(instance):
    dead = fake_run(instance, dead_pid())
    alive = fake_run(instance, os.getpid(), hold_slot=False)
    done = release_dead_runs(instance)
    assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(alive).status == dg.DagsterRunStatus.STARTED
    assert not instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots
    assert len(done) == 2 and dead in done[0] and dead in done[1]
    assert release_dead_runs(instance) == []  # nothing left to do: re-running is safe


def test_a_clock_step_leaves_a_live_run_alone_a_reused_pid_is_still_told_apart(
    instance, monkeypatch
):
    """psutil gives a process's start as its time since boot plus the boot time, which a clock
    step moves: a step of 5 s made a run process started just before it announced itself look
    younger than its announcement (pid reuse), and the live run was failed."""
    from data_platform.orchestration.run_health import check_worker

    process = subprocess.Popen(["sleep", "60"])
    try:
        run = instance.get_run_by_id(fake_run(instance, process.pid, hold_slot=False))
        booted = psutil.boot_time()
        monkeypatch.setattr(psutil._pslinux, "boot_time", lambda: booted + 5)
        assert check_worker(instance, run).status.value == "RUNNING"
        monkeypatch.setattr(psutil._pslinux, "boot_time", lambda: booted + 3600)
        health = check_worker(instance, run)
        assert health.status.value == "FAILED" and "belongs to another" in health.msg
    finally:
        process.kill()
        process.wait()


def test_a_run_whose_process_died_while_canceling_is_canceled_and_its_slot_freed(instance):
    """Only STARTING and STARTED runs were checked: a run whose process died while it was being
    canceled stayed CANCELING and kept its slot, so every headless warehouse step waited."""
    canceling = dg.DagsterRunStatus.CANCELING
    dead = fake_run(instance, dead_pid(), status=canceling)
    alive = fake_run(instance, os.getpid(), hold_slot=False, status=canceling)
    done = release_dead_runs(instance)
    assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.CANCELED
    assert instance.get_run_by_id(alive).status == canceling
    assert not instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots
    assert done[0].startswith(f"Run {dead} marked canceled") and dead in done[1]


def test_materialize_takes_back_a_slot_leaked_by_a_dead_run(settings, instance):
    dead = fake_run(instance, dead_pid())
    result = run_cli(settings.home, *SELECT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Run {dead} marked failed" in result.stderr
    assert f"Freed the pool slots and claims of run {dead} (FAILURE)" in result.stderr


def in_progress_and_failed(
    instance: dg.DagsterInstance, key: dg.AssetKey
) -> tuple[list[str], list[str]]:
    """The days of `key` in progress and failed, as Dagster's automation reads them (the UI's
    one status a day says MATERIALIZED while an earlier run's rows stand)."""
    cached = get_and_update_asset_status_cache_value(instance, key, DAILY_PARTITIONS)
    in_progress = cached.deserialize_in_progress_partition_subsets(DAILY_PARTITIONS)
    failed = cached.deserialize_failed_partition_subsets(DAILY_PARTITIONS)
    return list(in_progress.get_partition_keys()), list(failed.get_partition_keys())


# `data-platform materialize` that creates its run, then stops short of starting it: what a
# kill -9 in between leaves (the plan is built in between: 25 s on a loaded machine).
CREATES_NEVER_STARTS = """
import sys, time
import dagster._core.execution.api as api
from data_platform.cli import main
api.execute_run = lambda *args, **kwargs: time.sleep(600)
sys.argv = ["data-platform", *sys.argv[1:]]
main()
"""


def test_a_run_whose_materialize_died_before_starting_it_is_failed(settings, instance):
    """Killed between creating its run and starting it, `materialize` left the run NOT_STARTED
    for good, its day of raw/events "in progress" to the automation, which then never requested
    it: nothing ended such a run. The next `materialize` fails it, as it does a dead STARTED run;
    one whose process lives is left alone."""
    events, day = dg.AssetKey(["raw", "events"]), str(DAY)
    assert run_cli(settings.home, *SELECT).returncode == 0  # the asset's status is then kept
    env = environ_without_settings(DATA_PLATFORM_HOME=str(settings.home))
    creator = subprocess.Popen(
        [sys.executable, "-c", CREATES_NEVER_STARTS, *SELECT],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    not_started = dg.RunsFilter(statuses=[dg.DagsterRunStatus.NOT_STARTED])
    try:
        assert wait_until(lambda: instance.get_runs(filters=not_started), timeout=120)
        [run] = instance.get_runs(filters=not_started)
        # Its planned materializations are stored just after the run.
        assert wait_until(
            lambda: in_progress_and_failed(instance, events) == ([day], []), timeout=30
        )
        assert release_dead_runs(instance) == []
    finally:
        creator.kill()
        creator.wait()
    assert release_dead_runs(instance) == [
        f"Run {run.run_id} marked failed: run process {creator.pid} is gone, "
        "and the run never started."
    ]
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    assert in_progress_and_failed(instance, events) == ([], [day])
    assert release_dead_runs(instance) == []


def unstarted_run(instance: dg.DagsterInstance, creator_pid: int) -> str:
    """A NOT_STARTED run of this host that process `creator_pid` created to execute itself."""
    tags = {WORKER_HOST_TAG: this_host(), CREATOR_PID_TAG: str(creator_pid)}
    run = instance.add_run(dg.DagsterRun(job_name="holder", run_id=str(uuid.uuid4()), tags=tags))
    return run.run_id


def test_under_dagster_dev_the_sensor_fails_a_run_whose_creator_died_before_starting_it(
    instance,
):
    """Dagster's monitoring daemon looks at started runs only: under `dagster dev` a run left
    NOT_STARTED by a killed `materialize` stayed so until the next `materialize`. The
    `never_started_runs` sensor, running from the start, fails it; a run whose creator lives
    is left alone."""
    from data_platform.definitions import defs

    sensor = defs.get_sensor_def("never_started_runs")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    gone, alive = unstarted_run(instance, dead_pid()), unstarted_run(instance, os.getpid())
    result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert instance.get_run_by_id(gone).status == dg.DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(alive).status == dg.DagsterRunStatus.NOT_STARTED
    assert f"Run {gone} marked failed" in result.skip_message
    assert "the run never started" in result.skip_message
    again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert gone not in again.skip_message  # ended once


def launched_run(instance: dg.DagsterInstance, server: dict, seconds_ago: float) -> str:
    """A run the daemon launched `seconds_ago` on the code server `server` (a GRPC_INFO_TAG),
    STARTING: no process announced yet."""
    run = history.add_run(instance, "holder", dg.DagsterRunStatus.NOT_STARTED)
    instance.add_run_tags(run.run_id, {GRPC_INFO_TAG: json.dumps(server)})
    history.emit(instance, run, DagsterEventType.RUN_STARTING, time.time() - seconds_ago)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTING
    return run.run_id


def test_the_sensor_fails_a_starting_run_whose_code_server_is_gone(instance, tmp_path):
    """`dagster dev` killed right after the daemon launched a run left it STARTING with no
    process, until the monitor's start timeout failed it 197 s later, the queue holding the
    `duckdb` pool's runs meanwhile (the `make run` audit). The sensor fails it once the code
    server asked to start it does not answer, 30 s after the launch at the soonest; a run on a
    live server is left alone until its server dies."""
    from data_platform.definitions import defs

    sensor = defs.get_sensor_def("never_started_runs")
    (tmp_path / "code.py").write_text("import dagster as dg\ndefs = dg.Definitions()\n")
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster")), "api", "grpc", "--python-file",
         str(tmp_path / "code.py"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        live_server = {"host": "127.0.0.1", "port": port}
        client = DagsterGrpcClient(port=port, host="127.0.0.1")
        assert wait_until(lambda: _answers(client), timeout=60)
        gone_server = {"host": "127.0.0.1", "port": free_port()}
        live = launched_run(instance, live_server, seconds_ago=60)
        gone = launched_run(instance, gone_server, seconds_ago=60)
        young = launched_run(instance, gone_server, seconds_ago=5)
        result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
        status = {run: instance.get_run_by_id(run).status.value for run in (live, gone, young)}
        assert status == {live: "STARTING", gone: "FAILURE", young: "STARTING"}
        assert f"Run {gone} marked failed: the code server asked to start it (127.0.0.1:" in (
            result.skip_message
        )
    finally:
        server.kill()
        server.wait()
    sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert instance.get_run_by_id(live).status == dg.DagsterRunStatus.FAILURE


def _answers(client: DagsterGrpcClient) -> bool:
    try:
        client.ping("")
    except DagsterUserCodeUnreachableError:
        return False
    return True


def test_a_waiting_run_sleeps_names_its_blocker_and_stops_on_sigterm(settings, instance):
    holder = fake_run(instance, os.getpid())
    environ = {
        **environ_without_settings(),
        "DATA_PLATFORM_HOME": str(settings.home),
        "DAGSTER_HOME": str(settings.home / "dagster_home"),
    }
    cli = str(Path(sys.executable).with_name("data-platform"))  # this venv, activated or not
    process = subprocess.Popen(
        [cli, *SELECT],
        cwd=REPO,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Its progress, read as it comes: the wait ends at the report naming the blocker, not at a
    # sleep that must outlast WAIT_REPORT_SECONDS however slowly the machine runs.
    report = f"waiting for pool duckdb: its 1 slot is held by run {holder[:8]} (step raw__events)"
    lines: list[str] = []
    reported = threading.Event()

    def read_progress() -> None:
        for line in process.stderr:
            lines.append(line)
            if report in line:
                reported.set()

    reader = threading.Thread(target=read_progress, daemon=True)
    try:
        reader.start()
        deadline = time.monotonic() + 120
        while not instance.event_log_storage.get_concurrency_info("duckdb").pending_steps[1:]:
            assert time.monotonic() < deadline and process.poll() is None, "".join(lines)[-2000:]
            time.sleep(0.2)
        cpu = psutil.Process(process.pid)
        before, waiting_since = cpu.cpu_times(), time.monotonic()
        assert reported.wait(120), "".join(lines)[-2000:]
        # Measured over at least one report interval of waiting: a poll loop would show.
        time.sleep(max(0.0, WAIT_REPORT_SECONDS - (time.monotonic() - waiting_since)))
        after, waited = cpu.cpu_times(), time.monotonic() - waiting_since
        busy = (after.user + after.system) - (before.user + before.system)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        reader.join(timeout=30)
    finally:
        # An assert that failed before the SIGTERM must not leave it waiting for a slot forever.
        if process.poll() is None:
            process.kill()
        process.wait()
    stderr = "".join(lines)

    assert busy < 0.1 * waited, f"waiting used {busy:.1f}s of CPU in {waited:.0f}s"
    assert process.returncode == 130
    assert report in stderr
    assert "interrupted: stopped and marked failed" in stderr
    waiting = instance.get_runs(filters=dg.RunsFilter(job_name="__ASSET_JOB"))
    assert [r.status for r in waiting] == [dg.DagsterRunStatus.FAILURE]
    blocked = [
        r.event_log_entry.message
        for r in instance.get_records_for_run(
            waiting[0].run_id, of_type=dg.DagsterEventType.ENGINE_EVENT
        ).records
        if "blocked" in r.event_log_entry.message
    ]
    assert blocked and f"held by run {holder[:8]}" in blocked[0]
    # Its claim was withdrawn: only the holder is left in the pool.
    info = instance.event_log_storage.get_concurrency_info("duckdb")
    assert {p.run_id for p in info.pending_steps} == {holder}


def test_timeout_stops_a_waiting_run_with_exit_status_3(settings, instance):
    fake_run(instance, os.getpid())
    result = run_cli(settings.home, *SELECT, "--timeout", "5")
    assert result.returncode == 3, result.stderr[-2000:]
    assert "timed out after 5s: stopped and marked failed" in result.stderr


def test_a_run_on_a_code_server_elsewhere_is_never_called_dead_here(instance):
    """The launcher tagged every run with its own host, but the run's process starts on the
    code server's: with the code server in another container, a live run's pid was looked up
    here, not found, and the run failed and its slot freed while it still wrote."""
    from dagster._core.remote_origin import (
        GrpcServerCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )

    from data_platform.orchestration.run_health import WORKER_HOST_TAG, check_worker, this_host
    from data_platform.orchestration.run_launcher import worker_host

    def run_served_by(host: str) -> dg.DagsterRun:
        location = GrpcServerCodeLocationOrigin(host=host, port=4000, location_name="platform")
        origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), "job")
        return dg.DagsterRun(job_name="job", run_id=str(uuid.uuid4()), remote_job_origin=origin)

    assert worker_host(run_served_by("code-server")) == "code-server"
    # A server at localhost may be a container of its own pids: not this host either.
    assert worker_host(run_served_by("127.0.0.1")) == "127.0.0.1"
    assert worker_host(dg.DagsterRun(job_name="j")) == this_host()
    # What the monitoring daemon then does with a dead-looking pid: nothing, it is not here.
    run_id = fake_run(instance, dead_pid(), hold_slot=False)
    instance.add_run_tags(run_id, {WORKER_HOST_TAG: "code-server"})
    health = check_worker(instance, instance.get_run_by_id(run_id))
    assert health.status.value == "RUNNING" and "no heartbeat" in health.msg


def test_a_run_tagged_with_the_bare_machine_name_is_still_judged_by_its_pid(instance):
    """Runs started before hosts named their pid namespace carry the machine's name alone: one
    whose process died across the upgrade is failed, not left to beats it never stores."""
    import socket

    from data_platform.orchestration.run_health import WORKER_HOST_TAG, check_worker

    run_id = fake_run(instance, dead_pid(), hold_slot=False)
    instance.add_run_tags(run_id, {WORKER_HOST_TAG: socket.gethostname()})
    health = check_worker(instance, instance.get_run_by_id(run_id))
    assert health.status.value == "FAILED" and "is gone" in health.msg, health.msg


def test_a_later_run_of_the_same_pid_leaves_a_dead_runs_beat(instance):
    """Beats were kept per host and pid. A container restarted under its name numbers its
    processes from the same pids: a short later run of the dead run's pid deleted the dead
    run's last beat when it ended, and the dead run, "never beat", kept its slot for good."""
    from data_platform.orchestration.heartbeat import STALE_BEATS, beat, forget_beat
    from data_platform.orchestration.run_health import WORKER_HOST_TAG, check_worker

    dead, later = (fake_run(instance, 2, hold_slot=False) for _ in range(2))
    for run_id in (dead, later):
        instance.add_run_tags(run_id, {WORKER_HOST_TAG: "code-server"})
    beat(instance, dead, 0.01)
    time.sleep(STALE_BEATS * 0.01 + 0.1)
    beat(instance, later, 10)
    forget_beat(instance, later)  # the later run's plan ended
    health = check_worker(instance, instance.get_run_by_id(dead))
    assert health.status.value == "FAILED" and "no heartbeat for" in health.msg, health.msg
    assert release_dead_runs(instance) and instance.get_run_by_id(dead).status.value == "FAILURE"


def test_only_a_process_seen_alive_or_beating_is_proven_alive(instance):
    """A forced restore waits for the runs proven alive only: with the platform stopped, nothing
    would ever end the others. It told them by the end of one message ("no heartbeat"), which
    a rewording in run_health would have broken without a word."""
    from data_platform.orchestration.heartbeat import beat
    from data_platform.orchestration.run_health import WORKER_HOST_TAG, check_worker, proven_alive

    here = fake_run(instance, os.getpid(), hold_slot=False)
    beating, never_beat = (fake_run(instance, os.getpid(), hold_slot=False) for _ in range(2))
    for run_id in (beating, never_beat):
        instance.add_run_tags(run_id, {WORKER_HOST_TAG: f"host-of-{run_id}"})
    beat(instance, beating, 10)
    unannounced = instance.add_run(
        dg.DagsterRun(job_name="j", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED)
    ).run_id
    gone = fake_run(instance, dead_pid(), hold_slot=False)
    runs = [here, beating, never_beat, unannounced, gone]
    health = [check_worker(instance, instance.get_run_by_id(run_id)) for run_id in runs]
    assert [h.status.value for h in health] == ["RUNNING"] * 4 + ["FAILED"]
    assert [proven_alive(h) for h in health] == [True, True, False, False, False]


# A run executed in this process (as `data-platform materialize` runs one) whose one step holds
# the duckdb slot and sleeps; it beats every 0.3 s.
SLEEPING_RUN = """
import time, dagster as dg
from data_platform.orchestration import heartbeat
from data_platform.orchestration.run_health import WORKER_HOST_TAG

heartbeat.install(0.3)

@dg.op(pool="duckdb")
def write_for_long():
    print("writing", flush=True)
    time.sleep(600)

@dg.job
def long_writer():
    write_for_long()

# Tagged as the launcher tags a run of a code server it reaches by a name of its own.
with dg.DagsterInstance.get() as instance:
    long_writer.execute_in_process(instance=instance, tags={WORKER_HOST_TAG: "code-server"})
"""


@contextmanager
def sleeping_run(
    instance: dg.DagsterInstance, wrapper: tuple[str, ...] = ()
) -> Iterator[tuple[subprocess.Popen, dg.DagsterRun]]:
    """SLEEPING_RUN in a process of its own (started by `wrapper`, if any), its process and run
    once its step holds the slot; killed on leaving."""
    env = {**os.environ, "DAGSTER_HOME": str(instance.root_directory)}
    process = subprocess.Popen(
        [*wrapper, sys.executable, "-c", SLEEPING_RUN], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline() == "writing\n"
        [run] = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        yield process, run
    finally:
        process.kill()
        process.wait()


def test_a_run_on_another_machine_that_stops_beating_is_failed_and_its_slot_freed(
    instance, monkeypatch
):
    """A run whose process is on another host was never checked (its pid means nothing here):
    that host lost, the run stayed STARTED with its duckdb slot for good. Its process beats;
    alive, it is left alone however long it runs; killed, it is failed once silent for
    STALE_BEATS beats, and its slot freed. Here the monitor is "another host" to the run.

    The real process shows that its beats advance; the judging is done on a clock pinned
    relative to the stored beats (`time.time` as run_health reads it), so a loaded machine's
    scheduling moves no verdict."""
    from data_platform.orchestration import run_health
    from data_platform.orchestration.heartbeat import STALE_BEATS, last_beat

    now = [0.0]
    monkeypatch.setattr(run_health, "time", SimpleNamespace(time=lambda: now[0]))
    with sleeping_run(instance) as (process, run):
        monkeypatch.setattr(run_health, "this_host", lambda: "the-monitor")

        def beat_of_run() -> tuple[float, float] | None:
            return last_beat(instance, run.run_id)

        assert wait_until(beat_of_run, 60), "the run never beat"
        first, every = beat_of_run()
        assert every == 0.3
        limit = STALE_BEATS * every
        # It goes on beating past a silence that would kill it: judged at a time later than
        # its first beat by more than that silence, it is alive, for its latest beat is recent.
        assert wait_until(lambda: beat_of_run()[0] > first + limit, 60), "its beats stopped"
        now[0] = beat_of_run()[0] + 0.2
        assert now[0] - first > limit
        health = run_health.check_worker(instance, run)
        assert health.status.value == "RUNNING" and " beat " in health.msg, health.msg
        assert release_dead_runs(instance) == []
    # Killed: its last beat stays. Silent up to STALE_BEATS beats it is alive, past them dead.
    at, _ = beat_of_run()
    for silent, alive in ((0.2, True), (limit - 0.05, True), (limit + 0.05, False)):
        now[0] = at + silent
        health = run_health.check_worker(instance, run)
        assert (health.status.value == "RUNNING") == alive, (silent, health.msg)
    now[0] = at + 0.2
    assert run_health.check_worker(instance, run).msg.endswith(" beat 0 s ago")
    now[0] = at + limit + 0.05
    health = run_health.check_worker(instance, run)
    assert f"run process {process.pid} on " in health.msg and "no heartbeat for 3 s" in health.msg
    done = release_dead_runs(instance)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    assert not instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots
    assert len(done) == 2 and run.run_id in done[0] and run.run_id in done[1]


def test_a_run_in_another_pid_namespace_is_judged_by_its_beats(instance):
    """A run process in a container of the judge's host name (`network_mode: host`): its pid
    was looked up in the judge's own pid namespace, where it is another process or none, so a
    live run was failed (its slot freed while it wrote) or a dead one kept its slot. The run's
    host says its pid namespace: it is judged by its beats, alive while it beats, then dead."""
    from data_platform.orchestration import run_health
    from data_platform.orchestration.heartbeat import STALE_BEATS

    # Python is the namespace's init (pid 1), killed with unshare (--kill-child).
    container = ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child")
    if subprocess.run([*container, "true"], capture_output=True).returncode != 0:
        pytest.skip("no new pid namespace here (unshare needs CAP_SYS_ADMIN)")
    with sleeping_run(instance, container) as (_, run):
        announced, _ = run_health.worker_pid(instance, run.run_id)
        assert run.tags[run_health.WORKER_HOST_TAG] != run_health.this_host()
        assert announced == 1  # here, pid 1 is this machine's init: alive for good
        health = run_health.check_worker(instance, run)
        assert health.status.value == "RUNNING" and " beat " in health.msg, health.msg
        assert release_dead_runs(instance) == []
    assert wait_until(
        lambda: run_health.check_worker(instance, run).status.value == "FAILED",
        STALE_BEATS * 0.3 + 30,
    ), run_health.check_worker(instance, run).msg
    release_dead_runs(instance)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    assert not instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots


# A run whose step waits until the run's beat is stored, says so with the beat, and ends.
BEAT_THEN_END = """
import time, dagster as dg
from data_platform.orchestration import heartbeat

heartbeat.install(0.1)

@dg.op
def wait_for_a_beat(context):
    deadline = time.monotonic() + 60
    while heartbeat.last_beat(context.instance, context.run_id) is None:
        assert time.monotonic() < deadline, "no beat within 60 s"
        time.sleep(0.05)
    print("beat", context.run_id, flush=True)

@dg.job
def beating():
    wait_for_a_beat()

with dg.DagsterInstance.get() as instance:
    assert beating.execute_in_process(instance=instance).success
"""


def test_a_run_that_ends_deletes_its_beat(instance):
    """A beat's key is the run's: kept, the keys grew by one per run for good. The run's beat
    is deleted when its plan ends (seen stored during its step)."""
    from data_platform.orchestration.heartbeat import heartbeat_key

    env = {**os.environ, "DAGSTER_HOME": str(instance.root_directory)}
    done = subprocess.run(
        [sys.executable, "-c", BEAT_THEN_END], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    [run] = instance.get_runs()
    assert done.stdout.splitlines() == [f"beat {run.run_id}"]
    assert not instance.run_storage.get_cursor_values({heartbeat_key(run.run_id)})


# A run of "another machine" whose process is killed right after its plan ends (its beat
# deleted), before it reports the run's status.
KILLED_AFTER_ITS_PLAN = """
import os, signal, dagster as dg
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from data_platform.orchestration import heartbeat, run_health

run_health.this_host = lambda: "another-machine (pid namespace 1)"
heartbeat.install(0.1)
leave = InstanceConcurrencyContext.__exit__

def leave_then_die(self, *exc):
    leave(self, *exc)
    os.kill(os.getpid(), signal.SIGKILL)

InstanceConcurrencyContext.__exit__ = leave_then_die

@dg.op
def done():
    pass

@dg.job
def killed_after_its_plan():
    done()

with dg.DagsterInstance.get() as instance:
    killed_after_its_plan.execute_in_process(instance=instance)
"""


def test_a_run_of_another_host_killed_after_its_plan_is_failed_once_silent(instance, monkeypatch):
    """Its beat deleted as its plan ended, a run killed before reporting its status read "no
    heartbeat" (not started yet) for good: STARTED, its assets in progress to the automation.
    Silent, neither beating nor writing events, for SILENT_RUN_SECONDS, it is failed."""
    from data_platform.orchestration import run_health

    env = {**os.environ, "DAGSTER_HOME": str(instance.root_directory)}
    done = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_ITS_PLAN], env=env, capture_output=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    [run] = instance.get_runs()
    assert run.status == dg.DagsterRunStatus.STARTED
    assert run.tags[run_health.WORKER_HOST_TAG] == "another-machine (pid namespace 1)"
    [latest] = instance.get_records_for_run(run.run_id, ascending=False, limit=1).records
    now = [latest.event_log_entry.timestamp + 1]
    monkeypatch.setattr(run_health, "time", SimpleNamespace(time=lambda: now[0]))
    health = run_health.check_worker(instance, run)
    assert health.status.value == "RUNNING" and "no heartbeat" in health.msg, health.msg
    assert release_dead_runs(instance) == []
    now[0] += run_health.SILENT_RUN_SECONDS
    health = run_health.check_worker(instance, run)
    assert health.status.value == "FAILED" and "no event for 601 s" in health.msg, health.msg
    assert release_dead_runs(instance)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE


# A plan whose concurrency context fails to enter (Dagster's own __enter__ raising), then a
# wait longer than a few beats: what the process stored under its key after the failure.
ENTER_FAILS = """
import time, uuid, dagster as dg
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from data_platform.orchestration import heartbeat

def refused(self):
    raise RuntimeError("enter refused")

InstanceConcurrencyContext.__enter__ = refused
heartbeat.install(0.05)
with dg.DagsterInstance.get() as instance:
    run = instance.add_run(dg.DagsterRun(job_name="j", run_id=str(uuid.uuid4())))
    try:
        with InstanceConcurrencyContext(instance, run):
            pass
    except RuntimeError:
        pass
    time.sleep(0.5)
    print(heartbeat.last_beat(instance, run.run_id), flush=True)
"""


def test_a_plan_that_fails_to_start_never_beats(instance):
    """The beat began before Dagster's own enter, and an enter that raised never reached
    __exit__: the thread beat for the process's life, under a key never deleted."""
    env = {**os.environ, "DAGSTER_HOME": str(instance.root_directory)}
    done = subprocess.run(
        [sys.executable, "-c", ENTER_FAILS], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["None"]


@pytest.mark.parametrize("storage", ["sqlite", "postgres"])
def test_forgetting_a_beat_leaves_another_runs(storage, tmp_path, request):
    """Dagster's key-value store has no delete: `forget_beat` deletes through the run storage's
    own table, on either storage, the one run's beat only."""
    from data_platform.orchestration.heartbeat import beat, forget_beat, last_beat

    home = tmp_path / "dagster_home"
    home.mkdir()
    if storage == "postgres":
        write_postgres_instance(home, request.getfixturevalue("postgres_url"))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        beat(instance, "this-run", 10)
        beat(instance, "other-run", 5)
        forget_beat(instance, "this-run")
        assert last_beat(instance, "this-run") is None
        assert last_beat(instance, "other-run")[1] == 5
        forget_beat(instance, "other-run")
        assert last_beat(instance, "other-run") is None


# A run executed as `data-platform materialize` executes one with DATA_PLATFORM_EXECUTOR=celery
# (`execute_job`, no code server): its step is a Celery task on a broker no worker reads, so it
# holds the duckdb slot until the run process dies.
CELERY_RUN = """
import dagster as dg
from dagster_celery import celery_executor
from data_platform.orchestration import heartbeat

heartbeat.install(10)

@dg.op(pool="duckdb")
def write():
    pass

@dg.job(executor_def=celery_executor.configured({"broker": "memory://", "backend": "cache+memory://"}))
def celery_writer():
    write()

if __name__ == "__main__":
    with dg.DagsterInstance.get() as instance:
        dg.execute_job(dg.reconstructable(celery_writer), instance)
"""


def test_a_killed_headless_celery_run_is_failed_and_its_slot_freed(instance, tmp_path):
    """dagster-celery's executor announces no pid, and nothing else did for a run executed by
    `execute_job`: SIGKILLed while its step held the slot, the run stayed STARTED ("no run
    process announced yet") and the slot claimed for good."""
    script, log = tmp_path / "celery_run.py", tmp_path / "celery_run.log"
    script.write_text(CELERY_RUN)
    env = {**os.environ, "DAGSTER_HOME": str(instance.root_directory)}

    def claimed() -> list:
        return instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots

    with log.open("w") as stderr:
        process = subprocess.Popen([sys.executable, str(script)], cwd=REPO, env=env, stderr=stderr)
    try:
        assert wait_until(lambda: claimed() or process.poll() is not None, 120)
        assert claimed(), log.read_text()[-2000:]
    finally:
        process.kill()
        process.wait()
    [run] = instance.get_runs()
    done = release_dead_runs(instance)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    assert f"run process {process.pid} is gone" in done[0]
    assert not claimed()


def test_a_run_that_succeeds_while_it_is_judged_stays_a_success(instance, monkeypatch):
    """release_dead_runs judged the runs it had listed: one whose process reported success and
    exited in between was flipped SUCCESS -> FAILURE (an alert, maybe a retry). The interleaving
    is made certain: the process succeeds and dies while the judge looks at it."""
    from dagster._core.events import DagsterEvent

    from data_platform.orchestration import run_health

    process = subprocess.Popen(["sleep", "60"])
    run_id = fake_run(instance, process.pid, hold_slot=False)
    judge = run_health.check_worker

    def succeeding_meanwhile(instance: dg.DagsterInstance, run: dg.DagsterRun):
        success = DagsterEvent(dg.DagsterEventType.RUN_SUCCESS.value, job_name=run.job_name)
        instance.report_dagster_event(success, run_id=run.run_id)
        process.kill()
        process.wait()
        return judge(instance, run)

    monkeypatch.setattr(run_health, "check_worker", succeeding_meanwhile)
    assert release_dead_runs(instance) == []
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS


def test_a_run_process_killed_but_not_reaped_is_gone(instance):
    """A zombie keeps its pid and start time: a run process killed while its parent did not reap
    it (a hung code server) was called alive, and its run kept the slot for as long."""
    process = subprocess.Popen(["sleep", "60"])
    try:
        run_id = fake_run(instance, process.pid)
        process.kill()  # and not reaped: this test is its parent, and waits only at the end
        assert wait_until(lambda: psutil.Process(process.pid).status() == psutil.STATUS_ZOMBIE, 30)
        done = release_dead_runs(instance)
    finally:
        process.wait()
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    assert f"run process {process.pid} is gone (exited, never reaped)" in done[0]
    assert not instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots


def test_a_failed_wait_report_is_one_line_and_the_reports_go_on(instance, capsys):
    """An error in the thread reporting what a headless run waits for (the database busy)
    printed a thread traceback and ended the reports for the rest of the run."""
    from sqlalchemy.exc import OperationalError

    holder = fake_run(instance, os.getpid())
    tag = ("data_platform/invocation", str(uuid.uuid4()))
    waiter = instance.add_run(
        dg.DagsterRun(job_name="w", run_id=str(uuid.uuid4()), tags=dict([tag]))
    )
    assert not instance.event_log_storage.claim_concurrency_slot(
        "duckdb", waiter.run_id, "raw__events"
    ).is_claimed
    stop = threading.Event()
    reads = []

    class BusyOnce:
        """The instance, whose first read of the runs fails; the reports stop after the second."""

        def __getattr__(self, name: str):
            return getattr(instance, name)

        def get_runs(self, **kwargs):
            reads.append(kwargs)
            if len(reads) == 1:
                raise OperationalError("SELECT", {}, Exception("database is locked"))
            stop.set()
            return instance.get_runs(**kwargs)

    report_waits(BusyOnce(), tag, stop, every=0.01)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith(
        "could not read what the run waits for: OperationalError: "
        "(builtins.Exception) database is locked"
    )
    assert lines[1].endswith(
        f"raw__events waiting for pool duckdb: its 1 slot is held by run {holder[:8]} "
        "(step raw__events)"
    )


def test_a_home_set_up_by_the_cli_alone_gets_the_warehouse_pool(tmp_path):
    """A DAGSTER_HOME without dagster.yaml (the CLI used before any `make run`) had Dagster's
    defaults: no `duckdb` pool limit, so two `materialize` at once ran warehouse steps side by
    side, saved only by DuckDB's 120 s lock wait. The commands now write the repo's config there,
    owner-only as all they make; one already there (`make services-up`'s) is kept."""
    from data_platform.orchestration.instance import platform_instance
    from data_platform.services.instance import REPO_INSTANCE_YAML
    from data_platform.settings import load_settings

    fresh = load_settings({"DATA_PLATFORM_HOME": str(tmp_path / "fresh")})
    previous = os.umask(0o022)  # the login's default: the file is owner-only whatever it is
    try:
        with platform_instance(fresh) as instance:
            assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    finally:
        os.umask(previous)
    written = fresh.dagster_home / "dagster.yaml"
    assert written.read_text() == REPO_INSTANCE_YAML.read_text()
    assert written.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in fresh.dagster_home.iterdir() if p.name.startswith(".")] == []

    kept = load_settings({"DATA_PLATFORM_HOME": str(tmp_path / "kept")})
    kept.dagster_home.mkdir(parents=True)
    (kept.dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with platform_instance(kept) as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit is None
    assert (kept.dagster_home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
