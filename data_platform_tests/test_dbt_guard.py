"""dbt ends with the step that started it (resources/dbt_guard.py): a run killed with kill -9
left its dbt running, holding DuckDB's lock, until its current model ended."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from data_platform.resources.dbt_cli import local_dbt

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
