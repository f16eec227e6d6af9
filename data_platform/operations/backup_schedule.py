"""A daily backup as a Dagster schedule, keeping the last N; off until someone turns it on.

Off by default (STOPPED): a backup needs a destination chosen by a person, and a schedule that
fills a disk nobody watches is worse than none. Its snapshot op joins the `duckdb` pool, so it
queues behind a writing run like any other warehouse step instead of holding the file
meanwhile; its upload op does not, so writers go on while the backup travels.
"""

# No `from __future__ import annotations`: Dagster reads the op's context annotation at runtime.
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.storage.tags import RETRY_STRATEGY_TAG

from data_platform.operations.backup import (
    MANIFEST,
    check_empty,
    check_outside_instance,
    compute_logs_left_out,
    stage_backup,
    store_backup,
)
from data_platform.operations.backup_store import (
    BackupError,
    BackupStore,
    server_side_encryption,
)
from data_platform.operations.staging import UNCLAIMED_STALE_AFTER, StagingFolder, open_staging
from data_platform.partitions import WAREHOUSE_POOL
from data_platform.resources.duckdb_lock import LOCK_WAIT_SECONDS
from data_platform.settings import (
    SettingsError,
    is_whole_number,
    load_settings,
    location_refusal,
    without_userinfo,
)

DEST_VARIABLE = "DATA_PLATFORM_BACKUP_DEST"
KEEP_VARIABLE = "DATA_PLATFORM_BACKUP_KEEP"
DEFAULT_KEEP = 7
# A scheduled backup's name: the UTC time it was taken.
STAMP = "%Y%m%dT%H%M%SZ"
SCHEDULED_NAME = re.compile(r"\d{8}T\d{6}Z")
# Longer than any backup takes (as for a staging folder without an owner): an unsealed backup
# younger than this may be another run's upload still in progress.
UPLOAD_BOUND = timedelta(seconds=UNCLAIMED_STALE_AFTER)


def keep_count() -> int:
    raw = os.environ.get(KEEP_VARIABLE, "").strip() or str(DEFAULT_KEEP)
    if not is_whole_number(raw, 1):
        raise dg.Failure(f"{KEEP_VARIABLE}={raw!r} is not a count: set a whole number >= 1, e.g. 7")
    return int(raw)


def check_encryption() -> None:
    """DATA_PLATFORM_BACKUP_SSE's one line, the CLI's (backup_store's SettingsError), raised as
    this module's other settings fail: a dg.Failure, before the snapshot."""
    try:
        server_side_encryption(os.environ)
    except SettingsError as error:
        raise dg.Failure(str(error)) from None


def backup_root() -> BackupStore:
    """Where the schedule's backups go; a run launched by hand without it stops at once, in
    one line (it took the whole snapshot, then failed with a bare KeyError)."""
    dest = os.environ.get(DEST_VARIABLE, "").strip()
    if not dest:
        raise dg.Failure(f"{DEST_VARIABLE} is not set: set it to a folder or s3://bucket/prefix")
    if refusal := location_refusal(dest):
        raise dg.Failure(f"{DEST_VARIABLE}={without_userinfo(dest)!r} {refusal}")
    root = BackupStore(dest)
    try:
        # As the CLI does: a file or an unwritable folder failed the upload, after the snapshot.
        root.check_writable()
    except BackupError as error:
        raise dg.Failure(f"{DEST_VARIABLE}: {error}") from None
    return root


def prune(root: BackupStore, keep: int, warn: Callable[[str], None]) -> list[str]:
    """Delete all but the `keep` newest complete backups of the schedule under root; returns
    what was deleted, and `warn`s of a backup that could not be.

    The schedule's backups are named by their UTC time (STAMP), so they sort by age; anything
    else under root (a backup taken by hand, a folder of notes) is not the schedule's to count
    or delete. Only sealed backups count towards `keep`; an unsealed one older than the oldest
    kept is an interrupted leftover once older than UPLOAD_BOUND. Younger, it may be uploading:
    two backup_job runs overlap (only their snapshots queue in the pool), and a prune by the
    later one emptied the earlier one's folder under its upload. Its manifest, put there after,
    would seal nothing: such a folder does not count as sealed (`_sealed`).
    """
    names = root.names()
    # A backup killed in its first upload has no file yet, only that upload.
    folders = {n.split("/", 1)[0] for n in [*names, *root.unfinished()] if "/" in n}
    backups = sorted(f for f in folders if SCHEDULED_NAME.fullmatch(f))
    sealed = [b for b in backups if _sealed(b, names)]
    kept = sealed[-keep:]
    doomed = [
        b
        for b in backups
        if b not in kept and (not kept or b < kept[0]) and (b in sealed or _stale(b))
    ]
    deleted = []
    for name in doomed:
        try:
            root.child(name).delete()
        except BackupError as error:
            warn(str(error))
        else:
            deleted.append(name)
    return deleted


def _sealed(backup: str, names: list[str]) -> bool:
    """A manifest beside the files it seals: a manifest alone (its folder emptied by a prune
    while it was uploaded) seals nothing, and no restore takes it."""
    files = [n for n in names if n.startswith(f"{backup}/")]
    return f"{backup}/{MANIFEST}" in files and len(files) > 1


def _stale(backup: str) -> bool:
    taken = datetime.strptime(backup, STAMP).replace(tzinfo=UTC)
    return datetime.now(UTC) - taken > UPLOAD_BOUND


# Each run's snapshot, held (its folder locked) from the snapshot op to the upload op: both run
# in the run's process (in_process_executor), and a process that dies drops its locks, so the
# next backup sweeps what it held.
_SNAPSHOTS: dict[str, StagingFolder] = {}


@dg.op(pool=WAREHOUSE_POOL)
def snapshot_platform(context: dg.OpExecutionContext) -> None:
    """The consistent snapshot, in the `duckdb` pool: it queues behind a writing run like any
    other warehouse step, and holds the slot only while it copies (seconds, locally). The
    staging folders of dead backups and restores are swept first, each in the run's log."""
    # A wrong setting stops the run before the copy, not after it.
    root = backup_root()
    keep_count()
    check_encryption()
    settings = load_settings()
    try:
        check_outside_instance(settings, root)
    except BackupError as error:
        raise dg.Failure(f"{DEST_VARIABLE}: {error}") from None
    staging = open_staging(settings.home, "backup", f"{context.run_id}-", context.log.info)
    try:
        # The CLI's default wait (its --timeout): a run of the schedule has no option to say it.
        stage_backup(settings, staging.path, LOCK_WAIT_SECONDS)
    except BaseException:
        staging.remove()
        raise
    _SNAPSHOTS[context.run_id] = staging


@dg.op(ins={"snapshot": dg.In(dg.Nothing)})
def upload_backup(context: dg.OpExecutionContext) -> None:
    """Upload, seal, verify, prune: outside the pool, since a slow store held every warehouse
    step back for as long as the upload took when this was one op with the snapshot."""
    staging = _SNAPSHOTS.pop(context.run_id, None)
    if staging is None:
        raise dg.Failure(
            "this run took no snapshot in this process (the upload re-executed alone?): "
            "launch backup_job whole"
        )
    try:
        root = backup_root()
        name = datetime.now(UTC).strftime(STAMP)
        check_empty(root.child(name))
        settings = load_settings()
        logs_left_out = compute_logs_left_out(settings, root.child(name).url)
        manifest = store_backup(settings, staging.path, root.child(name))
    finally:
        staging.remove()
    context.log.info(f"backup {root.child(name).url}: {len(manifest['files'])} files, verified")
    if logs_left_out:
        context.log.warning(logs_left_out)
    for deleted in prune(root, keep_count(), context.log.warning):
        context.log.info(f"deleted the old backup {deleted} (keeping {keep_count()})")


# In the run's process, whatever executor the Definitions use: the snapshot is a local folder
# that the upload must find (a Celery worker on another machine would not). For the same
# reason a retry (the daemon retries a run whose process died) takes its snapshot again: the
# default, from the failed step, would run the upload alone, in a process holding nothing.
@dg.job(
    description="Back up the warehouse, the instance and the settings; keep the last N.",
    executor_def=dg.in_process_executor,
    tags={RETRY_STRATEGY_TAG: "ALL_STEPS"},
)
def backup_job() -> None:
    upload_backup(snapshot=snapshot_platform())


@dg.schedule(
    job=backup_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description=(
        f"Daily at 03:00 UTC, the backup job. Off by default: it needs a destination chosen by a "
        f"person. Set {DEST_VARIABLE} (a folder, or s3://bucket/prefix) first, then turn it on; "
        "without it each tick is skipped, saying so."
    ),
)
def daily_backup(context: dg.ScheduleEvaluationContext):
    if not os.environ.get(DEST_VARIABLE, "").strip():
        return dg.SkipReason(f"set {DEST_VARIABLE} to a folder or s3://bucket/prefix for backups")
    return dg.RunRequest()
