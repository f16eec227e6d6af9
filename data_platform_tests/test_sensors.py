"""The landing-zone and source-database sensors, against real files (local and S3) and SQLite."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import boto3
import dagster as dg
import pytest
import sqlalchemy as sa

from data_platform.assets.raw import RAW_FILE_ASSETS, RAW_SOURCE_TABLE_ASSETS
from data_platform.automation import landing_sensor
from data_platform.automation.landing_sensor import (
    NO_FILES,
    SourceCursor,
    build_landing_sensor,
    day_bounds,
    day_ranges,
    day_states,
    decode_cursor,
    encode_cursor,
    format_files,
    landing_zone_sensor,
)
from data_platform.automation.source_database_sensor import (
    SETTLE_AFTER,
    SETTLING_TAG,
    TABLES,
    high_water_marks,
    source_database_sensor,
)
from data_platform.resources.landing import LandingFile, LandingZone
from data_platform.simulator import SimulationConfig, simulate
from data_platform_tests.bench_landing import s3_listing
from data_platform_tests.helpers import RANGE_TAGS, put_lines

EVENTS = dg.AssetKey(["raw", "events"])
RESOURCE_KEYS = ("warehouse", "landing", "source_database")


@pytest.fixture(params=["local", "s3"])
def landing(request, resources) -> LandingZone:
    return (
        resources["landing"] if request.param == "local" else request.getfixturevalue("s3_landing")
    )


def delete(landing: LandingZone, key: str) -> None:
    if not landing.is_s3:
        (Path(landing.url) / key).unlink()
        return
    url = urlparse(landing.url)
    boto3.client("s3").delete_object(Bucket=url.netloc, Key=f"{url.path.strip('/')}/{key}")


def tick(sensor, cursor: str | None, **resources):
    """One evaluation, as the daemon runs it: a fresh context from the stored cursor."""
    defs = dg.Definitions(
        assets=[*RAW_FILE_ASSETS, *RAW_SOURCE_TABLE_ASSETS],
        sensors=[sensor],
        resources={name: dg.ResourceDefinition.none_resource() for name in RESOURCE_KEYS},
    )
    with dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(),
        cursor=cursor,
        resources=resources,
        definitions=defs,
    ) as context:
        return sensor.evaluate_tick(context)


def requested(result) -> list[tuple[str, str, str]]:
    """(asset, first day, last day) of each run request."""
    found = []
    for request in result.run_requests:
        (key,) = request.asset_selection
        if request.partition_key:
            first = last = request.partition_key
        else:
            first, last = (request.tags[tag] for tag in RANGE_TAGS)
        found.append((key.path[1], first, last))
    return sorted(found)


def file_counts(days) -> dict[str, int]:
    return {day.isoformat(): state.files for day, state in days.items()}


def events_file(landing, tmp_path, day: str, name: str = "a.jsonl", lines: int = 1) -> str:
    key = f"events/dt={day}/{name}"
    put_lines(landing, key, [json.dumps({"event_id": f"e{i}"}) for i in range(lines)], tmp_path)
    return key


def test_many_new_days_are_one_range_request_per_source(landing, tmp_path):
    for day in ("2026-01-01", "2026-01-02", "2026-01-03", "2026-01-05"):
        events_file(landing, tmp_path, day)
    put_lines(landing, "payments/dt=2026-01-02/p.csv", ["payment_id", "p1"], tmp_path)
    # A file ingestion does not read is in its day (to be dead-lettered); a folder without a dt
    # is in none.
    put_lines(landing, "events/dt=2026-01-03/notes.txt", ["not a landing file"], tmp_path)
    put_lines(landing, "events/undated/a.jsonl", ["{}"], tmp_path)

    result = tick(landing_zone_sensor, None, landing=landing)

    assert requested(result) == [
        ("events", "2026-01-01", "2026-01-03"),
        ("events", "2026-01-05", "2026-01-05"),
        ("payments", "2026-01-02", "2026-01-02"),
    ]
    request = next(r for r in result.run_requests if r.asset_selection == [EVENTS])
    assert request.run_key and not request.partition_key  # the range 01-01..01-03
    # The cursor holds a state per day folder (files counted), not per file.
    cursor = decode_cursor(result.cursor)
    assert file_counts(cursor["events"].days) == {
        "2026-01-01": 1, "2026-01-02": 1, "2026-01-03": 2, "2026-01-05": 1
    }  # fmt: skip
    assert file_counts(cursor["payments"].days) == {"2026-01-02": 1}


def test_late_changed_and_deleted_files_across_restarts(landing, tmp_path):
    for day in ("2026-01-03", "2026-01-04"):
        events_file(landing, tmp_path, day)
    cursor = tick(landing_zone_sensor, None, landing=landing).cursor

    # A restart: a new context (and instance) from the stored cursor sees nothing new.
    quiet = tick(landing_zone_sensor, cursor, landing=landing)
    assert quiet.run_requests == [] and quiet.skip_message
    assert quiet.cursor == cursor

    # A late file for an old day re-runs that day only.
    events_file(landing, tmp_path, "2026-01-01", name="late-20260104.jsonl")
    late = tick(landing_zone_sensor, cursor, landing=landing)
    assert requested(late) == [("events", "2026-01-01", "2026-01-01")]

    # A file rewritten in place (another size) re-runs its day.
    events_file(landing, tmp_path, "2026-01-04", lines=3)
    rewritten = tick(landing_zone_sensor, late.cursor, landing=landing)
    assert requested(rewritten) == [("events", "2026-01-04", "2026-01-04")]

    # A deleted file requests nothing and leaves the cursor; if it comes back, it is new.
    delete(landing, "events/dt=2026-01-03/a.jsonl")
    gone = tick(landing_zone_sensor, rewritten.cursor, landing=landing)
    assert gone.run_requests == []
    day = date(2026, 1, 3)  # its folder stays on local disk with no files; on S3 it is gone
    assert decode_cursor(gone.cursor)["events"].days.get(day, NO_FILES).files == 0
    events_file(landing, tmp_path, "2026-01-03")
    back = tick(landing_zone_sensor, gone.cursor, landing=landing)
    assert requested(back) == [("events", "2026-01-03", "2026-01-03")]


def test_late_files_around_a_day_that_lost_its_files_leave_that_day_alone(landing, tmp_path):
    """Late files for days on both sides of a day whose file expired request those two days
    only: merged into one range, the run re-ingested the day between from what is left there,
    deleting the rows its expired file had loaded."""
    for day in ("2026-01-01", "2026-01-03", "2026-01-05"):
        events_file(landing, tmp_path, day)
    cursor = tick(landing_zone_sensor, None, landing=landing).cursor
    delete(landing, "events/dt=2026-01-03/a.jsonl")  # expired: requests nothing
    expired = tick(landing_zone_sensor, cursor, landing=landing)
    assert expired.run_requests == []
    for day in ("2026-01-01", "2026-01-05"):
        events_file(landing, tmp_path, day, name="late.jsonl")
    late = tick(landing_zone_sensor, expired.cursor, landing=landing)
    assert requested(late) == [
        ("events", "2026-01-01", "2026-01-01"),
        ("events", "2026-01-05", "2026-01-05"),
    ]


def test_files_withdrawn_from_a_young_day_re_run_it(landing, tmp_path):
    """A file deleted from today's folder was withdrawn (no lifecycle rule expires a file that
    young): a bad delivery, or the originals of a compaction seen by a tick between the
    compacted file's landing and their deletion. It requested nothing, and its rows stayed in
    raw for good (the compacted day held every row twice). An emptied young day re-runs too; an
    older day's deletions still request nothing."""
    today = datetime.now(UTC).date()
    young, old = today.isoformat(), (today - timedelta(days=5)).isoformat()
    for day in (young, old):
        for name in ("a.jsonl", "b.jsonl"):
            events_file(landing, tmp_path, day, name=name)
    events_file(landing, tmp_path, young, name="compacted.jsonl", lines=2)
    events_file(landing, tmp_path, old, name="kept.jsonl")
    cursor = tick(landing_zone_sensor, None, landing=landing).cursor
    for day in (young, old):
        delete(landing, f"events/dt={day}/a.jsonl")
        delete(landing, f"events/dt={day}/b.jsonl")
    withdrawn = tick(landing_zone_sensor, cursor, landing=landing)
    assert requested(withdrawn) == [("events", young, young)]
    assert tick(landing_zone_sensor, withdrawn.cursor, landing=landing).run_requests == []
    delete(landing, f"events/dt={young}/compacted.jsonl")  # S3: the day folder is gone
    emptied = tick(landing_zone_sensor, withdrawn.cursor, landing=landing)
    assert requested(emptied) == [("events", young, young)]
    assert tick(landing_zone_sensor, emptied.cursor, landing=landing).run_requests == []


def test_a_day_put_back_as_it_was_is_requested_under_a_new_run_key(resources, tmp_path):
    """A bad rewrite undone with the original file (`cp -p`: same bytes, same time) returns the
    day to a state it had: its run key was built from that state alone, the first load's, and
    Dagster never runs a key twice, so the day kept the bad rows."""
    landing = resources["landing"]
    key = events_file(landing, tmp_path, "2026-01-03")
    path = Path(landing.url) / key
    original, stamp = path.read_bytes(), path.stat().st_mtime_ns
    first = tick(landing_zone_sensor, None, landing=landing)
    events_file(landing, tmp_path, "2026-01-03", lines=3)  # the bad rewrite
    bad = tick(landing_zone_sensor, first.cursor, landing=landing)
    path.write_bytes(original)
    os.utime(path, ns=(stamp, stamp))
    undone = tick(landing_zone_sensor, bad.cursor, landing=landing)
    assert requested(undone) == [("events", "2026-01-03", "2026-01-03")]
    earlier = {r.run_key for r in [*first.run_requests, *bad.run_requests]}
    assert undone.run_requests[0].run_key not in earlier


def test_a_move_made_again_is_a_new_run_key_and_a_retried_tick_the_same(resources, tmp_path):
    """A day rewritten A->B, put back to A, then to B again (`cp -p` keeps bytes and times):
    the third move is the first's, and a key built from the move alone was skipped by Dagster
    (it never runs a key twice), leaving A's rows where B was delivered."""
    landing = resources["landing"]
    key = events_file(landing, tmp_path, "2026-01-03")
    path = Path(landing.url) / key

    def state() -> tuple[bytes, int]:
        return path.read_bytes(), path.stat().st_mtime_ns

    def put(content: tuple[bytes, int]) -> None:
        path.write_bytes(content[0])
        os.utime(path, ns=(content[1], content[1]))

    a = state()
    cursor = tick(landing_zone_sensor, None, landing=landing).cursor
    events_file(landing, tmp_path, "2026-01-03", lines=3)
    b = state()
    keys = []
    for content in (b, a, b):
        put(content)
        result = tick(landing_zone_sensor, cursor, landing=landing)
        retried = tick(landing_zone_sensor, cursor, landing=landing)  # the same tick again
        assert [r.run_key for r in retried.run_requests] == [r.run_key for r in result.run_requests]
        (request,) = result.run_requests
        keys.append(request.run_key)
        cursor = result.cursor
    assert len(set(keys)) == 3


def test_s3_a_file_rewritten_with_its_size_within_the_second_is_a_change(
    s3_landing, tmp_path, monkeypatch
):
    """S3 stamps whole seconds: a file rewritten with the same size in the same second had the
    same (size, time), and its new content was never loaded. Its ETag tells. The listing is
    held at the first write's second (waiting for two writes to share one was flaky on a
    loaded machine); size and ETag are the server's."""
    key = events_file(s3_landing, tmp_path, "2026-01-03", name="same.jsonl")
    first = tick(landing_zone_sensor, None, landing=s3_landing)
    [before] = s3_landing.list_files("events/")
    listed = LandingZone.list_files

    def within_the_second(self, *args, **kwargs) -> list[LandingFile]:
        return [replace(f, modified=before.modified) for f in listed(self, *args, **kwargs)]

    monkeypatch.setattr(LandingZone, "list_files", within_the_second)
    put_lines(s3_landing, key, [json.dumps({"event_id": "eX"})], tmp_path)  # same size
    [after] = s3_landing.list_files("events/")
    assert (after.size, after.modified) == (before.size, before.modified)
    assert after.version != before.version
    rewritten = tick(landing_zone_sensor, first.cursor, landing=s3_landing)
    assert requested(rewritten) == [("events", "2026-01-03", "2026-01-03")]


def test_a_local_file_corrected_in_place_with_its_size_and_mtime_kept_is_a_change(
    resources, tmp_path
):
    """A bad file corrected in place by `cp -p`, `rsync -a` or `touch -r` keeps its size and
    mtime: the day's state (key, size, mtime) did not move, the day was never re-run and its
    bad rows stayed. The file's version (inode:ctime) moves with any write."""
    landing = resources["landing"]
    key = events_file(landing, tmp_path, "2026-01-03", name="same.jsonl")
    events_file(landing, tmp_path, "2026-01-04")  # the control: never touched
    path = Path(landing.url) / key
    before = path.stat()
    first = tick(landing_zone_sensor, None, landing=landing)
    quiet = tick(landing_zone_sensor, first.cursor, landing=landing)
    assert quiet.run_requests == []  # untouched files request nothing

    corrected = path.read_bytes().replace(b'"e0"', b'"e9"')
    path.write_bytes(corrected)  # in place: the same inode
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    result = tick(landing_zone_sensor, quiet.cursor, landing=landing)
    assert requested(result) == [("events", "2026-01-03", "2026-01-03")]
    assert tick(landing_zone_sensor, result.cursor, landing=landing).run_requests == []


def test_files_replaced_by_fewer_older_ones_are_a_change(resources, tmp_path):
    """A day's two files replaced by one written elsewhere earlier (`rsync -a --delete` of a
    corrected day, `mv` of a compacted file: both keep the mtime) lost files and gained none
    newer by their mtimes: taken for deletions only, the new file was never loaded and the
    old files' rows stayed. Its ctime, set by this disk as it arrived, tells."""
    landing = resources["landing"]
    for name in ("a.jsonl", "b.jsonl"):
        events_file(landing, tmp_path, "2026-01-03", name=name)
    first = tick(landing_zone_sensor, None, landing=landing)
    day = Path(landing.url) / "events/dt=2026-01-03"
    # Past the second the files landed in: the cursor keeps whole seconds (a file landing within
    # the second of the day's latest, after the listing, is the blind spot left).
    landed = max((day / name).stat().st_ctime for name in ("a.jsonl", "b.jsonl"))
    time.sleep(max(0.0, math.ceil(landed) - time.time()) + 0.05)
    compacted = tmp_path / "compacted.jsonl"
    compacted.write_text('{"event_id": "e0"}\n{"event_id": "e1"}\n')
    written = (day / "a.jsonl").stat().st_mtime_ns - 3_600 * 10**9  # an hour before
    os.utime(compacted, ns=(written, written))
    for name in ("a.jsonl", "b.jsonl"):
        (day / name).unlink()
    compacted.rename(day / "c.jsonl")

    replaced = tick(landing_zone_sensor, first.cursor, landing=landing)
    assert requested(replaced) == [("events", "2026-01-03", "2026-01-03")]
    (day / "c.jsonl").unlink()  # a deletion alone still requests nothing
    assert tick(landing_zone_sensor, replaced.cursor, landing=landing).run_requests == []


def test_a_cursor_from_before_file_versions_requests_nothing(landing, tmp_path):
    """Digests now cover versions (S3's ETags, a local file's inode:ctime); a cursor written
    before must not make every day look rewritten (a re-ingestion of all history, and of days
    whose expired files it would drop), neither at the first tick nor as the rotation reaches
    the older days. Once a day is listed its digest has the versions: a later correction with
    size and time kept is seen."""
    days = ("2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04")
    for day in days:
        events_file(landing, tmp_path, day)
    unversioned = [replace(f, version="") for f in landing.list_files("events/")]
    cursor = encode_cursor({"events": SourceCursor(day_states(unversioned))})
    sensor = build_landing_sensor(recent_days=1, sweep_files=1)  # one older day a tick
    for _ in days:
        upgraded = tick(sensor, cursor, landing=landing)
        assert upgraded.run_requests == []
        cursor = upgraded.cursor
    assert decode_cursor(cursor)["events"].days == day_states(landing.list_files("events/"))
    if not landing.is_s3:  # S3 cannot keep a rewritten object's time
        path = Path(landing.url) / "events/dt=2026-01-04/a.jsonl"
        stamp = path.stat().st_mtime_ns
        path.write_bytes(path.read_bytes().replace(b'"e0"', b'"e9"'))
        os.utime(path, ns=(stamp, stamp))
        corrected = tick(sensor, cursor, landing=landing)
        assert requested(corrected) == [("events", "2026-01-04", "2026-01-04")]


def test_days_outside_the_partitions_wait(resources, tmp_path):
    landing = resources["landing"]
    events_file(landing, tmp_path, "2025-12-31")  # before DATA_PLATFORM_START_DATE
    events_file(landing, tmp_path, "2099-01-01")  # not a partition yet
    result = tick(landing_zone_sensor, None, landing=landing)
    assert result.run_requests == []
    assert all(not part.days for part in decode_cursor(result.cursor).values())


@pytest.mark.parametrize(
    ("days", "ranges"),
    [
        ([], []),
        (["01-03", "01-01", "01-02"], [("01-01", "01-03")]),
        (["01-01", "01-03"], [("01-01", "01-01"), ("01-03", "01-03")]),  # a day between: two
        (["01-01", "01-01", "01-02", "01-20"], [("01-01", "01-02"), ("01-20", "01-20")]),
        (["12-31", "2027-01-01"], [("12-31", "2027-01-01")]),  # across a year
    ],
)
def test_day_ranges(days, ranges):
    as_date = lambda d: date.fromisoformat(d if len(d) == 10 else f"2026-{d}")  # noqa: E731
    expected = [(as_date(a), as_date(b)) for a, b in ranges]
    assert day_ranges([as_date(d) for d in days]) == expected


TRICKY_KEYS = [
    "events/dt=2026-01-04/a.jsonl",
    "events/dt=2026-01-05/a.jsonl",
    "events/dt=2026-01-05/b.jsonl.gz",
    "events/dt=2026-01-05.old/a.jsonl",
    "events/dt=2026-01-05x/a.jsonl",
    "events/dt=2026-01-06/a.jsonl",
    "events/dt=2026-01-07/a.jsonl",
    "events/undated/a.jsonl",
    "events/top.jsonl",
]
# The folders directly under events/ that TRICKY_KEYS make.
TRICKY_FOLDERS = [
    "events/dt=2026-01-04/",
    "events/dt=2026-01-05.old/",
    "events/dt=2026-01-05/",
    "events/dt=2026-01-05x/",
    "events/dt=2026-01-06/",
    "events/dt=2026-01-07/",
    "events/undated/",
]


def test_a_key_range_lists_what_the_full_listing_holds_in_it(landing, tmp_path):
    for key in TRICKY_KEYS:
        landing.write_bytes(key, b"{}\n")
    everything = landing.list_files("events/")
    assert [f.key for f in everything] == sorted(TRICKY_KEYS)
    for first, last in [(5, 5), (5, 6), (4, 7), (8, 9)]:
        start_after, end_before = day_bounds("events", date(2026, 1, first), date(2026, 1, last))
        expected = [f for f in everything if start_after < f.key < end_before]
        assert landing.list_files("events/", start_after, end_before) == expected
    assert [e for e in landing.list_entries("events/") if e.endswith("/")] == TRICKY_FOLDERS
    assert landing.list_entries("payments/") == []


def land_days(landing, n_days: int, files_per_day: int) -> list[date]:
    """Days from 2026-01-01 holding `files_per_day` event files each."""
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(n_days)]
    for day in days:
        for i in range(files_per_day):
            landing.write_bytes(f"events/dt={day}/f{i}.jsonl", b'{"event_id": "e"}\n')
    return days


def test_late_and_rewritten_files_in_old_days_are_seen_by_the_rotation(landing):
    """8 older days of 2 files, a budget of 4 files a tick: every older day within 4 ticks."""
    sensor = build_landing_sensor(recent_days=2, sweep_files=4)
    present = land_days(landing, 10, 2)
    cursor = tick(sensor, None, landing=landing).cursor
    # Longer for real: "rewritten, longer" had the 18 bytes of the original, and S3 states
    # modification times in whole seconds, so a rewrite within the second was invisible.
    landing.write_bytes(f"events/dt={present[1]}/f0.jsonl", b'{"event_id": "rewritten"}\n')
    landing.write_bytes(f"events/dt={present[6]}/late.jsonl", b'{"event_id": "late"}\n')
    seen = []
    for _ in range(4):
        result = tick(sensor, cursor, landing=landing)
        seen += requested(result)
        cursor = result.cursor
    assert sorted(seen) == [
        ("events", str(present[1]), str(present[1])),
        ("events", str(present[6]), str(present[6])),
    ]
    assert requested(tick(sensor, cursor, landing=landing)) == []


def count_files_read(monkeypatch) -> list[int]:
    """The number of files each of the sensor's listings returns, appended as it lists."""
    read: list[int] = []

    def counted(*args) -> list[LandingFile]:
        files = format_files(*args)
        read.append(len(files))
        return files

    monkeypatch.setattr(landing_sensor, "format_files", counted)
    return read


def test_a_history_the_cursor_does_not_know_is_listed_over_several_ticks(landing, monkeypatch):
    """12 days of 4 files and no cursor (a first deploy, a reset cursor, a restored archive):
    the 2 recent days at once, the 10 older ones ~12 files a tick, oldest first, each tick
    requesting what it listed. Listing it all in one tick could pass Dagster's 60 s sensor
    timeout, which saves no cursor: every tick would start over, for good."""
    read = count_files_read(monkeypatch)
    sensor = build_landing_sensor(recent_days=2, sweep_files=4, new_files=12)
    present = land_days(landing, 12, 4)
    cursor, seen, per_tick, batches = None, [], [], []
    for _ in range(6):
        read.clear()
        result = tick(sensor, cursor, landing=landing)
        per_tick.append(sum(read))
        cursor = result.cursor
        if not result.run_requests:
            break
        batches.append(requested(result))
        for _, first, last in requested(result):
            start, end = date.fromisoformat(first), date.fromisoformat(last)
            seen += [str(start + timedelta(days=i)) for i in range((end - start).days + 1)]
    # Recent days 8 files, swept days 4, unknown days 12: never the 48 of the whole history.
    assert max(per_tick) <= 8 + 4 + 12
    assert sorted(seen) == [str(d) for d in present]  # every day once
    # The oldest first, with the recent days; then the next oldest.
    assert batches[0] == [
        ("events", "2026-01-01", "2026-01-03"),
        ("events", "2026-01-11", "2026-01-12"),
    ]
    assert batches[1] == [("events", "2026-01-04", "2026-01-06")]
    assert len(per_tick) == 5  # 3 days a tick, then a quiet one
    assert file_counts(decode_cursor(cursor)["events"].days) == {str(d): 4 for d in present}


def test_empty_unknown_days_still_count_against_the_listing_budget(monkeypatch):
    """An emptied day folder (or an S3 folder marker) reads no file, but its listing still
    costs a request: it counts as one file, so the next listings do not take every day left."""
    days = [date(2025, 1, 1) + timedelta(days=i) for i in range(40)]
    files = {d: 0 if i < 3 else 2 for i, d in enumerate(days)}
    listings: list[int] = []

    def fake_list_days(landing, fmt, batch, present):
        listings.append(len(batch))
        return dict.fromkeys(batch, landing_sensor.NO_FILES), sum(files[d] for d in batch)

    monkeypatch.setattr(landing_sensor, "list_days", fake_list_days)
    listed = landing_sensor.list_unknown_days(None, None, days, days, budget=12)
    # One day, then the 11 the budget holds at 1 file a day (the empty one counted as one),
    # not the 39 days left; those 11 read 18 files, past the budget: no third listing.
    assert listings == [1, 11]
    assert list(listed) == days[:12]  # the oldest first


def test_the_previous_cursor_is_converted_without_requests(landing):
    land_days(landing, 3, 2)
    landing.write_bytes("payments/dt=2026-01-02/p.csv", b"payment_id\np1\n")
    # The previous version's cursor: {key: [size, modified]} of every file present.
    previous = json.dumps({f.key: [f.size, f.modified] for f in landing.list_files()})
    quiet = tick(landing_zone_sensor, previous, landing=landing)
    assert quiet.run_requests == []
    assert decode_cursor(quiet.cursor)["payments"].days[date(2026, 1, 2)].files == 1
    landing.write_bytes("events/dt=2026-01-02/new.jsonl", b"{}\n")
    assert requested(tick(landing_zone_sensor, previous, landing=landing)) == [
        ("events", "2026-01-02", "2026-01-02")
    ]


def test_a_quiet_tick_reads_the_recent_days_and_the_sweep_budget_only(landing, monkeypatch):
    """12 days of 4 files; 2 recent days and a budget of 8 files: 16 files a tick, not 48."""
    read = count_files_read(monkeypatch)
    sensor = build_landing_sensor(recent_days=2, sweep_files=8)
    land_days(landing, 12, 4)
    cursor = tick(sensor, None, landing=landing).cursor
    assert sum(read) == 48  # a first tick reads every day (under the default budget)
    for _ in range(7):  # 10 older days, 2 a tick: the rotation wraps around
        read.clear()
        with s3_listing() as s3:
            result = tick(sensor, cursor, landing=landing)
        assert result.run_requests == [] and sum(read) == 16
        assert len(read) <= 3  # recent days, swept days (two ranges when wrapping around)
        # S3: one request for each source's folders, one per range (under 1,000 keys each)
        assert s3["requests"] == (2 + len(read) if landing.is_s3 else 0)
        cursor = result.cursor


@pytest.fixture
def source_db(settings, resources):
    config = SimulationConfig(
        seed=3, days=2, end_date=date(2026, 1, 7), users=50, events_per_day=500, defect_rate=0.0
    )
    simulate(config, resources["landing"], settings.source_db_url)
    return resources["source_database"]


def test_source_database_changes_request_their_extraction(settings, source_db):
    first = tick(source_database_sensor, None, source_database=source_db)
    (request,) = first.run_requests
    assert {key.path[1] for key in request.asset_selection} == {
        "users",
        "products",
        "orders",
        "order_items",
    }
    assert tick(source_database_sensor, first.cursor, source_database=source_db).run_requests == []

    with source_db.engine().begin() as conn:
        conn.execute(sa.text("UPDATE users SET updated_at = '2026-02-01 00:00:00' WHERE id = 1"))
    moved = tick(source_database_sensor, first.cursor, source_database=source_db)
    (request,) = moved.run_requests
    assert request.asset_selection == [dg.AssetKey(["raw", "users"])]
    assert json.loads(moved.cursor)["marks"]["users"].startswith("2026-02-01")
    # The sensor never opens the warehouse, which a run may be writing.
    assert not settings.warehouse.exists()

    # A source restored to marks it had before is read again: its run key is new (Dagster never
    # runs a key twice, and a key of the new marks alone was the one of the first move there).
    with source_db.engine().begin() as conn:
        conn.execute(sa.text("UPDATE users SET updated_at = '2026-03-01 00:00:00' WHERE id = 1"))
    later = tick(source_database_sensor, moved.cursor, source_database=source_db)
    with source_db.engine().begin() as conn:
        conn.execute(sa.text("UPDATE users SET updated_at = '2026-02-01 00:00:00' WHERE id = 1"))
    restored = tick(source_database_sensor, later.cursor, source_database=source_db)
    (again,) = restored.run_requests
    assert again.asset_selection == [dg.AssetKey(["raw", "users"])]
    assert again.run_key not in {request.run_key, later.run_requests[0].run_key}


def test_a_source_move_made_again_is_a_new_run_key(settings, source_db):
    """users' mark A->B->A->B (a restore, then the change again): the third move is the
    first's; its key must differ, or Dagster skips the run. A retried tick repeats its key."""
    with source_db.engine().begin() as conn:
        newest = conn.execute(sa.text("SELECT max(updated_at) FROM users")).scalar()
        # Row 1 holds the mark A, so the marks below are row 1's stamps.
        conn.execute(sa.text("UPDATE users SET updated_at = :at WHERE id = 1"), {"at": newest})
    cursor = tick(source_database_sensor, None, source_database=source_db).cursor
    keys = []
    for stamp in ("2026-02-01 00:00:00", newest, "2026-02-01 00:00:00"):
        with source_db.engine().begin() as conn:
            conn.execute(sa.text("UPDATE users SET updated_at = :at WHERE id = 1"), {"at": stamp})
        result = tick(source_database_sensor, cursor, source_database=source_db)
        retried = tick(source_database_sensor, cursor, source_database=source_db)
        (request,), (again,) = result.run_requests, retried.run_requests
        assert request.asset_selection == [dg.AssetKey(["raw", "users"])]
        assert again.run_key == request.run_key
        keys.append(request.run_key)
        cursor = result.cursor
    assert len(set(keys)) == 3


def settled(cursor: str, minutes: float) -> str:
    """The cursor as a tick `minutes` later would find it: each settling read that much nearer."""
    stored = json.loads(cursor)
    shift = timedelta(minutes=minutes)
    stored["settle"] = {
        table: (datetime.fromisoformat(at) - shift).isoformat()
        for table, at in stored["settle"].items()
    }
    return json.dumps(stored)


def test_a_late_commit_below_the_mark_is_read_by_the_settling_run(settings, source_db):
    """A transaction committing late lands below the mark: nothing moves, and once the table
    went quiet its rows waited for the next change (or the weekly reconciliation). Each table
    whose mark moved is read once more SETTLE_AFTER later, unless it moved again meanwhile."""
    first = tick(source_database_sensor, None, source_database=source_db)
    assert SETTLING_TAG not in first.run_requests[0].tags
    with source_db.engine().begin() as conn:
        conn.execute(sa.text("UPDATE users SET updated_at = '2026-02-01 00:00:00' WHERE id = 1"))
    moved = tick(source_database_sensor, first.cursor, source_database=source_db)
    with source_db.engine().begin() as conn:  # a transaction that stamped earlier, committed now
        conn.execute(sa.text("UPDATE users SET updated_at = '2026-01-31 23:59:00' WHERE id = 2"))
    assert tick(source_database_sensor, moved.cursor, source_database=source_db).run_requests == []

    minutes = SETTLE_AFTER.total_seconds() / 60
    early = tick(
        source_database_sensor, settled(moved.cursor, minutes - 1), source_database=source_db
    )
    assert early.run_requests == []
    due = tick(
        source_database_sensor, settled(moved.cursor, minutes + 1), source_database=source_db
    )
    (request,) = due.run_requests
    # All four moved at the first tick (users again since, later): all are due, in one run.
    assert request.asset_selection == [dg.AssetKey(["raw", t]) for t in sorted(TABLES)]
    assert request.tags[SETTLING_TAG] == ",".join(sorted(TABLES))
    assert request.run_key != moved.run_requests[0].run_key
    # Once: the next tick, however late, asks for nothing until a mark moves again.
    assert (
        tick(
            source_database_sensor, settled(due.cursor, 60), source_database=source_db
        ).run_requests
        == []
    )

    # A table that keeps moving is read at each move; its settling read waits for it to stop.
    with source_db.engine().begin() as conn:
        conn.execute(sa.text("UPDATE orders SET updated_at = '2026-02-02 00:00:00' WHERE id = 1"))
    busy = tick(source_database_sensor, due.cursor, source_database=source_db)
    with source_db.engine().begin() as conn:
        conn.execute(sa.text("UPDATE orders SET updated_at = '2026-02-03 00:00:00' WHERE id = 1"))
    busier = tick(
        source_database_sensor, settled(busy.cursor, minutes + 1), source_database=source_db
    )
    (request,) = busier.run_requests
    assert request.asset_selection == [dg.AssetKey(["raw", "orders"])]
    assert SETTLING_TAG not in request.tags
    quiet = tick(
        source_database_sensor, settled(busier.cursor, minutes + 1), source_database=source_db
    )
    assert quiet.run_requests[0].tags[SETTLING_TAG] == "orders"


def test_a_cursor_of_marks_alone_is_read_as_before(settings, source_db):
    first = tick(source_database_sensor, None, source_database=source_db)
    marks_alone = json.dumps(json.loads(first.cursor)["marks"])
    assert tick(source_database_sensor, marks_alone, source_database=source_db).run_requests == []


def test_a_row_stamped_in_the_future_hides_no_later_change(settings, source_db):
    """The mark was max(updated_at): one row stamped in 2099 (a skewed clock) held it there, so
    no later change of the table moved it, and the table was never extracted again. The mark
    is the newest updated_at not ahead of the sensor's clock, the rows ahead counted beside it."""
    first = tick(source_database_sensor, None, source_database=source_db)
    with source_db.engine().begin() as conn:
        conn.execute(sa.text("UPDATE users SET updated_at = '2099-01-01 00:00:00' WHERE id = 1"))
    ahead = tick(source_database_sensor, first.cursor, source_database=source_db)
    (request,) = ahead.run_requests  # the row stamped ahead is a change too
    assert request.asset_selection == [dg.AssetKey(["raw", "users"])]
    with source_db.engine().begin() as conn:
        conn.execute(sa.text("UPDATE users SET updated_at = '2026-02-01 00:00:00' WHERE id = 2"))
    later = tick(source_database_sensor, ahead.cursor, source_database=source_db)
    (request,) = later.run_requests
    assert request.asset_selection == [dg.AssetKey(["raw", "users"])]
    assert json.loads(later.cursor)["marks"]["users"].startswith("2026-02-01")
    assert tick(source_database_sensor, later.cursor, source_database=source_db).run_requests == []
    # A sentinel at the end of time with an offset has no UTC instant Python can hold: it
    # raised OverflowError and failed every tick, for every table. It is ahead, like 2099.
    stamp_users(source_db, "9999-12-31 23:59:59-05:00", 3)
    sentinel = tick(source_database_sensor, later.cursor, source_database=source_db)
    (request,) = sentinel.run_requests
    assert request.asset_selection == [dg.AssetKey(["raw", "users"])]
    assert json.loads(sentinel.cursor)["marks"]["users"].startswith("2026-02-01 00:00:00 (+2 ahead")


def stamp_users(source_db, updated_at: str, user_id: int | None = None) -> None:
    """Set the updated_at of one user (or of every user) to `updated_at`, as text."""
    where = "" if user_id is None else f" WHERE id = {user_id}"
    with source_db.engine().begin() as conn:
        conn.execute(sa.text(f"UPDATE users SET updated_at = :at{where}"), {"at": updated_at})


def test_a_change_stamped_with_a_negative_offset_moves_the_mark(settings, source_db):
    """SQLite sorts text timestamps as text: '08:20:00-05:00' (13:20 UTC) sorted below a mark
    '12:00:00', so the sensor saw no change, and the change waited hours for its local text to
    pass the mark. The mark is the newest instant, as the extraction reads it."""
    stamp_users(source_db, "2026-01-05 11:00:00")
    stamp_users(source_db, "2026-01-05 12:00:00", 1)
    first = tick(source_database_sensor, None, source_database=source_db)
    assert json.loads(first.cursor)["marks"]["users"] == "2026-01-05 12:00:00"

    stamp_users(source_db, "2026-01-05 08:20:00-05:00", 2)
    moved = tick(source_database_sensor, first.cursor, source_database=source_db)
    (request,) = moved.run_requests
    assert request.asset_selection == [dg.AssetKey(["raw", "users"])]
    assert SETTLING_TAG not in request.tags
    # Stored as the source holds it, like every mark before.
    assert json.loads(moved.cursor)["marks"]["users"] == "2026-01-05 08:20:00-05:00"

    # Top of the text but 09:00 UTC, older than the mark: no change, nothing requested.
    stamp_users(source_db, "2026-01-05 14:00:00+05:00", 3)
    quiet = tick(source_database_sensor, moved.cursor, source_database=source_db)
    assert quiet.run_requests == []
    assert json.loads(quiet.cursor)["marks"]["users"] == "2026-01-05 08:20:00-05:00"

    # An offset SQLite reads only with its colon put in (Python's %z): 13:30 UTC, newer.
    stamp_users(source_db, "2026-01-05 08:30:00-0500", 4)
    later = tick(source_database_sensor, quiet.cursor, source_database=source_db)
    assert len(later.run_requests) == 1
    assert json.loads(later.cursor)["marks"]["users"] == "2026-01-05 08:30:00-0500"


def test_a_source_table_without_updated_at_does_not_stop_the_others(settings, source_db, caplog):
    """One table the contract no longer fits (its updated_at renamed) failed every tick, so no
    other table's change was detected either: it is left out, with a warning."""
    first = tick(source_database_sensor, None, source_database=source_db)
    with source_db.engine().begin() as conn:
        conn.execute(sa.text("ALTER TABLE products RENAME COLUMN updated_at TO changed_at"))
        conn.execute(sa.text("UPDATE users SET updated_at = '2026-02-01 00:00:00' WHERE id = 1"))
    moved = tick(source_database_sensor, first.cursor, source_database=source_db)
    (request,) = moved.run_requests
    assert request.asset_selection == [dg.AssetKey(["raw", "users"])]
    log = logging.getLogger("source_database_sensor_test")
    with caplog.at_level(logging.WARNING, logger=log.name):
        marks = high_water_marks(source_db.engine(), TABLES, log)
    assert set(marks) == {"users", "orders", "order_items"}
    [warning] = [r.getMessage() for r in caplog.records if r.name == log.name]
    assert warning.startswith("source table products has no updated_at column")


def test_no_source_database_yet_is_a_skip_that_creates_nothing(settings, resources):
    result = tick(source_database_sensor, None, source_database=resources["source_database"])
    assert result.run_requests == [] and "does not exist" in result.skip_message
    assert not Path(settings.source_db_url.removeprefix("sqlite:///")).exists()


def _rewritten_while_read(s3_landing, rewrites: int) -> bytes | OSError:
    """Download a 16 MB landing file (ranged parts) that its producer rewrites after the first
    part, `rewrites` times; the bytes read, or the error."""
    client, bucket = s3_landing._s3(), urlparse(s3_landing.url).netloc
    key = "events/dt=2026-01-05/big.jsonl"
    s3_key = f"{urlparse(s3_landing.url).path.strip('/')}/{key}"
    client.put_object(Bucket=bucket, Key=s3_key, Body=b'{"v":0}\n' * 2_000_000)
    real_get, parts, versions = client.get_object, [], iter(range(1, rewrites + 1))

    def get_object(**request):
        parts.append(request.get("Range"))
        if len(parts) % 2 == 0 and (version := next(versions, None)) is not None:
            body = f'{{"v":{version}}}\n'.encode() * 2_000_000
            boto3.client("s3").put_object(Bucket=bucket, Key=s3_key, Body=body)
        return real_get(**request)

    client.get_object = get_object
    try:
        with s3_landing.local_path(key) as path:
            return path.read_bytes()
    except OSError as error:
        return error
    finally:
        client.get_object = real_get


def test_an_s3_file_rewritten_while_it_is_downloaded_is_read_again_whole(s3_landing):
    """boto3 reads a large object in parts pinned to the first part's version: a producer
    rewriting the file in between made the download, and the day's run, fail."""
    data = _rewritten_while_read(s3_landing, rewrites=1)
    assert isinstance(data, bytes) and set(data.splitlines()) == {b'{"v":1}'}
    error = _rewritten_while_read(s3_landing, rewrites=10)
    assert isinstance(error, OSError) and "changed while it was read, 3 times" in str(error)


def test_keys_outside_every_day_folder_are_named_by_each_tick(landing, capsys):
    """A file beside the day folders, or in a folder that is no day (`undated/`, a date that
    does not exist), has no partition: no run reads it, so no table, dead letter or check
    would ever show it. The sensor names such keys, on S3 from the same one-level listing."""
    for key in [*TRICKY_KEYS, "events/dt=2026-02-30/a.jsonl"]:
        landing.write_bytes(key, b"{}\n")
    assert landing.list_entries("events/") == sorted(
        [*TRICKY_FOLDERS, "events/dt=2026-02-30/", "events/top.jsonl"]
    )
    result = tick(landing_zone_sensor, None, landing=landing)
    # Dagster's own handler writes the sensor's log to stderr.
    [warning] = [
        line for line in capsys.readouterr().err.splitlines() if "outside any day folder" in line
    ]
    assert "5 key(s) under events/ are outside any day folder" in warning
    astray = ["dt=2026-01-05.old/", "dt=2026-01-05x/", "dt=2026-02-30/", "top.jsonl", "undated/"]
    assert warning.endswith(", ".join(f"events/{key}" for key in astray))
    assert requested(result) == [("events", "2026-01-04", "2026-01-07")]


def test_a_landing_zone_out_of_reach_for_a_while_is_not_taken_for_a_new_history(landing, tmp_path):
    """Every day folder gone at once (an unmounted disk leaves its empty mount point; a prefix
    mistyped for a deploy) is no expiry: forgotten, every day came back as new, the whole
    history was requested, and a day that had lost a file to expiry was re-ingested from what
    is left, deleting the rows that file had loaded."""
    for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
        events_file(landing, tmp_path, day, name="a.jsonl")
        events_file(landing, tmp_path, day, name="b.jsonl")
    cursor = tick(landing_zone_sensor, None, landing=landing).cursor
    delete(landing, "events/dt=2026-01-01/a.jsonl")  # expired: requests nothing
    cursor = tick(landing_zone_sensor, cursor, landing=landing).cursor

    away = LandingZone(url=str(tmp_path / "empty-mount-point"))
    (tmp_path / "empty-mount-point").mkdir()
    unreachable = tick(landing_zone_sensor, cursor, landing=away)
    assert unreachable.run_requests == []
    assert decode_cursor(unreachable.cursor) == decode_cursor(cursor)

    back = tick(landing_zone_sensor, unreachable.cursor, landing=landing)
    assert back.run_requests == []
