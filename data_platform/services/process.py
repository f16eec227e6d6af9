"""What every service needs from the operating system: pid files, signals, waiting."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from data_platform.settings import OWNER_ONLY_UMASK


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


def _stat_fields(stat: Path) -> list[str]:
    """The fields of a /proc/<pid>/stat after the command name (field 3, the state, first);
    the name is skipped whole, as it may hold spaces and parentheses. FileNotFoundError when
    the process is gone."""
    return stat.read_text().rsplit(")", 1)[1].split()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone: it serves nothing.
    try:
        return _stat_fields(Path(f"/proc/{pid}/stat"))[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


# Start times are compared as seconds since boot, counted in clock ticks: exact, and immune to
# the wall clock (psutil's wall-clock start adds the boot time, which a VM's clock steps move:
# a server read as exited after one, and `up` failed beside it). Slack: one tick, float rounding.
_SAME_START_SLACK_SECONDS = 0.02
# Pid files written before that recorded the wall-clock start, to within a second.
_LEGACY_SLACK_SECONDS = 1.0


def _started_after_boot(pid: int) -> float:
    """Field 22 of /proc/<pid>/stat (starttime, in clock ticks since boot), in seconds."""
    try:
        fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _read_record(pid_file: Path) -> tuple[int, float | None] | None:
    """The pid a pid file records and, when `spawn` wrote it, the process's start; None when
    there is no file, or when `spawn` wrote it before the machine last booted: nothing of that
    process lives, and its pid, or a process group of that number, is now a stranger's (a
    stale worker record had `up` kill such a group). A server's own pid file (PostgreSQL's
    postmaster.pid) has the pid alone on its first line."""
    try:
        first_line = pid_file.read_text().splitlines()[0].split()
        pid = int(first_line[0])
        if len(first_line) > 2 and first_line[2] != _boot_id():
            return None
        return pid, (float(first_line[1]) if len(first_line) > 1 else None)
    except (FileNotFoundError, ValueError, IndexError):
        return None


def _holds_recorded_start(pid: int, recorded: float) -> bool:
    """Whether the process holding `pid` (a zombie too) started when the record says.
    ProcessLookupError when no process holds the pid."""
    started = _started_after_boot(pid)
    slack = _SAME_START_SLACK_SECONDS
    if recorded > (uptime := _uptime()):
        # Written by a version that recorded wall-clock starts: still the service (a `down`
        # after an upgrade must stop it), judged as that version judged it.
        started += time.time() - uptime
        slack = _LEGACY_SLACK_SECONDS
    return abs(started - recorded) <= slack


def read_pid(pid_file: Path) -> int | None:
    """The pid a service recorded, or None when there is no file or its process has exited.

    `spawn` also records when the process started: a pid now held by a younger process (the
    service died long ago, the pid came round again) reads as exited, so nothing signals a
    stranger's process group or takes it for the service."""
    record = _read_record(pid_file)
    if record is None:
        return None
    pid, recorded = record
    if not pid_alive(pid):
        return None
    if recorded is not None:
        try:
            if not _holds_recorded_start(pid, recorded):
                return None
        except ProcessLookupError:
            return None
    return pid


def recorded_group(pid_file: Path) -> int | None:
    """The process group `spawn` started (its leader's pid) while any process of it lives, the
    leader or not; None when none does, or when the pid is now a stranger's.

    A leader killed -9 leaves its children running in its group (a Celery worker's pool
    process, mid-step), which `read_pid` no longer sees. Linux hands out no pid that is still
    some live process's group id, so a pid held by no process, or by the leader's zombie,
    names our group; one held by a younger process names a stranger's."""
    record = _read_record(pid_file)
    if record is None:
        return None
    pid, recorded = record
    try:
        if recorded is not None and not _holds_recorded_start(pid, recorded):
            return None
    except ProcessLookupError:
        pass  # the leader is gone and reaped: its group, if any process is left in it, is ours
    return pid if pid_alive(pid) or group_alive(pid) else None


def _uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


# Tests only: seconds `spawn` waits between finding no server and starting one. Two `up`s at
# once raced in that moment (milliseconds wide: 1 of 5 tries hit it); the wait lets a test show
# that the lock `python -m data_platform.services` holds (services/lock.py) closes it.
# Unset: no wait.
SPAWN_DELAY_VARIABLE = "DATA_PLATFORM_SERVICES_SPAWN_DELAY"


def _spawn_delay() -> None:
    raw = os.environ.get(SPAWN_DELAY_VARIABLE, "").strip()
    if raw:
        time.sleep(float(raw))


def spawn(
    command: list[str],
    log_file: Path,
    pid_file: Path,
    env: Mapping[str, str],
) -> None:
    """Start a long-running server in its own process group, detached from the caller.

    The pid file records the group leader, so `terminate_group` reaches every process it forks.
    One whose pid file names a live process is not started again: a second copy failed to bind,
    overwrote the pid file, and `services-down` then missed the first, left serving as an orphan.
    The server and every file it creates are owner-only (`OWNER_ONLY_UMASK`), since a server's
    files hold what it serves (Redis's AOF: Celery's messages; Spark's warehouse: raw personal
    data) and the login's umask (022) left them readable by every local user.

    The server writes its own pid file, between fork and exec (`_record_self`): written here once
    Popen had returned, a kill -9 of `up` in between left a server no pid file named, which
    `down` could not stop, and beside which every `up` started a copy that failed to bind. Now
    no server runs without its record, and Popen raises when the record cannot be written.
    Simpler and surer than finding such an orphan afterwards: Redis rewrites its command line,
    a Celery worker listens on no port, and nothing else tells one copy of a server from another.
    """
    if read_pid(pid_file) is not None:
        return
    _spawn_delay()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    # Owner-only from creation, like the server's own files: a log quotes what the server saw.
    with open(log_file, "ab", opener=_owner_only) as log:
        subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=log_file.parent,
            start_new_session=True,
            umask=OWNER_ONLY_UMASK,
            # Absolute: the child has already changed into the log's folder when it runs.
            preexec_fn=functools.partial(_record_self, pid_file.absolute()),
        )


def _owner_only(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def _record_self(pid_file: Path) -> None:
    """Record the calling process (pid, start, boot) in `pid_file`: `spawn`'s server, in the
    child between fork and exec. Python warns that such code may deadlock in a process with
    threads (a lock another thread held at the fork stays held): this takes no lock, only system
    calls and new file objects."""
    pid = os.getpid()
    write_atomically(pid_file, f"{pid} {_started_after_boot(pid)} {_boot_id()}\n", 0o644)


def create_once(path: Path, text: str) -> None:
    """Create `path` holding `text` (mode 0600) unless it exists, complete or not at all, and
    never over one another process created meanwhile: written to a private temp file, then
    linked into place, which fails if the name is taken (that file is then the one). A fixed
    temp name and a rename let two first uses publish each other's half-written file, and a
    reader find it empty."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=_create_once_prefix(path.name))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.link(temp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temp)


def _create_once_prefix(name: str) -> str:
    return f".{name}-"


def create_once_leftover(path: Path, name: str) -> bool:
    """Whether `path` is the temp file `create_once` leaves when killed writing `name`."""
    return path.name.startswith(_create_once_prefix(name))


def write_atomically(path: Path, text: str, mode: int) -> None:
    """Replace `path` with a file holding `text` and `mode`, whole or not at all.

    A state file rewritten in place (truncated, then written) and killed in between stays empty
    or cut: an empty pg_hba.conf read as asking for no password, an empty password file as the
    password, and nothing repaired them. The text goes to a temp file in the same folder, flushed
    to disk, which `os.replace` renames over `path` in one step: a reader, or a kill at any
    moment, finds the old file or the new one. The temp file is created with O_EXCL, so nothing
    planted under its name (a symlink, in a folder the server's user owns) is followed; its name
    is the writer's pid, so a writer killed -9 leaves one, which a later writer with that pid
    removes. The new file keeps the old one's owner: as root, pg_hba.conf must stay readable by
    the `postgres` user.
    """
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.unlink(missing_ok=True)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), mode)  # exactly `mode`, whatever the umask
            with contextlib.suppress(FileNotFoundError):
                kept = os.lstat(path)
                if (kept.st_uid, kept.st_gid) != (os.geteuid(), os.getegid()):
                    os.fchown(f.fileno(), kept.st_uid, kept.st_gid)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_secret(path: Path, secret: str) -> None:
    """Write `path` holding `secret`, readable by its owner alone from the first byte on (the
    mode is given at creation: a chmod afterwards would leave a moment of default umask), and
    whole: created, then killed before its write, an empty password file was kept for good."""
    write_atomically(path, secret + "\n", 0o600)


def ensure_secret(path: Path) -> bool:
    """A new random password in `path` unless the file exists (a first start that failed
    half-way made it): True when this call made it."""
    if path.exists():
        return False
    write_secret(path, secrets.token_urlsafe(32))
    return True


def read_secret(path: Path, service: str) -> str:
    """A password `write_secret` made at the service's first start; one line if it has none."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise ServiceError(
            f"{service}: no password yet ({path} is missing): its first start generates one: "
            "run `make services-up`"
        ) from None


def group_alive(pgid: int) -> bool:
    """Whether any live process is still in the group (a worker's pool children outlive it)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = _stat_fields(stat)
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def terminate_group(pid_file: Path, timeout: float = 30) -> None:
    """SIGTERM the process group led by the recorded pid, SIGKILL what outlives `timeout`.

    Groups, not single pids: a Celery worker forks pool children that must go with it, and
    they are signalled even when the leader is already dead (killed -9): left running, `down`
    said it was done while a worker went on, and `up` started a second one of the same name.
    """
    pgid = recorded_group(pid_file)
    if pgid is not None:
        _signal_group(pgid, signal.SIGTERM)
        if not wait_until(lambda: not group_alive(pgid), timeout):
            _signal_group(pgid, signal.SIGKILL)
            wait_until(lambda: not group_alive(pgid), 5)
    pid_file.unlink(missing_ok=True)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
