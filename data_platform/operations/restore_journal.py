"""Putting a verified backup in place so that a restore killed at any point is finished, not
left half done.

The home's parts (the Dagster instance's folder, the PII salt, the warehouse file) are replaced
one after the other. Killed between two, a restore left a home no platform ever had: the
restored instance beside the old warehouse, or the old salt beside restored hashes (new rows
hashed unlike old ones), with nothing to say so, and its staging folder, the only local copy of
the rest, swept as a dead one's leftovers. So before the first part is touched, a journal
(`staging.JOURNAL`) is written into the staging folder naming every replacement; that pins the
folder (the sweep leaves it) and makes finishing anyone's job: every `data-platform` command and
every load of the Definitions calls `finish_interrupted_restores` first, which completes each
journal it finds, under the folder's lock, then removes it.

Each step is safe to repeat: a part is moved next to its target (`<target>.restoring`), the old
one removed, the new one renamed over; whatever is at the target while the journal lives is the
old part or debris (`make run` recreating an empty instance folder), never the backup's. An
instance on PostgreSQL is the journal's first step: its dump, loaded by pg_restore (which
commits the backup's runs and cursors), then deleted; killed before the deletion, it is loaded
again. Run before the journal, it left a kill right after it with nothing to finish. A
warehouse on Spark is a step of the journal too, after the files (the instance before the
warehouse, as `restore.replacements` says why): its tables, loaded beside the cluster's before
the journal was written, are swapped in (`spark_snapshot.swap_in_spark_warehouse`, repeatable),
so finishing such a restore needs the settings that reach its cluster.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from data_platform.operations.staging import JOURNAL, LOCK_FILE, PREFIXES, to_stderr
from data_platform.settings import Settings

# A staged part copied to another file system is renamed to this once in place, in one step:
# a half-deleted copy must never look like a part still to put in place.
PLACED = ".placed"


@dataclass(frozen=True)
class Replacement:
    """`staged` (a path inside the staging folder) to become `target`, or None: the backup
    lacks that part, and `target` is removed; `stale` files (a write-ahead log that would be
    replayed into the restored file) are removed first."""

    staged: str | None
    target: str
    stale: tuple[str, ...] = ()


def begin(
    staging: Path,
    label: str,
    instance: Path,
    replacements: list[Replacement],
    spark_existing: list[list] | None = None,
    postgres_dump: str | None = None,
) -> None:
    """The journal written: from here on the restore is finished by whoever finds it.
    `spark_existing`: the cluster's relations the backup's Spark tables replace, if it has any;
    `postgres_dump`: the staged dump of a PostgreSQL instance, loaded before any replacement."""
    entries = {
        "label": label,
        "instance": str(instance),
        "postgres_dump": postgres_dump,
        "replacements": list(map(asdict, replacements)),
        "spark_existing": spark_existing,
    }
    draft = staging / f"{JOURNAL}.draft"
    draft.write_text(json.dumps(entries))
    os.replace(draft, staging / JOURNAL)


def complete(staging: Path, settings: Settings, report: Callable[[str], None] = to_stderr) -> None:
    """Every replacement of the journal in place, the restored instance's unfinished runs
    released, the Spark tables swapped in, then the journal removed: the restore is done."""
    from data_platform.operations.durations import forget_counted_durations
    from data_platform.operations.snapshot import open_instance
    from data_platform.orchestration.run_health import release_restored_runs

    journal = json.loads((staging / JOURNAL).read_text())
    with _finished_later():
        load_postgres_step(staging)
        for entry in journal["replacements"]:
            if entry["staged"] is None:
                for path in (*entry["stale"], entry["target"]):
                    _remove(Path(path))
            else:
                _put(staging / entry["staged"], Path(entry["target"]), entry["stale"])
        with open_instance(Path(journal["instance"])) as instance:
            for line in release_restored_runs(instance):
                report(line)
            forget_counted_durations(instance)
    if journal.get("spark_existing") is not None:
        _swap_in_spark(staging, settings, journal)
    _remove(staging / JOURNAL)


@contextlib.contextmanager
def _finished_later() -> Iterator[None]:
    """An instance's PostgreSQL that stops answering once the journal is written: its line
    says the restore waits for the next command, not that nothing was changed."""
    from data_platform.operations.snapshot import InstanceUnreachable

    try:
        yield
    except InstanceUnreachable as error:
        raise InstanceUnreachable(
            error.problem,
            "the restore is not finished: the next data-platform command finishes it once "
            "PostgreSQL answers",
        ) from None


def load_postgres_step(staging: Path) -> None:
    """The journal's PostgreSQL dump loaded into the instance's database, then deleted: its
    absence says the step is done. Until then it runs again, harmlessly (pg_restore --clean
    in one transaction), however often the restore is killed right after it. It comes before
    the instance's folder is moved, whose staged dagster.yaml names the database."""
    from data_platform.operations.restore import load_postgres_dump

    journal = json.loads((staging / JOURNAL).read_text())
    dump = journal.get("postgres_dump")
    if dump and (staging / dump).exists():
        load_postgres_dump(staging, staging / dump, Path(journal["instance"]) / "dagster.yaml")
        _remove(staging / dump)


def abandon(staging: Path) -> None:
    """The journal removed by its own restore, when the step that failed changed nothing."""
    _remove(staging / JOURNAL)


def _swap_in_spark(staging: Path, settings: Settings, journal: dict) -> None:
    from data_platform.operations.backup_store import BackupError
    from data_platform.operations.spark_snapshot import swap_in_spark_warehouse
    from data_platform.resources.warehouse import warehouse_of

    if settings.engine != "spark":
        raise BackupError(
            f"the interrupted restore of {journal['label']} was putting its tables into a Spark "
            "cluster: run again with DATA_PLATFORM_ENGINE=spark and DATA_PLATFORM_SPARK_REMOTE "
            "naming that cluster"
        )
    with warehouse_of(settings).spark() as spark:
        swap_in_spark_warehouse(spark, staging, journal["spark_existing"])


def finish_interrupted_restores(
    settings: Settings, report: Callable[[str], None] = to_stderr
) -> list[str]:
    """Complete each restore into the settings' home that died while putting its backup in
    place; one still running is waited for. Costs one look at the home when there is none.
    Returns the labels of the restores finished (`<backup> (taken <when>)`)."""
    home = settings.home
    # A home not made yet has nothing to finish. Only its listing may miss: a file missing
    # while a restore is completed is that restore failing, and a command run on its
    # half-restored home would go on as if it were whole.
    try:
        folders = sorted(home.iterdir())
    except FileNotFoundError:
        return []
    finished = []
    for folder in folders:
        if folder.name.startswith(PREFIXES) and (folder / JOURNAL).exists():
            with _locked(folder):
                if (folder / JOURNAL).exists():
                    label = json.loads((folder / JOURNAL).read_text())["label"]
                    report(f"finishing the restore of {label} into {home}: it was interrupted")
                    complete(folder, settings, report)
                    shutil.rmtree(folder, ignore_errors=True)
                    finished.append(label)
    return finished


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    lock = os.open(folder / LOCK_FILE, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # its restore, if alive, is renaming: an instant
        yield
    finally:
        os.close(lock)


def _put(staged: Path, target: Path, stale: list[str]) -> None:
    if _is_mount(target):
        _put_into_mount(staged, target, stale)
        return
    incoming = target.with_name(f"{target.name}.restoring")
    copied = False
    if staged.exists():
        _remove(incoming)  # a copy cut short
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            _rename(staged, incoming)
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
            # The old part goes first: the journal replaces it whatever happens, and copied
            # beside it, a warehouse on a disk with room for one, not two, failed with ENOSPC
            # at every attempt, every command failing on the unfinished restore for good.
            for path in (*map(Path, stale), target):
                _remove(path)
            _copy(staged, incoming)
            copied = True
    elif not incoming.exists():
        return  # in place before the interruption
    for path in (*map(Path, stale), target):
        _remove(path)
    _rename(incoming, target)
    if copied:
        placed = staged.with_name(staged.name + PLACED)
        _rename(staged, placed)
        _remove(placed)


# A part put into a folder that is a mount point (a DAGSTER_HOME on its own volume) is copied
# in here first, on the mount's file system.
INCOMING = ".restoring"


def _is_mount(path: Path) -> bool:
    """Whether `path` is a folder something is mounted on: os.path.ismount, which misses a bind
    mount from the same file system, or a mount point Linux lists (/proc/self/mountinfo)."""
    if not path.is_dir() or path.is_symlink():
        return False
    if os.path.ismount(path):
        return True
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    real = os.path.realpath(path)
    # The fifth field, with space, tab, newline and backslash as octal escapes.
    unescape = re.compile(r"\\([0-7]{3})")
    points = {unescape.sub(lambda m: chr(int(m[1], 8)), line.split()[4]) for line in lines}
    return real in points


def _put_into_mount(staged: Path, target: Path, stale: list[str]) -> None:
    """`_put` for a folder that is a mount point, which no rename replaces and no removal
    removes (EBUSY): its entries are replaced instead. rmtree emptied it, then failed on the
    folder itself, and every later command failed the same way, the instance gone. The staged
    copy is kept until every entry is in place (copied, never renamed: a rename in between
    would leave its moved entries nowhere but the target, whose entries are removed first)."""
    incoming = target / INCOMING
    if staged.exists():
        # The old entries first (a copy cut short among them), as `_put` removes an old part
        # before copying: a volume with room for one instance, not two, is enough.
        for entry in (*map(Path, stale), *sorted(target.iterdir())):
            _remove(entry)
        _copy(staged, incoming)
    elif not incoming.exists():
        return  # in place before the interruption
    for path in map(Path, stale):
        _remove(path)
    for entry in sorted(target.iterdir()):
        if entry.name != INCOMING:
            _remove(entry)
    for entry in sorted(incoming.iterdir()):
        _rename(entry, target / entry.name)
    _remove(incoming)
    if staged.exists():
        placed = staged.with_name(staged.name + PLACED)
        _rename(staged, placed)
        _remove(placed)


def _rename(source: Path, target: Path) -> None:
    os.rename(source, target)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copy2(source, target)
