"""`make bench`: the landing sensor's tick time and cursor size with 20,000 files, local and S3.

The files are tiny and spread over a fixed year of daily partitions (the 365 days ending
`LAST_DAY`, the sensor evaluated as of that day), as a year of frequent drops looks: the same
workload whatever the date it runs on. Each back end is measured the same way, with a fresh
context from the stored cursor per tick, as the daemon runs it: the first tick (no cursor:
every day is new), the ticks it takes to catch up, a tick with nothing new (median of three), a
tick after 10 files land in the newest day, the cursor's size, and how many ticks pass before
a file rewritten in the oldest day is requested (the rotation's delay). S3 is moto's ThreadedMotoServer on 127.0.0.1, serving from this very
process: its tick times include the server's work under the same GIL, so read them for their
shape (S3 requests and keys per tick), not as real S3 latency.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import boto3
import dagster as dg
from botocore.client import BaseClient
from moto.server import ThreadedMotoServer

from data_platform.assets.raw import RAW_FILE_ASSETS
from data_platform.automation.landing_sensor import landing_zone_sensor
from data_platform.partitions import DAILY_PARTITIONS
from data_platform.resources.landing import LandingZone

FILES = 20_000
DAYS = 365
# The year's last day: the default DATA_PLATFORM_START_DATE (2026-01-01) is its first.
LAST_DAY = date(2026, 12, 31)
NEW_FILES = 10
MAX_TICKS = 100
LINE = b'{"event_id": "e"}\n'
# The sensor needs the assets it targets; what their resources are does not matter here.
DEFS = dg.Definitions(
    assets=RAW_FILE_ASSETS,
    sensors=[landing_zone_sensor],
    resources={name: dg.ResourceDefinition.none_resource() for name in ("warehouse", "landing")},
)


@dataclass(frozen=True)
class Tick:
    seconds: float
    list_requests: int  # S3 ListObjectsV2 requests
    listed: int  # the keys and folders they returned
    result: dg.SensorExecutionData

    def describe(self) -> str:
        if not self.list_requests:
            return f"{self.seconds:.2f}s"
        return f"{self.seconds:.2f}s ({self.list_requests} list requests, {self.listed:,} keys)"


@dataclass(frozen=True)
class Zone:
    landing: LandingZone
    put: Callable[..., None]  # put(key, data=LINE)


def landing_days() -> list[date]:
    """The `DAYS` days ending `LAST_DAY`, each a partition as of `LAST_DAY`."""
    days = [LAST_DAY - timedelta(days=back) for back in reversed(range(DAYS))]
    keys = set(DAILY_PARTITIONS.get_partition_keys())
    missing = [d for d in days if d.isoformat() not in keys]
    if missing:
        raise SystemExit(
            f"bench_landing: {len(missing)} of the year's days are not partitions "
            f"(DATA_PLATFORM_START_DATE after {days[0]}?): {missing[0]}..{missing[-1]}"
        )
    return days


def landing_keys(days: list[date], count: int) -> list[str]:
    """`count` event-file keys spread evenly over `days`."""
    per_day, extra = divmod(count, len(days))
    return [
        f"events/dt={day}/part-{i:04d}.jsonl"
        for n, day in enumerate(days)
        for i in range(per_day + (1 if n < extra else 0))
    ]


@contextmanager
def s3_listing() -> Iterator[Counter]:
    """Counts the ListObjectsV2 requests made in this process and the entries they return.

    Process-wide (botocore's client class): the sensor's context builds its own copy of the
    landing resource, and with it its own client, at every tick.
    """
    counts: Counter = Counter()
    original = BaseClient._make_api_call

    def counted(client, operation, params):
        response = original(client, operation, params)
        if operation == "ListObjectsV2":
            counts["requests"] += 1
            counts["listed"] += len(response.get("Contents", []))
            counts["listed"] += len(response.get("CommonPrefixes", []))
        return response

    BaseClient._make_api_call = counted
    try:
        yield counts
    finally:
        BaseClient._make_api_call = original


def tick(instance: dg.DagsterInstance, landing: LandingZone, cursor: str | None) -> Tick:
    """One evaluation from a fresh context, as the daemon runs it; the context is built outside
    the clock."""
    with (
        dg.build_sensor_context(
            instance=instance,
            cursor=cursor,
            resources={"landing": landing},
            definitions=DEFS,
        ) as context,
        s3_listing() as counts,
    ):
        began = time.perf_counter()
        result = landing_zone_sensor.evaluate_tick(context)
        seconds = time.perf_counter() - began
    return Tick(seconds, counts["requests"], counts["listed"], result)


def measure(zone: Zone, days: list[date]) -> dict:
    """The ticks over a landing zone holding files in `days` (`part-0000.jsonl` in each)."""
    with dg.DagsterInstance.ephemeral() as instance:
        first = tick(instance, zone.landing, None)
        # The listing budget defers older unknown days to later ticks: catch up first.
        catching_up = [first]
        while catching_up[-1].result.run_requests and len(catching_up) < MAX_TICKS:
            catching_up.append(tick(instance, zone.landing, catching_up[-1].result.cursor))
        quiet = [tick(instance, zone.landing, catching_up[-1].result.cursor)]
        quiet += [tick(instance, zone.landing, quiet[-1].result.cursor) for _ in range(2)]
        assert all(not t.result.run_requests for t in quiet)
        for i in range(NEW_FILES):
            zone.put(f"events/dt={days[-1]}/new-{i:02d}.jsonl")
        new = tick(instance, zone.landing, quiet[-1].result.cursor)
        assert [r.partition_key for r in new.result.run_requests] == [str(days[-1])]

        time.sleep(1.1)  # S3 LastModified has whole seconds: the rewrite is a later second.
        zone.put(f"events/dt={days[0]}/part-0000.jsonl", LINE * 2)
        cursor, ticks_to_see = new.result.cursor, None
        for n in range(1, MAX_TICKS + 1):
            result = tick(instance, zone.landing, cursor).result
            cursor = result.cursor
            if any(r.partition_key == str(days[0]) for r in result.run_requests):
                ticks_to_see = n
                break
    return {
        "first": first,
        "ticks_to_catch_up": len(catching_up) - 1,
        "quiet": sorted(quiet, key=lambda t: t.seconds)[1],
        "ten_new_files": new,
        "cursor_bytes": len(cursor.encode()),
        "old_day_rewrite_seen_after_ticks": ticks_to_see,
    }


def local_zone(root: Path, keys: list[str]) -> Zone:
    def put(key: str, data: bytes = LINE) -> None:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    for key in keys:
        put(key)
    return Zone(LandingZone(url=str(root)), put)


@contextmanager
def s3_server() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1, with the environment LandingZone reads pointing at it."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    variables = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield variables["AWS_ENDPOINT_URL"]
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


def s3_zone(endpoint: str, keys: list[str]) -> Zone:
    bucket = f"bench-landing-{uuid.uuid4().hex[:8]}"
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=bucket)

    def put(key: str, data: bytes = LINE) -> None:
        client.put_object(Bucket=bucket, Key=f"zone/{key}", Body=data)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put, keys))
    return Zone(LandingZone(url=f"s3://{bucket}/zone"), put)


def run(files: int = FILES) -> dict[str, dict]:
    """The figures of each back end, keyed 'local' and 's3'."""
    results = {}
    # The sensor's partitions, and so the days it requests, as of noon on LAST_DAY.
    as_of = datetime(LAST_DAY.year, LAST_DAY.month, LAST_DAY.day, 12, tzinfo=UTC)
    with dg.partition_loading_context(effective_dt=as_of):
        days = landing_days()
        keys = landing_keys(days, files)
        with tempfile.TemporaryDirectory(prefix="bench-landing-") as tmp:
            results["local"] = measure(local_zone(Path(tmp), keys), days)
        with s3_server() as endpoint:
            began = time.perf_counter()
            zone = s3_zone(endpoint, keys)
            upload_s = time.perf_counter() - began
            results["s3"] = measure(zone, days) | {"upload_s": upload_s}
    for result in results.values():
        result |= {"files": len(keys), "days": len(days)}
    return results


if __name__ == "__main__":
    for backend, figures in run().items():
        print(backend, figures)
