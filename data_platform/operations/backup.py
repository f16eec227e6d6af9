"""`data-platform backup DEST`: snapshot, upload, then a manifest written last and verified.

The manifest is the backup's seal: written after every file is in place, it lists each file's
size and sha256. A backup without one (interrupted) or whose files do not match it is never
restored (restore.py checks it all before writing anything).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from data_platform.operations.backup_store import (
    BackupError,
    BackupStore,
    server_side_encryption,
    sha256_file,
)
from data_platform.operations.instance_storage import compute_logs_outside
from data_platform.operations.snapshot import (
    INSTANCE_DUMP,
    copy_instance,
    copy_settings,
    copy_warehouse,
    staged_parts,
)
from data_platform.operations.spark_snapshot import export_spark_warehouse
from data_platform.operations.staging import LOCK_FILE, held_by, open_staging, to_stderr
from data_platform.resources.duckdb_lock import LOCK_WAIT_SECONDS
from data_platform.resources.warehouse import warehouse_of
from data_platform.settings import Settings

MANIFEST = "manifest.json"
FORMAT = 1
# Put first by a backup into its destination, removed once sealed: whose staging folder on
# which host it is, so that a re-run can tell a dead backup's files from a live one's.
IN_PROGRESS = "backup-in-progress.json"


def versions() -> dict[str, str]:
    packages = ("data_platform", "dagster", "duckdb")
    return {"python": platform.python_version(), **{p: version(p) for p in packages}}


def check_empty(dest: BackupStore) -> None:
    names = dest.names()
    if MANIFEST in names:
        raise BackupError(
            f"{dest.url} is not empty: it holds a backup ({MANIFEST}); back up into a new "
            "folder or prefix"
        )
    if names:
        # What a backup killed before its manifest leaves (kill -9; on S3, any failure).
        raise BackupError(
            f"{dest.url} is not empty, and holds no {MANIFEST}: an interrupted backup? Remove "
            "what is there, or back up into a new folder or prefix"
        )


def clear_interrupted(dest: BackupStore, report: Callable[[str], None] = to_stderr) -> None:
    """Remove what a backup killed while uploading left in `dest` (no manifest: never sealed,
    never restored), when its marker says it ran here and its staging folder is no longer held.
    The same command, run again, refused such a destination ("not empty ... an interrupted
    backup?") until a person removed the files by hand. A backup still at work, or one of
    another host (whose life this one cannot see), is left to `check_empty`'s refusal."""
    names = dest.names()
    if MANIFEST in names or IN_PROGRESS not in names:
        return
    with tempfile.TemporaryDirectory() as folder:
        dest.get(IN_PROGRESS, Path(folder) / IN_PROGRESS)
        marker = json.loads((Path(folder) / IN_PROGRESS).read_text())
    if marker.get("host") != socket.gethostname():
        return
    if owner := held_by(Path(marker["staging"])):
        raise BackupError(f"a backup into {dest.url} is running ({owner}): let it end")
    report(f"backup {dest.url}: removing the files of a backup interrupted there ({marker})")
    if dest.is_s3:
        dest.delete()
    else:
        dest.discard(None)


def check_outside_instance(settings: Settings, dest: BackupStore) -> None:
    """Refuse a local destination inside DAGSTER_HOME: the next backup copied it as the
    instance's (each backup as big as all the ones before it), and a forced restore, which
    replaces that folder whole, deleted every backup kept there, newer ones included."""
    if dest.is_s3:
        return
    place, instance = Path(dest.url).resolve(), settings.dagster_home.resolve()
    if place == instance or instance in place.parents:
        raise BackupError(
            f"{dest.url} is inside DAGSTER_HOME ({settings.dagster_home}), which a backup "
            "copies whole and a forced restore replaces, backups included: back up outside it"
        )


def stage_backup(settings: Settings, staging: Path, lock_timeout: float) -> None:
    """The consistent snapshot, into a local folder: the only part that needs the warehouse.

    The instance first, then the warehouse (see snapshot.py for why this order), then the
    settings. DuckDB's lock is held only while its file is copied into `staging`; the upload and
    its verification, as slow as the store is, come after and take no lock.
    """
    copy_instance(settings, staging)
    # On Spark the DuckDB file, if any, is not the warehouse in use: not copied.
    if settings.engine == "spark":
        with warehouse_of(settings).spark() as spark:
            export_spark_warehouse(spark, staging)
    else:
        copy_warehouse(settings, staging, lock_timeout)
    copy_settings(settings, staging)


def store_backup(settings: Settings, staging: Path, dest: BackupStore) -> dict:
    """Upload what stage_backup wrote, seal it with the manifest, read it all back; returns
    the manifest. Holds nothing of the platform: writers run meanwhile."""
    files = [
        {
            "path": p.relative_to(staging).as_posix(),
            "size": p.stat().st_size,
            "sha256": sha256_file(p),
        }
        for p in sorted(staging.rglob("*"))
        if p.is_file() and p != staging / LOCK_FILE
    ]
    # After the listing of `files`: the marker is not part of the backup.
    marker = {"host": socket.gethostname(), "staging": str(staging)}
    (staging / IN_PROGRESS).write_text(json.dumps(marker))
    dest.put(staging / IN_PROGRESS, IN_PROGRESS)
    for entry in files:
        dest.put(staging / entry["path"], entry["path"])
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "instance_storage": "postgres" if (staging / INSTANCE_DUMP).exists() else "sqlite",
        "warehouse": settings.engine,
        "parts": staged_parts(staging),
        "versions": versions(),
        "files": files,
    }
    # Read back before sealing: a backup with a manifest is one the schedule's pruning counts
    # as good (and deletes an older one for), so only a verified one may have it.
    verify_stored(dest, manifest)
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    dest.put(staging / MANIFEST, MANIFEST)
    dest.remove(IN_PROGRESS)
    return manifest


def take_backup(
    settings: Settings, dest: BackupStore, lock_timeout: float = LOCK_WAIT_SECONDS
) -> dict:
    """Snapshot everything needed to resume into `dest`; returns the manifest. The staging
    folders of dead backups and restores are swept first, each named on stderr."""
    # Before the snapshot: a wrong value failed the first put, the whole snapshot taken.
    server_side_encryption(os.environ)
    check_outside_instance(settings, dest)
    clear_interrupted(dest)
    check_empty(dest)
    dest.check_writable()
    made = dest.first_missing()
    try:
        with open_staging(settings.home, "backup") as staging:
            stage_backup(settings, staging, lock_timeout)
            return store_backup(settings, staging, dest)
    except BaseException as error:
        # An unsealed backup is never restored, yet it filled the disk (a full one stayed
        # full) and its files made the same command, run again, refused as "not empty".
        try:
            dest.discard(made)
        except BackupError as left:
            raise BackupError(f"{error}; {left}") from error
        raise


def verify_stored(store: BackupStore, manifest: dict) -> None:
    """Re-read every stored file and compare it with the manifest."""
    for entry in manifest["files"]:
        if store.sha256(entry["path"]) != entry["sha256"]:
            raise BackupError(
                f"{store.url}/{entry['path']} differs from what was written: the backup is "
                "not usable, take it again"
            )


def compute_logs_left_out(settings: Settings, dest_url: str) -> str | None:
    """The line saying that a backup to `dest_url` holds none of the runs' compute logs, when
    dagster.yaml keeps them outside DAGSTER_HOME (see compute_logs_outside); else None."""
    logs = compute_logs_outside(settings.dagster_home)
    if logs is None:
        return None
    return (
        f"backup {dest_url}: runs' compute logs in {logs} (dagster.yaml compute_logs base_dir, "
        "outside DAGSTER_HOME) are not in it: restored on another machine, those runs show no "
        "logs; keep them under DAGSTER_HOME to back them up"
    )


def run_backup(settings: Settings, dest_url: str, lock_timeout: float) -> int:
    # Read first: a dagster.yaml that cannot be read is refused before anything is written.
    logs_left_out = compute_logs_left_out(settings, dest_url)
    manifest = take_backup(settings, BackupStore(dest_url), lock_timeout)
    total = sum(f["size"] for f in manifest["files"])
    if manifest["warehouse"] == "spark":
        print(f"backup {dest_url}: the warehouse exported from the Spark cluster", file=sys.stderr)
    print(
        f"backup {dest_url}: {len(manifest['files'])} files, {total} bytes, verified",
        file=sys.stderr,
    )
    if logs_left_out:
        print(logs_left_out, file=sys.stderr)
    return 0
