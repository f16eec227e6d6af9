"""The landing-zone and source-database sensors, against real files (local and S3) and SQLite."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

import boto3
import dagster as dg
import pytest
import sqlalchemy as sa

from data_platform.assets.raw import RAW_FILE_ASSETS, RAW_SOURCE_TABLE_ASSETS
from data_platform.automation.landing_sensor import day_ranges, landing_zone_sensor
from data_platform.automation.source_database_sensor import source_database_sensor
from data_platform.resources.landing import LandingZone
from data_platform.simulator import SimulationConfig, simulate
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


def events_file(landing, tmp_path, day: str, name: str = "a.jsonl", lines: int = 1) -> str:
    key = f"events/dt={day}/{name}"
    put_lines(landing, key, [json.dumps({"event_id": f"e{i}"}) for i in range(lines)], tmp_path)
    return key


def test_many_new_days_are_one_range_request_per_source(landing, tmp_path):
    for day in ("2026-01-01", "2026-01-02", "2026-01-03", "2026-01-05"):
        events_file(landing, tmp_path, day)
    put_lines(landing, "payments/dt=2026-01-02/p.csv", ["payment_id", "p1"], tmp_path)
    put_lines(landing, "events/dt=2026-01-04/notes.txt", ["not a landing file"], tmp_path)
    put_lines(landing, "events/undated/a.jsonl", ["{}"], tmp_path)

    result = tick(landing_zone_sensor, None, landing=landing)

    assert requested(result) == [
        ("events", "2026-01-01", "2026-01-05"),
        ("payments", "2026-01-02", "2026-01-02"),
    ]
    request = next(r for r in result.run_requests if r.asset_selection == [EVENTS])
    assert request.run_key and not request.partition_key
    assert set(json.loads(result.cursor)) == {
        "events/dt=2026-01-01/a.jsonl",
        "events/dt=2026-01-02/a.jsonl",
        "events/dt=2026-01-03/a.jsonl",
        "events/dt=2026-01-05/a.jsonl",
        "payments/dt=2026-01-02/p.csv",
    }


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
    assert "events/dt=2026-01-03/a.jsonl" not in json.loads(gone.cursor)
    events_file(landing, tmp_path, "2026-01-03")
    back = tick(landing_zone_sensor, gone.cursor, landing=landing)
    assert requested(back) == [("events", "2026-01-03", "2026-01-03")]


def test_days_outside_the_partitions_wait(resources, tmp_path):
    landing = resources["landing"]
    events_file(landing, tmp_path, "2025-12-31")  # before DATA_PLATFORM_START_DATE
    events_file(landing, tmp_path, "2099-01-01")  # not a partition yet
    result = tick(landing_zone_sensor, None, landing=landing)
    assert result.run_requests == []
    assert json.loads(result.cursor) == {}


@pytest.mark.parametrize(
    ("days", "ranges"),
    [
        ([], []),
        (["01-03", "01-01", "01-02"], [("01-01", "01-03")]),
        (["01-01", "01-08"], [("01-01", "01-08")]),  # a gap of 6 days merges
        (["01-01", "01-09"], [("01-01", "01-01"), ("01-09", "01-09")]),  # 7 days apart: two
        (["01-01", "01-01", "01-20", "01-22"], [("01-01", "01-01"), ("01-20", "01-22")]),
    ],
)
def test_day_ranges(days, ranges):
    as_date = lambda md: date.fromisoformat(f"2026-{md}")  # noqa: E731
    expected = [(as_date(a), as_date(b)) for a, b in ranges]
    assert day_ranges([as_date(d) for d in days], max_gap_days=7) == expected


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
    assert json.loads(moved.cursor)["users"].startswith("2026-02-01")
    # The sensor never opens the warehouse, which a run may be writing.
    assert not settings.warehouse.exists()


def test_no_source_database_yet_is_a_skip_that_creates_nothing(settings, resources):
    result = tick(source_database_sensor, None, source_database=resources["source_database"])
    assert result.run_requests == [] and "does not exist" in result.skip_message
    assert not Path(settings.source_db_url.removeprefix("sqlite:///")).exists()
