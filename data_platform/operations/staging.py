"""The staging folders of backups and restores in the home, and the sweep of those left by the dead.

A backup copies the whole platform (the warehouse file: GBs) into `<home>/.backup-*` before
uploading it; a restore downloads one into `<home>/.restore-*` before putting it in place. A
process killed meanwhile (kill -9, the OOM killer) runs no cleanup: its folder would stay for
good, one more per crash, until the disk fills. So each folder holds a lock file, `LOCK_FILE`,
that its owner keeps an exclusive `flock` on for as long as the folder is in use, and every
backup and restore sweeps, before it stages its own, each staging folder whose lock it can take
at once: no live process holds it, so nobody will read or write it again. The kernel drops a
flock when its process dies, however it dies, so a crash frees the folder without any cleanup
having run; a backup that is still running (a CLI backup beside the scheduled one, in another
process, or the scheduled run between its two ops, in this one) keeps its lock, hence its folder.

flock, not fcntl's record locks: those belong to the process, so a sweep would take a lock its
own process holds (a snapshot staged in this process, its upload still to come), and closing
any descriptor of the file drops them all (the sweep's mere look at a folder would free it).

A folder whose lock file is missing or still empty has no known owner: an older version made
it (it had no lock), or an owner is between creating the folder and writing its lock (an
instant). It is swept only once nothing in it changed for `UNCLAIMED_STALE_AFTER` seconds (a
day): far longer than that instant, and than a backup's snapshot and upload of GBs. Were an
older version's live backup swept all the same, it would fail, never seal a wrong backup: its
manifest, the seal, is written from the staging folder last.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Literal, get_args

Kind = Literal["backup", "restore"]
PREFIXES = tuple(f".{kind}-" for kind in get_args(Kind))
LOCK_FILE = ".staging.lock"
# A restore's journal: its folder holds the only local copy of a backup half put in place,
# which `restore_journal` finishes; it is never swept.
JOURNAL = "restore-journal.json"
UNCLAIMED_STALE_AFTER = 24 * 3600.0


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


class StagingFolder:
    """A staging folder this process holds: locked from creation until `remove()`."""

    def __init__(self, path: Path, lock: int) -> None:
        self.path = path
        self._lock = lock

    def remove(self) -> None:
        """The folder deleted, then its lock released. What resists (a file another user
        wrote) is left to a later sweep rather than failing a backup that is done. A folder
        whose restore journal is still there is kept: that restore stopped half way (a full
        disk, a cluster down, Ctrl-C) and the next command finishes it from this folder."""
        try:
            if not (self.path / JOURNAL).exists():
                shutil.rmtree(self.path, ignore_errors=True)
        finally:
            os.close(self._lock)

    def __enter__(self) -> Path:
        return self.path

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.remove()


def open_staging(
    home: Path, kind: Kind, label: str = "", report: Callable[[str], None] = to_stderr
) -> StagingFolder:
    """A new folder `<home>/.<kind>-<label><random>`, locked, after sweeping the dead ones
    (each reported). In the home, not in /tmp: a warehouse may not fit a tmpfs."""
    home.mkdir(parents=True, exist_ok=True)
    sweep(home, report)
    path = Path(tempfile.mkdtemp(prefix=f".{kind}-{label}", dir=home))
    lock = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    # Blocking: a sweep may hold it for the instant it takes to find it empty.
    fcntl.flock(lock, fcntl.LOCK_EX)
    since = datetime.now(UTC).isoformat(timespec="seconds")
    owner = f"pid {os.getpid()} on {socket.gethostname()} since {since}"
    os.write(lock, owner.encode())
    return StagingFolder(path, lock)


def held_by(folder: Path) -> str | None:
    """The owner (as its lock file says) of a staging folder a live process holds, else None:
    gone, or its owner dead (the kernel dropped its flock)."""
    try:
        lock = os.open(folder / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return None  # no owner known: see UNCLAIMED_STALE_AFTER
    try:
        fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(lock, 512, 0).decode(errors="replace")
    finally:
        os.close(lock)
    return None


def held_owners(home: Path, kind: Kind) -> list[str]:
    """The owners of `home`'s staging folders of `kind` that a live process holds: a backup
    still at work, for a restore that would replace what it copies."""
    owners = (held_by(folder) for folder in sorted(home.glob(f".{kind}-*")))
    return [owner for owner in owners if owner is not None]


def sweep(home: Path, report: Callable[[str], None] = to_stderr) -> None:
    """Delete the staging folders in `home` that no live process holds, each reported with the
    bytes it freed. A folder that cannot be deleted (a file another user wrote) is reported and
    left: a backup is not failed for someone else's leftovers."""
    try:
        entries = list(os.scandir(home))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.startswith(PREFIXES) and entry.is_dir(follow_symlinks=False):
            _sweep_folder(Path(entry.path), report)


def _sweep_folder(folder: Path, report: Callable[[str], None]) -> None:
    try:
        lock = os.open(folder / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        _sweep_unclaimed(folder, report)
        return
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # its owner is alive
        if (folder / JOURNAL).exists():
            return  # looked at under the lock: its owner cannot write one any more
        owner = os.pread(lock, 512, 0).decode(errors="replace")
        if not owner:
            _sweep_unclaimed(folder, report)
            return
        # Deleted under the lock: a second sweep beside this one skips the folder.
        _delete(folder, f"the staging folder of a backup or restore that died ({owner})", report)
    finally:
        os.close(lock)


def _sweep_unclaimed(folder: Path, report: Callable[[str], None]) -> None:
    idle = time.time() - _tree(folder)[1]
    if idle >= UNCLAIMED_STALE_AFTER:
        what = f"a staging folder without an owner, untouched for {idle / 3600:.0f} h"
        _delete(folder, what, report)


def _delete(folder: Path, what: str, report: Callable[[str], None]) -> None:
    size = _tree(folder)[0]
    try:
        shutil.rmtree(folder, onerror=_unless_gone)
    except OSError as error:
        report(f"could not remove {folder}, {what}: {error}")
        return
    report(f"removed {folder}, {what}: {size} bytes freed")


def _unless_gone(function: Callable, path: str, info: tuple) -> None:
    """rmtree's error handler: a file already gone (a concurrent sweep) is no error."""
    if not isinstance(info[1], FileNotFoundError):
        raise info[1]


def _tree(folder: Path) -> tuple[int, float]:
    """The bytes of the files under `folder`, and the newest modification time in it."""
    size, newest = 0, 0.0
    for root, _, files in os.walk(folder):
        for path, is_file in [(root, False), *((os.path.join(root, f), True) for f in files)]:
            with contextlib.suppress(FileNotFoundError):
                stat = os.lstat(path)
                newest = max(newest, stat.st_mtime)
                size += stat.st_size if is_file else 0
    return size, newest
