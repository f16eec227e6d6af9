"""Landing-zone sensor: new or changed files request their days of raw/events or raw/payments.

What a tick lists. One code path for a local folder and S3: the `landing` resource lists both
the same way. Per source, a tick lists
1. the day folders (`events/dt=YYYY-MM-DD/`; on S3 one request per 1,000 days, Delimiter='/').
   A day folder the cursor does not know yet is listed in full: a recent one at once, older
   ones oldest first, about NEW_FILES files' worth a tick (estimated from the days listed so
   far), the rest left unknown in the cursor for the next ticks. A first tick on a bucket with
   history (a first deploy, a reset cursor, a restored archive) would otherwise list it all at
   once, and a tick past Dagster's 60 s sensor timeout saves no cursor: every tick would repeat
   it, for good (36 s for 20,000 files on moto S3). Each tick requests the days it listed;
2. the files of the RECENT_DAYS days up to the newest day folder, every tick: that is where
   files land, so a file added, rewritten or deleted there is seen at the next tick;
3. the files of the next older days in a rotation, about SWEEP_FILES files' worth (counted from
   the cursor), resuming where the previous tick stopped.
Days listed together are one key range (S3: StartAfter, stopping after the last day's keys), so
a quiet tick reads a few pages whatever the history: the folders, the recent days and
~SWEEP_FILES keys, where listing every file grew by one S3 request per 1,000 files, forever.
The price: a file landed late, or rewritten, in a day folder that already exists and is older
than RECENT_DAYS is seen when the rotation reaches its day, within ceil(files in the older days
/ SWEEP_FILES) ticks: 10 ticks (under a minute at the 5 s interval) with 20,000 files, 100 ticks
(8-9 minutes) with 200,000. `build_landing_sensor(sweep_files=...)` trades tick cost for that
delay. (S3 event notifications to a queue would make it immediate at any size; that is a
deployment choice outside this sensor.)

What is a change. A day's state is (files, latest second a file was written there, 32-bit digest
of every (key, size, modified, version: S3's ETag, a local file's inode:ctime)). The latest is
by the store's own clock: S3's LastModified, a local file's ctime, not its mtime, which `mv`,
`cp -p` and `rsync -a` carry over from elsewhere. A listed day changed if its files or digest
moved, unless it only lost files (fewer files, none written after the day's latest). So:
- a new file, or one rewritten in place, is a change, whatever its day: a late file for an old
  day re-runs that day, and so do files replaced by fewer new ones (a compaction); so is one
  corrected with its size and time kept (`cp -p`, `rsync -a`), by its version;
- a deleted file requests nothing: re-ingesting its day would wipe rows that were loaded from it
  (landing files are often expired by lifecycle rules). Except in the day folders of today and
  yesterday (UTC), which no lifecycle rule can have touched yet (S3's shortest, one day, acts at
  the next midnight UTC): a file gone from them was withdrawn (a bad delivery, the originals of
  a compaction), and its rows must go with it, so its day re-runs, an emptied one too. A day
  that, between two listings, loses files and gains fewer, older ones (`rsync -a --delete` of a
  corrected day, `mv` of compacted files) did change: by their mtime it was taken for deletions
  only, the new files never loaded and the deleted ones' rows kept. Blind spot left, in older
  days: files gained within the second of the day's latest, after the listing that saw it.

The cursor. JSON with, per source, the day states packed (14 bytes a day, base64: ~19 bytes, so
~6.8 KB a year of daily folders) and where the rotation stands. It grows with days, not files,
and a day whose folder is gone (expired) leaves it. Dagster stores the cursor in the sensor's
state and again in every tick's row (a tick every 5 s; skipped ticks are kept a day, others
forever by default). Dagster 1.13 neither checks nor documents a cursor size limit (dagster
issue #18402); the columns are TEXT: unbounded on SQLite, 1 GB on PostgreSQL, but 64 KB on
MySQL (dagster-mysql), where a longer tick body is cut off (dagster PR #33229). 64 KB is the
limit to stay under: the sensor warns from CURSOR_WARN_BYTES (48 KB, about 3.5 years of two
daily sources); expiring old landing files keeps it small. The previous cursor, `{key: [size, modified]}`
of every file, was 1.3 MB with 20,000 files, copied into every tick row (~7.5 GB a day); it is
converted on first read, so the upgrade requests nothing.

Changed days become single-run range requests (BackfillPolicy.single_run): contiguous changed
days are one range, so a month of history arriving at once is one run per source, not thirty.
Ranges with an unchanged day between them stay apart: a run re-ingests every day of its range
from the files there now, and an unchanged day may have lost files to expiry (which requests
nothing, above); merged into a range it lost the rows they had loaded.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import math
import re
import struct
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from data_platform.ingestion.file_formats import EVENT_FILES, PAYMENT_FILES, FileFormat
from data_platform.ingestion.files import day_bounds, partition_of
from data_platform.partitions import DAILY_PARTITIONS, RANGE_END_TAG, RANGE_START_TAG
from data_platform.resources.landing import LandingFile, LandingZone
from data_platform.settings import FIRST_DAY

FORMATS = (EVENT_FILES, PAYMENT_FILES)
RECENT_DAYS = 3
# Two S3 pages of 1,000 keys a tick: 20,000 files of history are re-read every 10 ticks.
SWEEP_FILES = 2_000
# Ten S3 pages of day folders the cursor does not know, a tick: 20,000 files in two ticks.
NEW_FILES = 10_000
CURSOR_WARN_BYTES = 48_000
# A quiet tick lists a few pages (0.1 s locally): ticking every 5 s rather than 15 s takes
# ~5 s off the average wait between a file landing and its run being requested.
LANDING_INTERVAL_SECONDS = 5
CURSOR_VERSION = 2
# Day folders this young (today, yesterday) cannot have lost files to expiry: see the docstring.
WITHDRAWN_DAYS = 2
# day (days since 1970, to 2149), files, latest modified (epoch s, to 2106), digest
_DAY_RECORD = struct.Struct(">HIII")
_LATEST_STAMP = 2**32 - 1
_DAY_FOLDER = re.compile(r"^[^/]+/dt=(\d{4}-\d{2}-\d{2})/$")


@dataclass(frozen=True)
class DayState:
    """What the cursor keeps of a source's files in one day folder."""

    files: int
    modified: int  # when a file was last written here (LandingFile.changed), epoch s rounded up
    digest: int  # 32 bits of BLAKE2b over every (key, size, modified, version)
    # The digest as computed before files had versions (S3 ETags, then local inode:ctime),
    # never stored: a cursor written then is matched against it, so the upgrade requests nothing.
    unversioned_digest: int = field(default=0, compare=False)


NO_FILES = DayState(0, 0, 0)


@dataclass(frozen=True)
class SourceCursor:
    """One source's part of the cursor: every known day folder, the rotation's last day, and
    how many runs the source has requested (see range_request)."""

    days: dict[date, DayState] = field(default_factory=dict)
    swept_to: date | None = None
    requests: int = 0


@dataclass(frozen=True)
class SourceScan:
    """One tick's outcome for a source."""

    cursor: SourceCursor
    changed: dict[date, DayState]
    waiting: list[date]  # day folders that are not partitions (yet)
    deferred: int = 0  # older day folders the cursor does not know, left for the next ticks
    # Keys directly under the source's folder that are no day folder: never read by anything.
    astray: list[str] = field(default_factory=list)
    # Every day folder the cursor knows is gone at once: the zone is out of reach (an unmounted
    # disk leaves its empty mount point), not expired; the cursor is kept as it was.
    vanished: bool = False


def raw_key(fmt: FileFormat) -> dg.AssetKey:
    return dg.AssetKey(["raw", fmt.source])


def day_states(files: Iterable[LandingFile]) -> dict[date, DayState]:
    """The state of each day the files are in (files without a dt are left out)."""
    by_day: dict[date, list[LandingFile]] = defaultdict(list)
    for f in files:
        if (day := partition_of(f.key)) is not None:
            by_day[day].append(f)
    return {day: _day_state(day_files) for day, day_files in by_day.items()}


def _day_state(files: list[LandingFile]) -> DayState:
    digest, unversioned = hashlib.blake2b(digest_size=4), hashlib.blake2b(digest_size=4)
    for f in sorted(files, key=lambda f: f.key):
        line = f"{f.key}\t{f.size}\t{f.modified!r}"
        unversioned.update(f"{line}\n".encode())
        digest.update((f"{line}\t{f.version}\n" if f.version else f"{line}\n").encode())
    # Packed in 32 bits: a file stamped before 1970 or after 2106 (a wrong clock, a copied
    # archive) would fail every tick of both sources. The digest keeps the exact time.
    latest = min(max(math.ceil(max(_written(f) for f in files)), 0), _LATEST_STAMP)
    return DayState(
        len(files),
        latest,
        int.from_bytes(digest.digest()),
        int.from_bytes(unversioned.digest()),
    )


def _written(f: LandingFile) -> float:
    """When the store last wrote the file: its ctime locally (an mtime may be carried over from
    another copy, or set ahead by a producer's clock), S3's LastModified."""
    return f.modified if f.changed is None else f.changed


def _stored(state: DayState) -> tuple[int, int, int]:
    """What the cursor keeps of a day's state."""
    return state.files, state.modified, state.digest


def day_changed(old: DayState | None, new: DayState, young: bool = False) -> bool:
    """New or rewritten files; a day that only lost files (fewer, none newer) did not change,
    unless it is `young` (see WITHDRAWN_DAYS): then its files were withdrawn, not expired.

    The same files and digest are the same listing, whatever the latest time: a cursor written
    when it was the latest mtime (or before versions) requests nothing on the upgrade."""
    old = old or NO_FILES
    if new.files == old.files and old.digest in {new.digest, new.unversioned_digest or new.digest}:
        return False
    return young or not (new.files < old.files and new.modified <= old.modified)


def is_young(day: date, today: date | None) -> bool:
    """Whether `day`'s folder is too young for any of its files to have expired."""
    return today is not None and (today - day).days < WITHDRAWN_DAYS


def folder_day(folder: str) -> date | None:
    """The dt of a day folder such as `events/dt=2026-01-05/`, or None."""
    match = _DAY_FOLDER.match(folder)
    try:
        return date.fromisoformat(match.group(1)) if match else None
    except ValueError:
        return None


def plan_listing(
    present: Sequence[date],
    known: Mapping[date, DayState],
    swept_to: date | None,
    recent_days: int,
    sweep_files: int,
) -> tuple[list[date], date | None]:
    """The days to list this tick, sorted, and the last day the rotation reached.

    `present` are the sorted day folders. Listed: the days within `recent_days` of the newest,
    the days `known` (the cursor) lacks, and the older known days that follow `swept_to`,
    wrapping around, until their files (at least one per day) reach `sweep_files`.
    """
    if not present:
        return [], None
    recent = {d for d in present if (present[-1] - d).days < recent_days}
    older = [d for d in present if d not in recent and d in known]
    start = bisect.bisect_right(older, swept_to) if swept_to else 0
    swept: list[date] = []
    budget = sweep_files
    for day in older[start:] + older[:start]:
        if budget <= 0:
            break
        swept.append(day)
        budget -= max(known[day].files, 1)
    listed = recent | {d for d in present if d not in known} | set(swept)
    return sorted(listed), swept[-1] if swept else swept_to


def listing_ranges(days: Sequence[date], present: Sequence[date]) -> list[tuple[date, date]]:
    """`days` (sorted, all in `present`) as runs of neighbours in `present`: one listing each."""
    position = {day: i for i, day in enumerate(present)}
    runs: list[tuple[date, date]] = []
    for day in days:
        if runs and position[day] == position[runs[-1][1]] + 1:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def day_ranges(days: Iterable[date]) -> list[tuple[date, date]]:
    """Sorted (first, last) ranges of consecutive days covering `days`."""
    ranges: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if ranges and (day - ranges[-1][1]).days == 1:
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def pack_days(days: Mapping[date, DayState]) -> str:
    records = (
        _DAY_RECORD.pack((day - FIRST_DAY).days, s.files, s.modified, s.digest)
        for day, s in sorted(days.items())
    )
    return base64.b64encode(b"".join(records)).decode()


def unpack_days(text: str) -> dict[date, DayState]:
    return {
        FIRST_DAY + timedelta(days=n): DayState(files, modified, digest)
        for n, files, modified, digest in _DAY_RECORD.iter_unpack(base64.b64decode(text))
    }


def encode_cursor(sources: Mapping[str, SourceCursor]) -> str:
    parts = {
        source: {
            "days": pack_days(c.days),
            "swept_to": c.swept_to.isoformat() if c.swept_to else None,
            "requests": c.requests,
        }
        for source, c in sources.items()
    }
    return json.dumps({"v": CURSOR_VERSION, **parts}, separators=(",", ":"))


class UnreadableCursor(ValueError):
    """A cursor this sensor did not write (set by hand, cut short)."""


def decode_cursor(text: str | None) -> dict[str, SourceCursor]:
    """The cursor's sources; the previous version's `{key: [size, modified]}` is converted.

    A cursor set by hand that is not one the sensor writes failed every tick with a parser's
    traceback: it raises one line saying what to do instead. Not read as no cursor, which
    lists every day folder and requests each again: a person's deliberate act, undone silently.
    """
    try:
        return _decoded_cursor(text)
    except (ValueError, TypeError, KeyError, AttributeError, struct.error) as error:
        raise UnreadableCursor(
            f"the landing sensor's cursor is not one it writes ({type(error).__name__}: "
            f"{error}; it starts {(text or '')[:40]!r}): set back the one it wrote, or delete it "
            "(`dagster sensor cursor landing_zone_files --delete -w workspace.yaml`) to list "
            "every day folder again, which requests every landed day once more"
        ) from None


def _decoded_cursor(text: str | None) -> dict[str, SourceCursor]:
    stored = json.loads(text) if text else {}
    if stored.get("v") != CURSOR_VERSION:
        files = [LandingFile(key, size, modified) for key, (size, modified) in stored.items()]
        return {
            fmt.source: SourceCursor(
                day_states(f for f in files if f.key.startswith(f"{fmt.source}/"))
            )
            for fmt in FORMATS
        }
    sources = {source: part for source, part in stored.items() if source != "v"}
    # A source misspelt would leave the real one without a cursor: every day requested again.
    if unknown := set(sources) - {fmt.source for fmt in FORMATS}:
        raise ValueError(f"no source named {', '.join(sorted(unknown))}")
    decoded = {
        source: SourceCursor(
            unpack_days(part["days"]),
            date.fromisoformat(part["swept_to"]) if part["swept_to"] else None,
            part.get("requests", 0),
        )
        for source, part in sources.items()
    }
    if any(type(c.requests) is not int for c in decoded.values()):
        raise ValueError("requests is not a whole number")
    return decoded


def format_files(
    landing: LandingZone, fmt: FileFormat, start_after: str = "", end_before: str | None = None
) -> list[LandingFile]:
    """The files in the source's day folders, optionally within a key range: every one, since
    ingestion dead-letters those it does not read by their name."""
    return [
        f
        for f in landing.list_files(f"{fmt.source}/", start_after, end_before)
        if partition_of(f.key) is not None
    ]


def list_days(
    landing: LandingZone, fmt: FileFormat, days: Sequence[date], present: Sequence[date]
) -> tuple[dict[date, DayState], int]:
    """The states of `days` (a day without files has NO_FILES), and how many files were read."""
    listed, read = dict.fromkeys(days, NO_FILES), 0
    for first, last in listing_ranges(days, present):
        files = format_files(landing, fmt, *day_bounds(fmt.source, first, last))
        read += len(files)
        listed |= {day: state for day, state in day_states(files).items() if day in listed}
    return listed, read


def list_unknown_days(
    landing: LandingZone,
    fmt: FileFormat,
    unknown: Sequence[date],
    present: Sequence[date],
    budget: int,
) -> dict[date, DayState]:
    """The oldest of `unknown` (sorted), listed until about `budget` files are read.

    Their sizes are unknown until listed, so the first listing is one day and each next one
    as many days as the rest of the budget holds at the files a day read so far. A listed day
    counts as at least one file (an emptied folder still costs a listing), so empty days do not
    pull every other day into one tick. At least one day is listed, whatever it holds, so the
    days always move on.
    """
    listed: dict[date, DayState] = {}
    read = 0
    while len(listed) < len(unknown) and (not listed or max(read, len(listed)) < budget):
        rest = unknown[len(listed) :]
        cost = max(read, len(listed))
        take = 1 if not listed else max(1, int((budget - cost) * len(listed) / cost))
        states, files = list_days(landing, fmt, rest[:take], present)
        listed |= states
        read += files
    return listed


def scan_source(
    landing: LandingZone,
    fmt: FileFormat,
    previous: SourceCursor,
    partition_keys: set[str],
    recent_days: int,
    sweep_files: int,
    new_files: int = NEW_FILES,
    today: date | None = None,
) -> SourceScan:
    """List what plan_listing picks, older unknown days within `new_files`, and compare it
    with the cursor's day states; a young day (`is_young` by `today`) whose folder is gone with
    its files, as S3 drops an emptied one, changed to no files."""
    entries = landing.list_entries(f"{fmt.source}/")
    dated = [d for f in entries if (d := folder_day(f))]
    astray = [entry for entry in entries if folder_day(entry) is None]
    present = [d for d in dated if d.isoformat() in partition_keys]
    waiting = [d for d in dated if d.isoformat() not in partition_keys]
    if not present and any(state.files for state in previous.days.values()):
        # Forgotten, every day came back as new when the folder did: the whole history was
        # requested, and a day that had lost files to expiry was re-ingested without their rows.
        return SourceScan(previous, {}, waiting, astray=astray, vanished=True)
    days, swept_to = plan_listing(
        present, previous.days, previous.swept_to, recent_days, sweep_files
    )
    # The days before the recent ones, as plan_listing counts them.
    older_until = present[-1] - timedelta(days=recent_days) if present else date.min
    unknown = [d for d in days if d not in previous.days and d <= older_until]
    known = [d for d in days if d in previous.days or d > older_until]
    listed, _ = list_days(landing, fmt, known, present)
    unknown_listed = list_unknown_days(landing, fmt, unknown, present, new_files)
    listed |= unknown_listed
    changed = {
        d: s for d, s in listed.items() if day_changed(previous.days.get(d), s, is_young(d, today))
    }
    changed |= {
        d: NO_FILES
        for d, s in previous.days.items()
        if s.files and d not in present and is_young(d, today)
    }
    kept = {d: previous.days[d] for d in present if d in previous.days}
    deferred = len(unknown) - len(unknown_listed)
    return SourceScan(SourceCursor(kept | listed, swept_to), changed, waiting, deferred, astray)


def range_request(
    fmt: FileFormat,
    first: date,
    last: date,
    states: Mapping[date, DayState],
    previous: Mapping[date, DayState],
    serial: int,
) -> dg.RunRequest:
    """One run of raw/<source> over [first, last]; the run key makes a retried tick idempotent.

    Dagster never runs a key twice. The key names each day's move (the state before and after)
    and the source's request count (`serial`, from the cursor): a tick retried from the same
    cursor repeats its keys, but a move made again (a day rewritten A->B, put back to A with
    `cp -p`, rewritten to B again) is a new request, not one Dagster skips, its bad rows kept."""
    moves = sorted(
        (d.isoformat(), *_stored(previous.get(d, NO_FILES)), *_stored(s)) for d, s in states.items()
    )
    digest = hashlib.sha1(json.dumps(moves).encode()).hexdigest()[:12]
    if first == last:
        selection = {"partition_key": first.isoformat()}
    else:
        selection = {"tags": {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()}}
    return dg.RunRequest(
        run_key=f"{fmt.source}:{first}..{last}:{digest}:{serial}",
        asset_selection=[raw_key(fmt)],
        **selection,
    )


def requests_for(
    fmt: FileFormat,
    changed: Mapping[date, DayState],
    previous: Mapping[date, DayState],
    serial: int = 0,
) -> list[dg.RunRequest]:
    """The runs of the changed days, numbered on from `serial`."""
    return [
        range_request(
            fmt,
            first,
            last,
            {d: s for d, s in changed.items() if first <= d <= last},
            previous,
            serial + i,
        )
        for i, (first, last) in enumerate(day_ranges(changed))
    ]


def build_landing_sensor(
    recent_days: int = RECENT_DAYS, sweep_files: int = SWEEP_FILES, new_files: int = NEW_FILES
) -> dg.SensorDefinition:
    """The landing sensor with its listing budget (see the module's docstring)."""

    @dg.sensor(
        name="landing_zone_files",
        description=(
            "New or changed landing files -> single-run range requests of raw/events, raw/payments."
        ),
        target=[raw_key(fmt) for fmt in FORMATS],
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=LANDING_INTERVAL_SECONDS,
    )
    def landing_zone_sensor(context: dg.SensorEvaluationContext, landing: LandingZone):
        previous = decode_cursor(context.cursor)
        partition_keys = set(DAILY_PARTITIONS.get_partition_keys())
        today = datetime.now(UTC).date()
        requests: list[dg.RunRequest] = []
        sources: dict[str, SourceCursor] = {}
        for fmt in FORMATS:
            before = previous.get(fmt.source, SourceCursor())
            scan = scan_source(
                landing, fmt, before, partition_keys, recent_days, sweep_files, new_files, today
            )
            if scan.vanished:
                context.log.warning(
                    f"no {fmt.source} day folder is listed, where the cursor knows "
                    f"{len(before.days)}: is the landing zone ({landing.url}) unmounted or "
                    "moved? Its cursor is kept until day folders are listed again"
                )
            if scan.deferred:
                context.log.info(
                    f"{scan.deferred} older {fmt.source} day folder(s) not listed yet: the next "
                    f"ticks list them, oldest first, ~{new_files:,} files a tick"
                )
            if scan.waiting:
                context.log.warning(
                    f"{len(scan.waiting)} {fmt.source} day folder(s) have a dt that is not a "
                    "partition (yet): before DATA_PLATFORM_START_DATE or in the future: "
                    + ", ".join(d.isoformat() for d in scan.waiting[:5])
                )
            if scan.astray:
                # Outside every day folder a file has no partition: no run reads it, so it is
                # in no table, no dead letter and no check. Said every tick until it is moved.
                context.log.warning(
                    f"{len(scan.astray)} key(s) under {fmt.source}/ are outside any day folder "
                    f"({fmt.source}/dt=YYYY-MM-DD/) and are never loaded: move each file into "
                    "the folder of the day it arrived: " + ", ".join(scan.astray[:5])
                )
            made = requests_for(fmt, scan.changed, before.days, before.requests)
            sources[fmt.source] = replace(scan.cursor, requests=before.requests + len(made))
            requests += made
        cursor = encode_cursor(sources)
        if len(cursor) > CURSOR_WARN_BYTES:
            context.log.warning(
                f"the landing sensor's cursor is {len(cursor):,} bytes (it grows ~19 bytes per "
                "day folder): Dagster on MySQL stores at most 64 KB; expire old landing files"
            )
        context.update_cursor(cursor)
        return requests or dg.SkipReason("no new or changed landing files")

    return landing_zone_sensor


landing_zone_sensor = build_landing_sensor()
