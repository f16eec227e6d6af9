"""A daily backup as a Dagster schedule, keeping the last N; off until someone turns it on.

Off by default (STOPPED): a backup needs a destination chosen by a person, and a schedule that
fills a disk nobody watches is worse than none. Its op joins the `duckdb` pool, so it queues
behind a writing run like any other warehouse step instead of holding the file meanwhile.
"""

# No `from __future__ import annotations`: Dagster reads the op's context annotation at runtime.
import os
import re
from datetime import UTC, datetime

import dagster as dg

from data_platform.operations.backup import MANIFEST, take_backup
from data_platform.operations.backup_store import BackupStore
from data_platform.partitions import WAREHOUSE_POOL
from data_platform.settings import load_settings

DEST_VARIABLE = "DATA_PLATFORM_BACKUP_DEST"
KEEP_VARIABLE = "DATA_PLATFORM_BACKUP_KEEP"
DEFAULT_KEEP = 7
# A scheduled backup's name: the UTC time it was taken.
STAMP = "%Y%m%dT%H%M%SZ"
SCHEDULED_NAME = re.compile(r"\d{8}T\d{6}Z")


def keep_count() -> int:
    raw = os.environ.get(KEEP_VARIABLE, "").strip() or str(DEFAULT_KEEP)
    if not raw.isdigit() or int(raw) < 1:
        raise dg.Failure(f"{KEEP_VARIABLE}={raw!r} is not a count: set a whole number >= 1, e.g. 7")
    return int(raw)


def prune(root: BackupStore, keep: int) -> list[str]:
    """Delete all but the `keep` newest complete backups of the schedule under root; returns
    what was deleted.

    The schedule's backups are named by their UTC time (STAMP), so they sort by age; anything
    else under root (a backup taken by hand, a folder of notes) is not the schedule's to count
    or delete. Only sealed backups (with a manifest) count towards `keep`; an unsealed one older
    than the oldest kept is an interrupted leftover.
    """
    names = root.names()
    folders = {n.split("/", 1)[0] for n in names if "/" in n}
    backups = sorted(f for f in folders if SCHEDULED_NAME.fullmatch(f))
    sealed = [b for b in backups if f"{b}/{MANIFEST}" in names]
    kept = sealed[-keep:]
    doomed = [b for b in backups if b not in kept and (not kept or b < kept[0])]
    for name in doomed:
        root.child(name).delete()
    return doomed


@dg.op(pool=WAREHOUSE_POOL)
def backup_platform(context: dg.OpExecutionContext) -> None:
    root = BackupStore(os.environ[DEST_VARIABLE])
    name = datetime.now(UTC).strftime(STAMP)
    manifest = take_backup(load_settings(), root.child(name))
    context.log.info(f"backup {root.child(name).url}: {len(manifest['files'])} files, verified")
    for deleted in prune(root, keep_count()):
        context.log.info(f"deleted the old backup {deleted} (keeping {keep_count()})")


@dg.job(description="Back up the warehouse, the instance and the settings; keep the last N.")
def backup_job() -> None:
    backup_platform()


@dg.schedule(
    job=backup_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def daily_backup(context: dg.ScheduleEvaluationContext):
    if not os.environ.get(DEST_VARIABLE, "").strip():
        return dg.SkipReason(f"set {DEST_VARIABLE} to a folder or s3://bucket/prefix for backups")
    return dg.RunRequest()
