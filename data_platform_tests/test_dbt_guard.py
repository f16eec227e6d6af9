"""dbt ends with the step that started it (resources/dbt_guard.py): a run killed with kill -9
left its dbt running, holding DuckDB's lock, until its current model ended."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from data_platform.resources.dbt_cli import local_dbt

REPO = Path(__file__).resolve().parents[1]

# A step (the parent) starts a guarded child that execs a long sleep, as the guard execs dbt.
STEP = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True)
print(child.stdout.readline().strip(), flush=True)
child.wait()
"""
GUARDED = """
import os, sys
from data_platform.resources.dbt_guard import die_with_parent
die_with_parent()
print(os.getpid(), flush=True)
os.execv("/bin/sleep", ["sleep", "600"])
"""


def test_a_guarded_child_ends_when_its_step_is_killed():
    from data_platform.resources.dbt_guard import PARENT_VARIABLE

    # A dbt step earlier in this process left its own pid there (resources/dbt_cli.py).
    env = {k: v for k, v in os.environ.items() if k != PARENT_VARIABLE}
    step = subprocess.Popen(
        [sys.executable, "-c", STEP, GUARDED], stdout=subprocess.PIPE, text=True, env=env
    )
    child = psutil.Process(int(step.stdout.readline()))
    # It prints its pid, then execs: the request must outlive the exec, as dbt's does.
    deadline = time.monotonic() + 10
    while child.name() != "sleep":
        assert time.monotonic() < deadline, "the child never exec'd"
        time.sleep(0.05)
    os.kill(step.pid, signal.SIGKILL)
    step.wait()
    # The kernel signals the child when its parent ends; 10 s is a bound, not a race.
    deadline = time.monotonic() + 10
    while child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the child outlived its step"
        time.sleep(0.05)


def test_dagster_runs_dbt_through_the_guard():
    executable = Path(local_dbt().dbt_executable)
    assert executable.name == "data-platform-dbt" and executable.exists()
    out = subprocess.run([executable, "--version"], capture_output=True, text=True, check=True)
    assert "installed" in out.stdout + out.stderr


def test_a_guard_whose_step_ended_before_it_started_exits():
    """The step's pid is handed over in the environment: read in the child, the parent's pid
    would be its new parent's had the step died while the guard's Python started."""
    from data_platform.resources.dbt_guard import PARENT_VARIABLE

    ended = subprocess.Popen(["true"])
    ended.wait()
    guarded = subprocess.run(
        [sys.executable, "-c", GUARDED],
        env={**os.environ, PARENT_VARIABLE: str(ended.pid)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert guarded.returncode != 0 and "ended first" in guarded.stderr, guarded


def _files_capped_at(size: int):
    """For a child: any file it writes past `size` bytes fails with EFBIG, as a full disk fails
    with ENOSPC, without root or a mount. SIGXFSZ ignored: the write fails instead of killing."""

    def cap() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return cap


def test_a_dbt_log_that_cannot_be_written_is_one_line_not_a_traceback_per_event(tmp_path):
    """A full dbt target folder printed logging's "--- Logging error ---" and its traceback for
    every event dbt logged to its file: 1,825 of them (127,797 lines) for one failed step."""
    project = REPO / "dbt"
    env = {
        **os.environ,
        "DATA_PLATFORM_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
        "DATA_PLATFORM_PII_SALT": "salt",
    }
    env.pop("DATA_PLATFORM_DBT_PARENT", None)
    args = ["parse", "--project-dir", str(project), "--profiles-dir", str(project)]
    paths = ["--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")]
    # 64 bytes: enough for the semaphores dbt makes in /dev/shm, not for its log or manifest.
    done = subprocess.run(
        [str(Path(sys.executable).with_name("data-platform-dbt")), *args, *paths],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_files_capped_at(64),
    )
    assert done.returncode != 0, done  # the manifest cannot be written either: dbt fails
    assert "Logging error" not in done.stderr, done.stderr[:3000]
    [line] = done.stderr.splitlines()
    log = tmp_path / "logs" / "dbt.log"
    assert line == (
        f"data-platform-dbt: dbt's log {log} cannot be written ([Errno 27] File too large): "
        "free space or fix permissions there; further log errors are not shown"
    )
    assert "File too large" in done.stdout  # dbt's own error, still on its output
