"""A real `dagster-daemon` on the platform's file-fed raw assets, and a run worker to kill.

Shared by the self-healing test and its benchmark: a home with the repo's own dagster.yaml,
one day of 300,000 events (well under a second to ingest), a local alert webhook,
and the daemon (as `dagster dev` runs it) over `raw_files_location`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import dagster as dg
import psutil
from dagster._core.storage.tags import PARENT_RUN_ID_TAG

from data_platform.orchestration.run_health import worker_pid
from data_platform_tests.helpers import environ_without_settings, stop_process_group
from data_platform_tests.test_alerts import Webhook

REPO = Path(__file__).resolve().parents[1]
DAY = "2026-01-05"
EVENTS_PER_FILE = 150_000
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
T = TypeVar("T")


@dataclass
class World:
    instance: dg.DagsterInstance
    home: Path
    files: list[Path]
    webhook: Webhook


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 150.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def write_day(landing: Path) -> list[Path]:
    folder = landing / "events" / f"dt={DAY}"
    folder.mkdir(parents=True)
    paths = []
    for part in range(2):
        lines = (
            f'{{"event_id":"e{part}-{i}","user_id":{i % 500},"event_type":"page_view",'
            f'"occurred_at":"{DAY}T{i % 24:02d}:00:00Z","session_id":"s{i % 900}"}}\n'
            for i in range(EVENTS_PER_FILE)
        )
        path = folder / f"part-{part}.jsonl"
        path.write_text("".join(lines) + "\n   \n")  # a blank line: not a record
        paths.append(path)
    return paths


def started_step(
    instance: dg.DagsterInstance, step_key: str, pid_of: Literal["run", "step"]
) -> tuple[dg.DagsterRun, int] | None:
    """The in-progress run whose `step_key` has started, and the pid of the process to kill.

    `pid_of="run"`: the run process's, as the platform's health check reads it, since an
    in-process step runs there. `pid_of="step"`: the one its STEP_START names, since a Celery
    step runs in a worker process, outside the run process."""
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        started = [
            r.event_log_entry
            for r in instance.get_records_for_run(
                run.run_id, of_type=dg.DagsterEventType.STEP_START
            ).records
            if r.event_log_entry.step_key == step_key
        ]
        if not started:
            continue
        if pid_of == "step":
            return run, started[0].dagster_event.pid
        announced = worker_pid(instance, run.run_id)
        if announced is not None:
            return run, announced[0]
    return None


# What a step reports once its work is done: stopped after one of these, it was not mid-step.
_STEP_DONE = {
    dg.DagsterEventType.STEP_OUTPUT,
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
}


def stop_mid_step(instance: dg.DagsterInstance, run_id: str, step_key: str, pid: int) -> None:
    """SIGSTOP `pid`, the process executing `step_key`, as soon as the step is seen started, and
    check that the step had reported nothing of its end: a kill after this is a kill mid-step,
    however fast the step. (A sleep of 0.3 s before the kill raced the ingestion once it got
    faster: the step had ended, and the test saw one start instead of two.)"""
    os.kill(pid, signal.SIGSTOP)
    try:
        done = instance.get_records_for_run(run_id, of_type=_STEP_DONE).records
        ended = [r for r in done if r.event_log_entry.step_key == step_key]
        assert not ended, f"{step_key} ended before its process was stopped: not killed mid-step"
    except BaseException:
        os.kill(pid, signal.SIGKILL)  # left stopped, it would hold its pool slot for good
        raise


def kill_when_ingesting(
    instance: dg.DagsterInstance, code_server_first: bool = False, canceling: bool = False
) -> tuple[dg.DagsterRun, float]:
    """SIGKILL the run worker in its raw/events step; the run and when it was killed.

    With `code_server_first`, its parent, the code server, is SIGKILLed first: nobody is left
    to see the worker die but the monitoring daemon. With `canceling`, the run is first asked
    to stop, as the UI's Terminate does, then killed: a step stuck past the request."""
    run, pid = wait_for(
        "a raw/events step to start", lambda: started_step(instance, "raw__events", "run")
    )
    stop_mid_step(instance, run.run_id, "raw__events", pid)
    if canceling:
        instance.report_run_canceling(run, message="Sending run termination request.")
    if code_server_first:
        code_server = psutil.Process(pid).parent()
        assert code_server is not None and "grpc" in " ".join(code_server.cmdline())
        code_server.kill()
        code_server.wait(timeout=30)
    os.kill(pid, signal.SIGKILL)
    return run, time.time()


def successful_retry(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun | None:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={PARENT_RUN_ID_TAG: run_id}))
    return next((r for r in runs if r.status == dg.DagsterRunStatus.SUCCESS), None)


def print_what_happened(instance: dg.DagsterInstance, daemon_log: Path) -> None:
    """For a failed test's captured output: every run with its status and tags, and the daemon's
    log, since what the daemon did (a retry given up, a code server that would not start) is
    seen nowhere else."""
    for run in instance.get_runs():
        print(f"run {run.run_id} {run.status.value} {dict(run.tags)}")
    print(f"--- {daemon_log} (last 200 lines)")
    print("\n".join(daemon_log.read_text(errors="replace").splitlines()[-200:]))


@contextmanager
def daemon_world(root: Path) -> Iterator[World]:
    home = root / "home"
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    files = write_day(home / "landing")
    workspace = root / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n"
        "      module_name: data_platform_tests.raw_files_location\n"
        f"      working_directory: {REPO}\n"
    )
    webhook = Webhook()
    env = {
        **environ_without_settings(),
        "DATA_PLATFORM_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "DATA_PLATFORM_START_DATE": "2026-01-01",
        "DATA_PLATFORM_ALERT_WEBHOOK": webhook.url,
    }
    # Created before the daemon: two processes building a new SQLite instance's tables at once
    # leave it with two alembic heads.
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    daemon = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", str(workspace)],
        cwd=REPO,
        env=env,
        stdout=(root / "daemon.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield World(instance, home, files, webhook)
    except BaseException:
        print_what_happened(instance, root / "daemon.log")
        raise
    finally:
        stop_process_group(daemon, timeout=30)
        instance.dispose()
        webhook.server.shutdown()
