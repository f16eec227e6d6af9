"""One `up` or `down` at a time per DATA_PLATFORM_HOME.

Each service's start is check-then-start (is it running? Popen, write its pid file): two `up`s
at once both found no server and both started one; the second failed to bind, and its pid file
could overwrite the first's, so `down` left the server that won serving as an orphan. An
exclusive flock on `services/services.lock`, held for the whole command, makes the second wait
and then find the server up. The kernel drops the lock when its holder exits, killed -9 too, so
a lock is never stale. `env` and `status` only read and take no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from data_platform.services.config import ServicesConfig
from data_platform.services.process import ServiceError

LOCK_FILE_NAME = "services.lock"
# Longer than the slowest `up` takes before its own timeouts stop it (every service's start
# timeout in a row, Spark's 240 s among them: 600 s): a second command gives up only on a first
# one that hangs.
WAIT_SECONDS = 900.0
_POLL_SECONDS = 0.2


def lock_file(config: ServicesConfig) -> Path:
    return config.root / LOCK_FILE_NAME


@contextlib.contextmanager
def exclusive(config: ServicesConfig, action: str, timeout: float = WAIT_SECONDS) -> Iterator[None]:
    """Hold the home's services lock for the block, waiting up to `timeout` for another holder;
    ServiceError (one line naming the holder) when it still holds it then."""
    path = lock_file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, path, timeout)
        _record_holder(fd, action)
        yield
    finally:
        os.close(fd)  # releases the lock


def _record_holder(fd: int, action: str) -> None:
    """Who holds the lock, for a command that waits: written once the lock is ours."""
    os.ftruncate(fd, 0)
    # In UTC, said: two shells of one home may live in different zones.
    holder = f"`{action}` (pid {os.getpid()}, since {time.strftime('%H:%M:%SZ', time.gmtime())})"
    os.pwrite(fd, holder.encode(), 0)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(fd: int) -> str:
    return os.pread(fd, 256, 0).decode(errors="replace").strip() or "another command"


def _acquire(fd: int, path: Path, timeout: float) -> None:
    """Polls, so the wait is bounded (a blocking flock has no timeout), and says once that it
    waits: a `make services-up` silent for minutes would look hung."""
    if _try_lock(fd):
        return
    print(f"services: waiting for {_holder(fd)} to finish ({path})", file=sys.stderr)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
        if _try_lock(fd):
            return
    raise ServiceError(
        f"{_holder(fd)} still holds {path} after {timeout:.0f} s: let it finish, or stop that "
        "process, then run this again"
    )
