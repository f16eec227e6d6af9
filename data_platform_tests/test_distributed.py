"""Distributed mode end to end: the instance on PostgreSQL, steps on two Celery workers over Redis.

The same simulated world is built embedded (`data-platform materialize`: SQLite instance, steps
in the run's process) and distributed, and every mart must come out the same, table by table.
Both builds go through `data-platform materialize`, which hands the steps to the Celery
workers when DATA_PLATFORM_EXECUTOR=celery. Then two overlapping backfills of the raw layer
write the warehouse at once: the `duckdb` pool must serialise them across runs and workers,
with nothing lost or loaded twice.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from unittest import mock

import dagster as dg
import duckdb
import psutil
import pytest

from data_platform_tests.conftest import embedded_twin
from data_platform_tests.healing_world import (
    DAY,
    started_step,
    stop_mid_step,
    wait_for,
    write_day,
)
from data_platform_tests.helpers import count_records, next_version_of_the_code
from data_platform_tests.landed_records import read_landed

REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("data-platform"))
FIRST, LAST = date(2026, 1, 1), date(2026, 1, 2)
SIMULATION = ["--seed", "11", "--days", "2", "--end-date", str(LAST), "--users", "30"]
SIMULATION += ["--products", "15", "--events-per-day", "200"]
RUN_TIMEOUT = 900


def run(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen) -> tuple[str, str]:
    out, err = process.communicate(timeout=RUN_TIMEOUT)
    assert process.returncode == 0, (
        f"{process.args[:3]} exited {process.returncode}:\n{err[-3000:]}"
    )
    assert "Could not set lock" not in out + err
    assert "DuplicateTaskNameWarning" not in err
    return out, err


def materialize(env: dict[str, str], first: date, last: date) -> subprocess.Popen:
    return run([CLI, "materialize", "--start", str(first), "--end", str(last)], env)


def run_id_of(stderr: str) -> str:
    """The run id `data-platform materialize` reports at its end ("run <id> in 12.3s")."""
    return re.findall(r"^run (\S+) in ", stderr, re.MULTILINE)[-1]


@contextmanager
def stack_instance(env: dict[str, str]) -> Iterator[dg.DagsterInstance]:
    """The stack's Dagster instance, read in this process: its PostgreSQL settings are in the
    environment only while it is open (left there, a torn-down stack's password stayed in the
    pytest worker for every later test)."""
    pg = {k: v for k, v in env.items() if k.startswith("DAGSTER_PG")}
    with (
        mock.patch.dict(os.environ, pg),
        dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance,
    ):
        yield instance


def step_windows_and_workers(env: dict[str, str], run_id: str) -> tuple[list, set[str]]:
    """The (start, end) of each of the run's `duckdb`-pool steps, from its event log on
    PostgreSQL, and the Celery workers that executed its steps."""
    from data_platform.definitions import defs

    graph = defs.resolve_job_def("__ASSET_JOB").graph
    starts, ends, workers = {}, {}, set()
    with stack_instance(env) as instance:
        for record in instance.all_logs(run_id):
            event, step = record.dagster_event, record.step_key
            if event is None or step is None:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                starts[step] = record.timestamp
            elif event.event_type in (
                dg.DagsterEventType.STEP_SUCCESS,
                dg.DagsterEventType.STEP_FAILURE,
            ):
                ends[step] = record.timestamp
            elif event.event_type == dg.DagsterEventType.ENGINE_EVENT:
                worker = event.engine_event_data.metadata.get("Celery worker")
                if worker is not None:
                    workers.add(worker.value)
    pooled = [s for s in starts if graph.node_named(s.split("[")[0]).definition.pool == "duckdb"]
    return sorted((starts[s], ends[s]) for s in pooled), workers


def table_names(warehouse: Path, schema: str) -> list[str]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? ORDER BY 1",
            [schema],
        ).fetchall()
    return [name for (name,) in rows]


# When a row was loaded says when the build ran, not what the sources said: left out.
LOAD_TIME_COLUMNS = {"loaded_at", "_loaded_at", "extracted_at", "_extracted_at"}


def differences(left: Path, right: Path, schema: str, table: str) -> tuple[int, int, int]:
    """Rows of the table in each warehouse, and rows in one and not the other (as multisets)."""
    with duckdb.connect() as conn:
        conn.execute(f"ATTACH '{left}' AS l (READ_ONLY)")
        conn.execute(f"ATTACH '{right}' AS r (READ_ONLY)")
        columns = [
            f'"{name}"'
            for (name,) in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_catalog = 'l' "
                "AND table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                [schema, table],
            ).fetchall()
            if name not in LOAD_TIME_COLUMNS
        ]
        select = ", ".join(columns)
        l_rows, r_rows = (
            f"SELECT {select} FROM l.{schema}.{table}",
            f"SELECT {select} FROM r.{schema}.{table}",
        )
        (count_l,) = conn.execute(f"SELECT count(*) FROM ({l_rows})").fetchone()
        (count_r,) = conn.execute(f"SELECT count(*) FROM ({r_rows})").fetchone()
        (diff,) = conn.execute(
            f"SELECT count(*) FROM (({l_rows} EXCEPT ALL {r_rows}) "
            f"UNION ALL ({r_rows} EXCEPT ALL {l_rows}))"
        ).fetchone()
    return count_l, count_r, diff


def assert_same_marts(embedded: Path, distributed: Path) -> None:
    marts = table_names(embedded, "marts")
    assert "daily_revenue" in marts and "dim_customers" in marts
    assert table_names(distributed, "marts") == marts
    for table in marts:
        count_e, count_d, diff = differences(embedded, distributed, "marts", table)
        assert (count_d, diff) == (count_e, 0), f"marts.{table}: {count_e} vs {count_d} rows"
        assert count_e > 0, f"marts.{table} is empty: the comparison proves nothing"


def assert_conserved(env: dict[str, str], warehouse: Path) -> None:
    """Records in the landing files (read by plain Python) = raw rows + dead letters, per dt."""
    landing = Path(env["DATA_PLATFORM_HOME"]) / "landing"
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        for source in ("events", "payments"):
            expected = read_landed(landing, source).records
            stored = dict(
                conn.execute(
                    f"SELECT dt, sum(n) FROM (SELECT dt, count(*) n FROM raw.{source} GROUP BY dt "
                    "UNION ALL SELECT dt, count(*) FROM raw.dead_letter WHERE source = ? "
                    "GROUP BY dt) GROUP BY dt",
                    [source],
                ).fetchall()
            )
            assert {dt: int(n) for dt, n in stored.items()} == dict(expected), source


@dataclass(frozen=True)
class World:
    """The simulated sources' two warehouses: the distributed one, and the one `data-platform
    materialize` builds embedded from the same sources, in the background."""

    distributed: Path
    embedded_home: Path
    embedded_build: Future[tuple[str, str]]

    @property
    def embedded(self) -> Path:
        """The embedded warehouse, once its build has succeeded (waited for here)."""
        self.embedded_build.result()
        return self.embedded_home / "warehouse.duckdb"


@pytest.fixture(scope="module")
def world(distributed_stack, tmp_path_factory) -> Iterator[World]:
    """The simulated sources, and their embedded build, started but not waited for: it reads
    only the sources and writes a home of its own, so it runs beside the tests instead of
    before them, above all beside the distributed build, whose steps, one Celery round trip
    each and the warehouse's one at a time, leave the machine's cores idle in between (about
    100 s of the file's 360 s of builds). A thread reads the build's output, or the build would
    stall on a full pipe."""
    home = Path(distributed_stack["DATA_PLATFORM_HOME"])
    simulated = subprocess.run(
        [CLI, "simulate", "--quiet", *SIMULATION], env=distributed_stack, capture_output=True
    )
    assert simulated.returncode == 0, simulated.stderr
    embedded_home = tmp_path_factory.mktemp("embedded_home")
    build = materialize(embedded_twin(distributed_stack, embedded_home), FIRST, LAST)
    with ThreadPoolExecutor(max_workers=1) as reader:
        yield World(home / "warehouse.duckdb", embedded_home, reader.submit(finish, build))


def test_the_world_built_on_celery_workers_equals_the_embedded_build(distributed_stack, world):
    assert distributed_stack["DATA_PLATFORM_EXECUTOR"] == "celery"
    _, stderr = finish(materialize(distributed_stack, FIRST, LAST))
    windows, workers = step_windows_and_workers(distributed_stack, run_id_of(stderr))
    # Both workers took steps.
    assert len(workers) == 2 and all(w.startswith("data-platform-") for w in workers)
    # The `duckdb` pool (limit 1) held across the workers: no two warehouse steps overlapped.
    assert len(windows) > 10
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(windows))
    assert_same_marts(world.embedded, world.distributed)
    assert_conserved(distributed_stack, world.distributed)


def test_two_overlapping_backfills_at_once_lose_nothing(distributed_stack, world):
    """Both on the Celery workers and the PostgreSQL instance: each replaces exactly its days.
    The landing files' assets only: they are what replaces days (the database tables append
    versions, and cost a step each, serialised, with nothing here to assert on them)."""
    select = ["--select", "key:raw/events or key:raw/payments"]
    runs = [
        run([CLI, "materialize", "--start", str(FIRST), "--end", str(LAST), *select], env)
        for env in (distributed_stack, distributed_stack)
    ]
    windows = []
    for process in runs:
        _, stderr = finish(process)
        windows += step_windows_and_workers(distributed_stack, run_id_of(stderr))[0]
    # The `duckdb` pool held across the two runs too: no two warehouse steps overlapped.
    assert len(windows) >= 4
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(sorted(windows)))
    assert_conserved(distributed_stack, world.distributed)
    for table in ("events", "payments"):
        count_e, count_d, diff = differences(world.embedded, world.distributed, "raw", table)
        assert (count_d, diff) == (count_e, 0), f"raw.{table}: {count_e} vs {count_d} rows"


def assert_day_loaded_once(env: dict[str, str], files: list[Path]) -> None:
    """raw.events holds each record of the day's `files` once."""
    warehouse = Path(env["DATA_PLATFORM_HOME"]) / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        loaded, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM raw.events WHERE dt = ?", [DAY]
        ).fetchone()
    assert loaded == distinct == sum(count_records(f) for f in files)


def day_files(env: dict[str, str]) -> list[Path]:
    """The landed files of DAY, landed by the first test that needs them."""
    landing = Path(env["DATA_PLATFORM_HOME"]) / "landing"
    return sorted((landing / "events" / f"dt={DAY}").glob("*.jsonl")) or write_day(landing)


def materialize_day_stopped_mid_step(env: dict[str, str]) -> tuple[subprocess.Popen, str, int]:
    """`materialize` of raw/events for DAY, its step SIGSTOPped on its worker once started:
    the command's process, the run's id and the pid of the process executing the step."""
    process = run(
        [CLI, "materialize", "--start", DAY, "--end", DAY, "--select", "key:raw/events"], env
    )
    with stack_instance(env) as instance:
        started, pid = wait_for(
            "raw/events to start", lambda: started_step(instance, "raw__events", "step")
        )
        stop_mid_step(instance, started.run_id, "raw__events", pid)
    return process, started.run_id, pid


def ingestion_starts(env: dict[str, str], run_id: str) -> int:
    """How many times the run's raw/events step started."""
    with stack_instance(env) as instance:
        starts = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START)
    return [r.event_log_entry.step_key for r in starts.records].count("raw__events")


def test_a_worker_killed_mid_step_hands_the_step_to_another(distributed_stack):
    """kill -9 of the worker process executing raw/events: the step is run again, once."""
    files = day_files(distributed_stack)
    process, run_id, pid = materialize_day_stopped_mid_step(distributed_stack)
    os.kill(pid, signal.SIGKILL)
    finish(process)
    assert ingestion_starts(distributed_stack, run_id) == 2
    assert_day_loaded_once(distributed_stack, files)


def test_a_whole_worker_lost_mid_step_hands_the_step_on_when_its_lease_lapses(distributed_stack):
    """A step held past its lease by a live worker stays with it; SIGKILL of that worker's main
    process then takes its pool process down with it (kill -9 of the whole worker, as an OOM
    kill of its container would), and another worker runs the step once the lease lapses. Kombu's
    own timeout (an hour) kept the run waiting, its `duckdb` slot held, with the second worker
    idle."""
    from data_platform_tests.helpers import run_services

    lease = int(distributed_stack["DATA_PLATFORM_CELERY_LEASE_SECONDS"])
    files = day_files(distributed_stack)
    process, run_id, pid = materialize_day_stopped_mid_step(distributed_stack)
    try:
        time.sleep(2.5 * lease)
        assert ingestion_starts(distributed_stack, run_id) == 1
        os.kill(psutil.Process(pid).ppid(), signal.SIGKILL)
        wait_for("the pool process to die with its worker", lambda: not alive(pid), timeout=10)
        finish(process)
    finally:
        up = run_services(distributed_stack, "up")  # the lost worker back, for the next tests
        assert up.returncode == 0, up.stderr
    assert ingestion_starts(distributed_stack, run_id) == 2
    assert_day_loaded_once(distributed_stack, files)


def test_a_dead_runs_step_is_killed_on_its_worker_before_its_slot_is_freed(distributed_stack):
    """kill -9 of `materialize` while its raw/events step runs on a worker: the next
    `materialize` found the run's process gone and freed its `duckdb` slot at once, the step
    still executing (on Spark, two writers of one table). Now the step's process is killed
    first; and its message, sent again as one that outlived its run would be, is skipped."""
    from celery import Celery
    from dagster._core.execution.retries import RetryMode
    from dagster._grpc.types import ExecuteStepArgs
    from dagster._serdes import pack_value
    from dagster._utils.hosted_user_process import recon_job_from_origin
    from dagster_celery.config import TASK_EXECUTE_PLAN_NAME

    from data_platform.orchestration.run_health import release_dead_runs
    from data_platform.settings import CELERY_BROKER_VARIABLE

    files = day_files(distributed_stack)
    process, run_id, pid = materialize_day_stopped_mid_step(distributed_stack)
    process.kill()
    process.communicate()
    broker = distributed_stack[CELERY_BROKER_VARIABLE]
    with (
        stack_instance(distributed_stack) as instance,
        mock.patch.dict(os.environ, {CELERY_BROKER_VARIABLE: broker}),
    ):
        assert alive(pid)
        done = release_dead_runs(instance)
        assert not alive(pid), "the slot was freed with the step still on its worker"
        assert done == [
            f"Run {run_id} marked failed: run process {process.pid} is gone.",
            f"Freed the pool slots and claims of run {run_id} (FAILURE).",
        ]
        assert run_id not in instance.event_log_storage.get_concurrency_run_ids()
        dead = instance.get_run_by_id(run_id)
        args = ExecuteStepArgs(
            job_origin=dead.job_code_origin,
            run_id=run_id,
            step_keys_to_execute=["raw__events"],
            instance_ref=instance.get_ref(),
            retry_mode=RetryMode.DISABLED,
        )
        executable = recon_job_from_origin(dead.job_code_origin).to_dict()
    app = Celery(broker=broker, backend=broker, set_as_current=False)
    sent = app.send_task(
        TASK_EXECUTE_PLAN_NAME,
        kwargs={"execute_step_args_packed": pack_value(args), "executable_dict": executable},
        queue="dagster",
        routing_key="dagster.execute_plan",
    )
    assert sent.get(timeout=120) == []
    app.close()
    assert ingestion_starts(distributed_stack, run_id) == 1
    finish(
        run(
            [CLI, "materialize", "--start", DAY, "--end", DAY, "--select", "key:raw/events"],
            distributed_stack,
        )
    )
    assert_day_loaded_once(distributed_stack, files)


@contextmanager
def dead_run_on_a_silent_worker(env: dict[str, str]) -> Iterator[tuple[str, int, int]]:
    """`materialize` of raw/events killed -9 mid-step, the step's whole worker SIGSTOPped
    first (its main process, which answers `inspect` and renews the step's lease, then
    cannot): the run's id, the step's pid and the worker's. The worker is let go at the end."""
    process, run_id, pid = materialize_day_stopped_mid_step(env)
    worker = psutil.Process(pid).ppid()
    os.kill(worker, signal.SIGSTOP)
    try:
        process.kill()
        process.communicate()
        yield run_id, pid, worker
    finally:
        for stopped in (pid, worker):
            if alive(stopped):
                os.kill(stopped, signal.SIGCONT)


@contextmanager
def releasing(env: dict[str, str]) -> Iterator[dg.DagsterInstance]:
    """The stack's instance, with this process set to release dead runs as `materialize`
    would in `env`: its broker, and its workers' step lease."""
    from data_platform.settings import CELERY_BROKER_VARIABLE

    names = (CELERY_BROKER_VARIABLE, "DATA_PLATFORM_CELERY_LEASE_SECONDS")
    with stack_instance(env) as instance, mock.patch.dict(os.environ, {n: env[n] for n in names}):
        yield instance


def assert_held(instance: dg.DagsterInstance, run_id: str) -> None:
    """The run is unended and keeps its `duckdb` slot."""
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
    assert run_id in instance.event_log_storage.get_concurrency_run_ids()


def released(run_id: str, pid: int) -> list[str]:
    return [
        f"Run {run_id} marked failed: run process {pid} is gone.",
        f"Freed the pool slots and claims of run {run_id} (FAILURE).",
    ]


def test_a_dead_runs_step_on_a_worker_too_slow_to_answer_keeps_the_run_until_it_answers(
    distributed_stack,
):
    """A worker that answered `inspect` later than 1 s (stopped, a GC pause, a loaded host)
    counted as holding nothing: the dead run whose step still executed there was failed and
    its `duckdb` slot freed beside that step (the D4 audit's F7). Its lease, renewed until it
    fell silent, says it holds the step: the run waits for the next check, and once the worker
    answers again the step is killed and the run released."""
    from data_platform.orchestration.run_health import check_worker, release_dead_runs
    from data_platform.services.celery_workers import answering_workers
    from data_platform.settings import CELERY_BROKER_VARIABLE

    day_files(distributed_stack)
    with (
        dead_run_on_a_silent_worker(distributed_stack) as (run_id, pid, worker),
        releasing(distributed_stack) as instance,
    ):
        dead = instance.get_run_by_id(run_id)
        assert "held by a worker that did not answer" in check_worker(instance, dead).msg
        assert release_dead_runs(instance) == []
        assert_held(instance, run_id)
        assert alive(pid)

        os.kill(worker, signal.SIGCONT)
        wait_for(
            "the worker to answer again",
            lambda: (
                worker_name(worker) in answering_workers(distributed_stack[CELERY_BROKER_VARIABLE])
            ),
            timeout=30,
        )
        assert release_dead_runs(instance) == released(run_id, dead_pid(instance, run_id))
        assert not alive(pid), "the slot was freed with the step still on its worker"


def test_a_dead_runs_step_on_a_worker_killed_whole_holds_the_run_until_its_lease_lapses(
    distributed_stack,
):
    """The silent worker then killed -9 (its pool process dies with it): the run is held while
    the step's lease lives, released once it lapses, and the step, handed to the other worker
    by then, is not run again: it was asked to stop when first found held."""
    from data_platform.orchestration.run_health import release_dead_runs
    from data_platform_tests.helpers import run_services

    lease = int(distributed_stack["DATA_PLATFORM_CELERY_LEASE_SECONDS"])
    day_files(distributed_stack)
    try:
        with (
            dead_run_on_a_silent_worker(distributed_stack) as (run_id, pid, worker),
            releasing(distributed_stack) as instance,
        ):
            assert release_dead_runs(instance) == []
            os.kill(worker, signal.SIGKILL)
            killed = time.monotonic()
            wait_for("the pool process to die with its worker", lambda: not alive(pid), timeout=10)
            done = wait_for(
                "the run to be released", lambda: release_dead_runs(instance), timeout=3 * lease
            )
            # Renewed every lease/6 until stopped: it lapses 5/6 of a lease after the kill at the
            # soonest. Released sooner, the run was not held by it.
            assert time.monotonic() - killed > lease / 2
            assert done == released(run_id, dead_pid(instance, run_id))
    finally:
        up = run_services(distributed_stack, "up")  # the lost worker back, for the next tests
        assert up.returncode == 0, up.stderr
    assert ingestion_starts(distributed_stack, run_id) == 1


def worker_name(pid: int) -> str:
    """The Celery node name of the worker whose main process is `pid` (`--hostname`)."""
    import socket

    args = psutil.Process(pid).cmdline()
    return args[args.index("--hostname") + 1].replace("%h", socket.gethostname())


def dead_pid(instance: dg.DagsterInstance, run_id: str) -> int:
    """The pid the run's (killed) process announced."""
    from data_platform.orchestration.run_health import worker_pid

    announced = worker_pid(instance, run_id)
    assert announced is not None
    return announced[0]


def test_a_run_set_to_canceling_ends_and_frees_its_slot(distributed_stack):
    """A run set to CANCELING (its process not signalled) goes on handing out steps: the workers
    skipped them as their run was ending, no step reported, and a skipped step's `duckdb` slot
    stayed claimed: the run waited on its own slot for good (the D4 audit's F1)."""
    day_files(distributed_stack)
    process = run(
        [CLI, "materialize", "--start", DAY, "--end", DAY, "--select", "key:raw/events"],
        distributed_stack,
    )
    with stack_instance(distributed_stack) as instance:
        started, _ = wait_for(
            "raw/events to start", lambda: started_step(instance, "raw__events", "step")
        )
        instance.report_run_canceling(started)
        try:
            process.communicate(timeout=240)
        finally:
            process.kill()
        ended = instance.get_run_by_id(started.run_id)
        assert ended.is_finished, ended.status
        assert started.run_id not in instance.event_log_storage.get_concurrency_run_ids()


def test_a_run_stopped_mid_step_waits_for_its_step(distributed_stack):
    """`materialize --timeout 8` while raw/events executes on a worker (stopped there past the
    timeout): Dagster's Celery loop revokes the step and waits for its result, but the other
    worker, which was not executing it, stored it as revoked (its state said no worker had begun
    it), and the run ended failed at once with its step still executing. Now the run waits for
    the step, which ends once, the day loaded once."""
    files = day_files(distributed_stack)
    select = ["--start", DAY, "--end", DAY, "--select", "key:raw/events", "--timeout", "8"]
    process = run([CLI, "materialize", *select], distributed_stack)
    with stack_instance(distributed_stack) as instance:
        started, pid = wait_for(
            "raw/events to start", lambda: started_step(instance, "raw__events", "step")
        )
        stop_mid_step(instance, started.run_id, "raw__events", pid)
        try:
            time.sleep(12)
            assert process.poll() is None, "the run ended with its step still executing"
            assert not instance.get_run_by_id(started.run_id).is_finished
        finally:
            os.kill(pid, signal.SIGCONT)
    _, err = process.communicate(timeout=RUN_TIMEOUT)
    assert process.returncode == 3, err
    assert ingestion_starts(distributed_stack, started.run_id) == 1
    assert_day_loaded_once(distributed_stack, files)


@contextmanager
def every_worker_stopped(env: dict[str, str]) -> Iterator[None]:
    """Every Celery worker's main process SIGSTOPped (it takes no message), let go at the end."""
    from data_platform.services.config import load_services_config
    from data_platform.services.process import read_pid

    folder = load_services_config(env).state_dir("celery")
    workers = [read_pid(pid_file) for pid_file in sorted(folder.glob("data-platform-*.pid"))]
    assert workers and None not in workers
    for worker in workers:
        os.kill(worker, signal.SIGSTOP)
    try:
        yield
    finally:
        for worker in workers:
            os.kill(worker, signal.SIGCONT)


def test_a_run_stopped_while_its_step_waits_for_a_worker_ends_at_once(distributed_stack):
    """`materialize --timeout 5` while its step's message waits in Redis and no worker is
    alive to take it (here all stopped; lost, or not started): Dagster's Celery loop,
    interrupted, revokes its steps and then waits for their results, and a queued step's was
    stored only by a live worker receiving the revoke: the command ran on past its timeout,
    Ctrl-C too, until a worker came back. Now it ends in seconds with exit 3, and the message,
    taken once the workers are back, runs nothing."""
    day_files(distributed_stack)
    select = ["--start", DAY, "--end", DAY, "--select", "key:raw/events"]
    with every_worker_stopped(distributed_stack):
        process = run([CLI, "materialize", *select, "--timeout", "5"], distributed_stack)
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("materialize still running 55 s after its timeout, its step queued")
        finally:
            process.kill()
        assert process.returncode == 3, err
    with stack_instance(distributed_stack) as instance:
        (stopped,) = instance.get_runs(limit=1)
        assert stopped.status == dg.DagsterRunStatus.FAILURE
    # The workers take the stopped run's message first, then this run's.
    finish(run([CLI, "materialize", *select], distributed_stack))
    assert ingestion_starts(distributed_stack, stopped.run_id) == 0


def test_a_step_that_ended_is_not_run_again_when_its_worker_is_lost_before_its_ack(
    distributed_stack,
):
    """raw/events ends and stores its result while its worker's main process is stopped (frozen,
    or about to be killed), so its message is never acknowledged: once its lease lapsed it went
    back on the queue, and the other worker ran the step a second time, its run still going on
    (a second writer beside the run's next `duckdb` step, outside the pool). Now the worker that
    takes it drops it: its result is there. The run process is held meanwhile (SIGSTOP), so that
    the run is still in progress when the message comes back, however fast the machine."""
    lease = int(distributed_stack["DATA_PLATFORM_CELERY_LEASE_SECONDS"])
    files = day_files(distributed_stack)
    process, run_id, pid = materialize_day_stopped_mid_step(distributed_stack)
    worker = psutil.Process(pid).ppid()
    os.kill(worker, signal.SIGSTOP)
    os.kill(process.pid, signal.SIGSTOP)
    try:
        os.kill(pid, signal.SIGCONT)
        with stack_instance(distributed_stack) as instance:
            wait_for(
                "raw/events to end",
                lambda: (
                    instance.get_records_for_run(
                        run_id, of_type=dg.DagsterEventType.STEP_SUCCESS
                    ).records
                ),
                timeout=60,
            )
        time.sleep(2 * lease)  # lapsed, and put back on the queue by the other worker
    finally:
        os.kill(worker, signal.SIGCONT)
        os.kill(process.pid, signal.SIGCONT)
    finish(process)
    assert ingestion_starts(distributed_stack, run_id) == 1
    assert_day_loaded_once(distributed_stack, files)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_redis_restarted_mid_step_is_waited_for(distributed_stack):
    """kill -9 of Redis while a step runs, then `services up` starts it again (its queue and
    results on disk): the run waited for it and ended a success, the day loaded once. Celery
    gave up at its first poll: the run failed, while its step went on and succeeded."""
    from data_platform.services.config import load_services_config
    from data_platform.services.process import read_pid
    from data_platform.services.redis_server import Redis
    from data_platform_tests.helpers import run_services

    files = day_files(distributed_stack)
    redis = Redis(load_services_config(distributed_stack))
    process, run_id, pid = materialize_day_stopped_mid_step(distributed_stack)
    try:
        os.kill(read_pid(redis.pid_file), signal.SIGKILL)
        os.kill(pid, signal.SIGCONT)
        # The run polls the dead Redis meanwhile (every 0.1 s); services up starts it again.
        wait_for("Redis to be gone", lambda: not redis.is_running(), timeout=10)
        up = run_services(distributed_stack, "up")
        assert up.returncode == 0, up.stderr
        finish(process)
    finally:
        if not redis.is_running():
            run_services(distributed_stack, "up")
    with stack_instance(distributed_stack) as instance:
        ended = instance.get_run_by_id(run_id)
    assert ended.status == dg.DagsterRunStatus.SUCCESS
    assert_day_loaded_once(distributed_stack, files)


def refused_steps(env: dict[str, str], args: list[str]) -> tuple[dict[str, str], list, list]:
    """`data-platform materialize ARGS` in `env`, which must fail: its run's tags, the errors
    of its failed steps, and its materializations."""
    process = run([CLI, "materialize", *args], env)
    _, err = process.communicate(timeout=RUN_TIMEOUT)
    assert process.returncode != 0, err
    with stack_instance(env) as instance:
        run_id = run_id_of(err)
        tags = instance.get_run_by_id(run_id).tags
        events = [r.dagster_event for r in instance.all_logs(run_id) if r.dagster_event]
    failures = [
        str(e.step_failure_data.error)
        for e in events
        if e.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    written = [e for e in events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION]
    return tags, failures, written


def test_a_worker_running_other_code_than_the_run_refuses_its_steps_before_writing(
    distributed_stack, world, tmp_path
):
    """A worker loads the code when it starts: after a change (a deploy, a `git pull`) the
    workers ran the run's steps as the code was before, and the run succeeded. Here the run's
    process runs a copy of the package one comment apart from the workers' (the repository's):
    its step fails in one line naming both versions, before it writes anything."""
    from data_platform.code_version import loaded_code_version
    from data_platform.resources.run_pinned import CODE_TAG

    tags, failures, written = refused_steps(
        next_version_of_the_code(tmp_path / "code", distributed_stack),
        ["--select", "key:raw/events", "--start", str(FIRST), "--end", str(FIRST)],
    )
    workers, runs = loaded_code_version(), tags[CODE_TAG]
    assert runs != workers
    line = f"runs the platform's code {workers} ("
    assert len(failures) == 1 and line in failures[0] and f"process runs {runs}:" in failures[0]
    assert not written


def test_a_worker_with_other_settings_than_the_run_refuses_its_steps_before_writing(
    distributed_stack, world, tmp_path
):
    """The run's process and the workers each build their resources from their own
    environment: workers started without DATA_PLATFORM_ENGINE=spark ran every step of a Spark
    run on a DuckDB file no one reads, and a run given an S3 landing zone ingested the workers'
    local folder; both succeeded. Here the run's process names another DuckDB file, then
    another landing folder, than the workers': each step fails in one line naming both, before
    it writes anything."""
    from data_platform.resources.run_pinned import TAG_PREFIX

    day = ["--start", str(FIRST), "--end", str(FIRST)]
    elsewhere = tmp_path / "elsewhere.duckdb"
    tags, failures, written = refused_steps(
        {**distributed_stack, "DATA_PLATFORM_WAREHOUSE": str(elsewhere)}, day
    )
    assert tags[TAG_PREFIX + "warehouse"] == f"duckdb {elsewhere}"
    workers = f"duckdb {world.distributed.resolve()}"
    line = f"would use the warehouse {workers}, but its run's is duckdb {elsewhere}"
    assert failures and all(line in failure for failure in failures)
    assert not written and not elsewhere.exists()

    landing = tmp_path / "landing"
    (landing / "events" / f"dt={FIRST}").mkdir(parents=True)
    tags, failures, written = refused_steps(
        {**distributed_stack, "DATA_PLATFORM_LANDING": str(landing)},
        ["--select", "key:raw/events", *day],
    )
    workers = Path(distributed_stack["DATA_PLATFORM_HOME"]).resolve() / "landing"
    line = f"would use the landing {workers}, but its run's is {landing}"
    assert len(failures) == 1 and line in failures[0]
    assert not written
