"""Landing-zone sensor: new or changed files request their days of raw/events or raw/payments.

One code path for a local folder and S3: the `landing` resource lists both the same way. The
cursor is JSON `{key: [size, modified]}` of the files present at the last tick, so:
- a new file, or one rewritten in place, is a change, whatever its day: a late file for an old
  day re-runs that day;
- a deleted file only leaves the cursor. It requests nothing: re-ingesting its day would wipe
  rows that were loaded from it (landing files are often expired by lifecycle rules);
- the cursor is stored by Dagster, so it survives restarts, and it stays as large as the
  landing zone's listing, which every tick reads anyway.
Changed days become single-run range requests (BackfillPolicy.single_run): contiguous days are
one range, and ranges less than MAX_GAP_DAYS apart are merged, because re-ingesting a few
unchanged days costs seconds in DuckDB (and re-running a day is idempotent) while every extra
run costs a process start, a turn of the warehouse pool and its own downstream rebuild. A month
of history arriving at once is one run per source, not thirty.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import date

import dagster as dg

from data_platform.ingestion.file_formats import EVENT_FILES, PAYMENT_FILES, FileFormat
from data_platform.ingestion.files import partition_of
from data_platform.partitions import DAILY_PARTITIONS, RANGE_END_TAG, RANGE_START_TAG
from data_platform.resources.landing import LandingFile, LandingZone

FORMATS = (EVENT_FILES, PAYMENT_FILES)
MAX_GAP_DAYS = 7


def raw_key(fmt: FileFormat) -> dg.AssetKey:
    return dg.AssetKey(["raw", fmt.source])


def file_states(files: Iterable[LandingFile]) -> dict[str, list[float]]:
    return {f.key: [f.size, f.modified] for f in files}


def changed_files(files: list[LandingFile], seen: dict[str, list[float]]) -> list[LandingFile]:
    """Files that are new or whose size or modification time differ from the cursor's."""
    return [f for f in files if seen.get(f.key) != [f.size, f.modified]]


def day_ranges(days: Iterable[date], max_gap_days: int = MAX_GAP_DAYS) -> list[tuple[date, date]]:
    """Sorted (first, last) ranges covering `days`; ranges closer than max_gap_days merge."""
    ranges: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if ranges and (day - ranges[-1][1]).days <= max_gap_days:
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def range_request(
    fmt: FileFormat, first: date, last: date, files: list[LandingFile]
) -> dg.RunRequest:
    """One run of raw/<source> over [first, last]; the run key makes a retried tick idempotent."""
    states = json.dumps(sorted(file_states(files).items()))
    digest = hashlib.sha1(states.encode()).hexdigest()[:12]
    if first == last:
        selection = {"partition_key": first.isoformat()}
    else:
        selection = {"tags": {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()}}
    return dg.RunRequest(
        run_key=f"{fmt.source}:{first}..{last}:{digest}",
        asset_selection=[raw_key(fmt)],
        **selection,
    )


def requests_for(fmt: FileFormat, changed: list[LandingFile]) -> list[dg.RunRequest]:
    days = {partition_of(f.key) for f in changed}
    return [
        range_request(
            fmt, first, last, [f for f in changed if first <= partition_of(f.key) <= last]
        )
        for first, last in day_ranges(days)
    ]


def partition_files(landing: LandingZone, fmt: FileFormat) -> tuple[list[LandingFile], int]:
    """The format's files whose day is a partition, and how many wait for theirs to exist."""
    files = [f for f in landing.list_files(f"{fmt.source}/") if f.key.endswith(fmt.suffixes)]
    dated = [f for f in files if partition_of(f.key) is not None]
    valid = [
        f for f in dated if DAILY_PARTITIONS.has_partition_key(partition_of(f.key).isoformat())
    ]
    return valid, len(dated) - len(valid)


@dg.sensor(
    name="landing_zone_files",
    description="New or changed landing files -> single-run range requests of raw/events, raw/payments.",
    target=[raw_key(fmt) for fmt in FORMATS],
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
)
def landing_zone_sensor(context: dg.SensorEvaluationContext, landing: LandingZone):
    seen = json.loads(context.cursor) if context.cursor else {}
    requests: list[dg.RunRequest] = []
    present: dict[str, list[float]] = {}
    for fmt in FORMATS:
        files, waiting = partition_files(landing, fmt)
        if waiting:
            context.log.warning(
                f"{waiting} {fmt.source} file(s) have a dt that is not a partition (yet): "
                "before DATA_PLATFORM_START_DATE or in the future"
            )
        present |= file_states(files)
        requests += requests_for(fmt, changed_files(files, seen))
    context.update_cursor(json.dumps(present))
    return requests or dg.SkipReason("no new or changed landing files")
