"""What every service needs from the operating system: pid files, signals, waiting."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class ServiceError(RuntimeError):
    """A service could not be started or stopped; the message is one line naming it and its log."""


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone: it serves nothing.
    try:
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return status != "Z"


def read_pid(pid_file: Path) -> int | None:
    """The pid a service recorded, or None when there is no file or its process has exited."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def spawn(command: list[str], log_file: Path, pid_file: Path, env: dict[str, str]) -> None:
    """Start a long-running server in its own process group, detached from the caller.

    The pid file records the group leader, so `terminate_group` reaches every process it forks.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=log_file.parent,
            start_new_session=True,
        )
    pid_file.write_text(f"{process.pid}\n")


def group_alive(pgid: int) -> bool:
    """Whether any live process is still in the group (a worker's pool children outlive it)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def terminate_group(pid_file: Path, timeout: float = 30) -> None:
    """SIGTERM the process group led by the recorded pid, SIGKILL what outlives `timeout`.

    Groups, not single pids: a Celery worker forks pool children that must go with it.
    """
    pid = read_pid(pid_file)
    if pid is not None:
        _signal_group(pid, signal.SIGTERM)
        if not wait_until(lambda: not group_alive(pid), timeout):
            _signal_group(pid, signal.SIGKILL)
            wait_until(lambda: not group_alive(pid), 5)
    pid_file.unlink(missing_ok=True)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
