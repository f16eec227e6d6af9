"""The landing sensor at scale: its listing plan, day states, compact cursor and key ranges.

The pure helpers, on their own. The rotation, the upgrade from the previous cursor, key ranges
and the bounded listing are tested against real files, local and on moto S3, in test_sensors.py.
"""

from __future__ import annotations

import json
import math
from datetime import date, timedelta

import pytest

from data_platform.automation.landing_sensor import (
    CURSOR_VERSION,
    CURSOR_WARN_BYTES,
    FORMATS,
    NO_FILES,
    DayState,
    SourceCursor,
    UnreadableCursor,
    day_bounds,
    day_changed,
    day_states,
    decode_cursor,
    encode_cursor,
    folder_day,
    listing_ranges,
    plan_listing,
)
from data_platform.resources.landing import LandingFile

START = date(2026, 1, 1)


def days(n: int) -> list[date]:
    return [START + timedelta(days=i) for i in range(n)]


def known(day_list: list[date], files: int = 1) -> dict[date, DayState]:
    return {d: DayState(files, 100, 7) for d in day_list}


def test_plan_lists_everything_the_cursor_does_not_know():
    present = days(10)
    assert plan_listing(present, {}, None, recent_days=2, sweep_files=3) == (present, None)
    assert plan_listing([], {}, None, recent_days=2, sweep_files=3) == ([], None)


def test_plan_lists_recent_days_and_rotates_through_older_ones():
    present = days(10)  # days 0-7 are older than the 2 recent days 8-9
    state = known(present)
    listed, swept_to = plan_listing(present, state, None, recent_days=2, sweep_files=3)
    assert (listed, swept_to) == ([*present[0:3], *present[8:]], present[2])
    listed, swept_to = plan_listing(present, state, swept_to, recent_days=2, sweep_files=3)
    assert (listed, swept_to) == ([*present[3:6], *present[8:]], present[5])
    # The rotation wraps around: days 6, 7, then 0.
    listed, swept_to = plan_listing(present, state, swept_to, recent_days=2, sweep_files=3)
    assert (listed, swept_to) == ([present[0], *present[6:8], *present[8:]], present[0])
    # A day the cursor lacks (a new folder, however old) is listed at once.
    del state[present[4]]
    listed, _ = plan_listing(present, state, swept_to, recent_days=2, sweep_files=3)
    assert present[4] in listed


@pytest.mark.parametrize(("files_per_day", "sweep_files"), [(1, 3), (5, 12), (40, 2000)])
def test_every_older_day_is_listed_within_its_files_over_the_budget_ticks(
    files_per_day, sweep_files
):
    present = days(60)
    older_files = (len(present) - 3) * files_per_day
    seen, swept_to = set(), None
    for _ in range(math.ceil(older_files / sweep_files)):
        listed, swept_to = plan_listing(
            present, known(present, files_per_day), swept_to, 3, sweep_files
        )
        seen |= set(listed)
    assert seen == set(present)


def test_a_day_s_files_count_against_the_sweep_budget():
    present = days(6)
    state = known(present) | {present[0]: DayState(50, 100, 7)}
    listed, swept_to = plan_listing(present, state, None, recent_days=1, sweep_files=10)
    assert (listed, swept_to) == ([present[0], present[5]], present[0])


def test_listing_ranges_are_runs_of_neighbouring_folders():
    present = [START, START + timedelta(days=3), START + timedelta(days=4), START + timedelta(9)]
    assert listing_ranges(present, present) == [(present[0], present[3])]  # gaps: no folders
    assert listing_ranges([present[0], present[2]], present) == [
        (present[0], present[0]),
        (present[2], present[2]),
    ]
    assert listing_ranges([], present) == []


def state(files: int, modified: int, digest: int) -> DayState:
    return DayState(files, modified, digest)


@pytest.mark.parametrize(
    ("old", "new", "changed"),
    [
        (None, state(1, 10, 1), True),  # a new day
        (None, NO_FILES, False),  # a folder with no files of the format
        (state(2, 10, 1), state(2, 10, 1), False),
        (state(2, 10, 1), state(2, 12, 2), True),  # rewritten in place
        (state(2, 10, 1), state(3, 12, 2), True),  # a new file
        (state(2, 10, 1), state(3, 5, 2), True),  # a new file with an old mtime
        (state(2, 10, 1), state(1, 10, 2), False),  # a file deleted
        (state(2, 10, 1), NO_FILES, False),  # every file deleted (expired)
        (state(3, 10, 1), state(2, 12, 2), True),  # three files compacted into two new ones
        (NO_FILES, state(1, 5, 2), True),  # a deleted file back
    ],
)
def test_day_changed(old, new, changed):
    assert day_changed(old, new) is changed


def test_day_states_digest_every_file_state():
    a = LandingFile("events/dt=2026-01-02/a.jsonl", 10, 1767312000.25)
    b = LandingFile("events/dt=2026-01-02/b.jsonl", 20, 1767312001.5)
    other = LandingFile("events/dt=2026-01-03/a.jsonl", 10, 1767312000.0)
    undated = LandingFile("events/undated/a.jsonl", 10, 1767312000.0)
    states = day_states([b, a, other, undated])
    assert set(states) == {date(2026, 1, 2), date(2026, 1, 3)}
    day = states[date(2026, 1, 2)]
    assert (day.files, day.modified) == (2, 1767312002)
    assert day_states([a, b])[date(2026, 1, 2)] == day  # order does not matter
    for changed in (LandingFile(a.key, 11, a.modified), LandingFile(a.key, 10, a.modified + 1)):
        assert day_states([changed, b])[date(2026, 1, 2)].digest != day.digest


def test_files_stamped_outside_the_cursors_range_still_pack():
    """A file stamped before 1970 or after 2106 failed every tick of both sources: the day's
    latest time is packed in 32 bits. It is clamped there; the digest keeps the exact time."""
    for stamp in (-86_400.0, 2.0**32 + 5):
        day = day_states([LandingFile("events/dt=2026-01-02/a.jsonl", 1, stamp)])
        source = SourceCursor(day)
        assert decode_cursor(encode_cursor({"events": source}))["events"].days == day


@pytest.mark.parametrize(
    ("folder", "day"),
    [
        ("events/dt=2026-01-05/", date(2026, 1, 5)),
        ("events/dt=2026-02-30/", None),
        ("events/undated/", None),
        ("events/dt=2026-01-05/x/", None),
    ],
)
def test_folder_day(folder, day):
    assert folder_day(folder) == day


def test_the_cursor_round_trips_and_grows_with_days_not_files():
    year = days(365)
    sources = {
        fmt.source: SourceCursor(
            {d: DayState(10**6, 1767225600 + i, 2**32 - 1 - i) for i, d in enumerate(year)},
            year[100],
        )
        for fmt in FORMATS
    }
    cursor = encode_cursor(sources)
    assert decode_cursor(cursor) == sources
    # ~19 bytes a day a source whatever the files: a year of two sources is ~14 KB, and the
    # 48 KB warning (below MySQL's 64 KB TEXT) comes after about three and a half years.
    assert 13_000 < len(cursor) < 14_000
    assert 3.4 < CURSOR_WARN_BYTES / len(cursor) < 3.6
    assert decode_cursor(None) == {fmt.source: SourceCursor() for fmt in FORMATS}


@pytest.mark.parametrize(
    "cursor",
    [
        "2026-01-05",  # not JSON
        "[1, 2]",
        '{"events/dt=2026-01-05/a.jsonl": 7}',  # the previous version's shape, broken
        *(
            json.dumps({"v": CURSOR_VERSION, "events": events})
            for events in (
                {"days": "AAA", "swept_to": None},  # not base64
                {"days": "AAAA", "swept_to": None},  # a day's record cut short
                {"days": "", "swept_to": "yesterday"},
                {"days": "", "swept_to": None, "requests": "7"},
                [],
            )
        ),
        json.dumps({"v": CURSOR_VERSION, "evnts": {"days": "", "swept_to": None}}),
    ],
)
def test_a_cursor_the_sensor_did_not_write_fails_in_one_line_saying_what_to_do(cursor):
    """Set by hand (the UI, `dagster sensor cursor --set`), a cursor that is not one the sensor
    writes failed every tick with a parser's traceback."""
    with pytest.raises(UnreadableCursor) as raised:
        decode_cursor(cursor)
    message = str(raised.value)
    assert "\n" not in message and raised.value.__cause__ is None
    assert message.startswith("the landing sensor's cursor is not one it writes")
    assert "dagster sensor cursor landing_zone_files --delete" in message


def test_day_bounds_hold_exactly_the_days_keys():
    start_after, end_before = day_bounds("events", date(2026, 1, 5), date(2026, 1, 6))
    inside = ["events/dt=2026-01-05/a.jsonl", "events/dt=2026-01-06/z/y", "events/dt=2026-01-06/"]
    outside = [
        "events/dt=2026-01-04/z.jsonl",
        "events/dt=2026-01-07/a.jsonl",
        "events/dt=2026-01-06x/a.jsonl",
        "events/dt=2026-01-05",
    ]
    assert all(start_after < key < end_before for key in inside)
    assert not any(start_after < key < end_before for key in outside)
