"""`simulate` and `append_day`: run simulated days and publish what they produce.

Re-running `simulate` with the same config regenerates identically: every file of its window is
rewritten byte for byte under the same key (keys do not depend on volumes), and the database
tables are replaced by the same rows. The simulator's files that it did not write (another
window's, `append_day`'s after it) are removed: they belong to another world than the database
now holds. `append_day` continues from the database (the world) and the landing zone (the first
simulated day, for late files), so `simulate(days=n)` followed by `append_day` writes the same
files and rows as `simulate(days=n + 1)`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, timedelta
from typing import TYPE_CHECKING

from data_platform.simulator import database
from data_platform.simulator.catalog import initial_world
from data_platform.simulator.clock import day_of_ms
from data_platform.simulator.config import SimulationConfig, SimulationError
from data_platform.simulator.day import DayResult, simulate_day
from data_platform.simulator.files import publish, workspace
from data_platform.simulator.summary import FileReport, SimulationSummary
from data_platform.simulator.world import World

if TYPE_CHECKING:
    from pathlib import Path

    import duckdb

    from data_platform.resources.landing import LandingZone

Progress = Callable[[str], None]
# The keys the simulator names its files with (event_files.py, payments.py).
_SIMULATED = re.compile(
    r"^(events/dt=[\d-]{10}/(\d{8}-\d{2}00\.jsonl(\.gz)?|late-\d{8}\.jsonl)"
    r"|payments/dt=[\d-]{10}/psp-export-\d{8}-(am|pm)\.csv)$"
)
_DT = re.compile(r"^(?:events|payments)/dt=(\d{4}-\d{2}-\d{2})/")


def simulate(
    config: SimulationConfig,
    landing: LandingZone,
    source_db_url: str,
    progress: Progress | None = None,
) -> SimulationSummary:
    """Create the world: `config.days` days of history ending at `config.last_day`."""
    days = config.dates
    world = initial_world(config.seed, config.users, config.products, days[0])
    summary = SimulationSummary(days=days)
    # A day's files are rendered and published on a second thread while the next day is
    # simulated: the one is numpy and pandas, the other DuckDB, gzip and file writes, which
    # release the GIL, so a year takes the longer of the two instead of their sum.
    with workspace() as (con, workdir), ThreadPoolExecutor(max_workers=1) as publisher:
        publishing: tuple[DayResult, Future[list[FileReport]]] | None = None
        for day in days:
            result = simulate_day(config, world, day, first_day=days[0])
            world = result.world
            if publishing:
                _published(*publishing, summary, progress)
            publishing = result, publisher.submit(_publish_day, con, result, landing, workdir)
        if publishing:
            _published(*publishing, summary, progress)
    remove_other_worlds(landing, {report.key for report in summary.files})
    written = database.replace_world(database.connect(source_db_url), world)
    summary.db_inserted.update(written)
    return summary


def remove_other_worlds(landing: LandingZone, written: set[str]) -> list[str]:
    """Delete the simulator's files (by their names) that this simulation did not write.

    A world depends on its first day, so a simulate over an older one (run on another day,
    with its default end date yesterday, or with fewer days) left that world's first days
    behind: payments of order ids that the new database gives other amounts and times, events
    of users before they signed up. Other files in the zone are not the simulator's to touch.
    """
    stale = [
        found.key
        for prefix in ("events/", "payments/")
        for found in landing.list_files(prefix)
        if found.key not in written and _SIMULATED.match(found.key)
    ]
    for key in stale:
        landing.delete_file(key)
    return stale


def _publish_day(
    con: duckdb.DuckDBPyConnection, result: DayResult, landing: LandingZone, workdir: Path
) -> list[FileReport]:
    return [report for job in result.jobs for report in publish(con, job, landing, workdir)]


def _published(
    result: DayResult,
    files: Future[list[FileReport]],
    summary: SimulationSummary,
    progress: Progress | None,
) -> None:
    """Wait for a day's files (in day order, so the summary lists them as they were written)."""
    summary.files += files.result()
    _tell(progress, result, summary)


def append_day(
    config: SimulationConfig,
    landing: LandingZone,
    source_db_url: str,
    progress: Progress | None = None,
) -> SimulationSummary:
    """Advance the world by one day after the last simulated one.

    `config.days` and `config.end_date` are ignored: the day comes from the database.
    """
    engine = database.connect(source_db_url)
    world = database.read_world(engine)
    if world.users.empty:
        raise SimulationError(
            "the source database holds no simulated world: run `data-platform simulate` first"
        )
    day = last_simulated_day(world) + timedelta(days=1)
    landed = landed_days(landing)
    result = simulate_day(config, world, day, first_day=min(landed) if landed else day)
    summary = SimulationSummary(days=[day])
    with workspace() as (con, workdir):
        for job in result.jobs:
            summary.files += publish(con, job, landing, workdir)
    for table, (inserted, updated) in database.apply_changes(engine, result.changes).items():
        summary.db_inserted[table] += inserted
        summary.db_updated[table] += updated
    _tell(progress, result, summary)
    return summary


def last_simulated_day(world: World) -> date:
    """The newest change dates the world: every simulated day re-prices at least one product."""
    newest = max(
        int(world.table(name)["updated_at"].max())
        for name in ("users", "products", "orders")
        if len(world.table(name))
    )
    return day_of_ms(newest)


def landed_days(landing: LandingZone) -> list[date]:
    """The dt partitions that hold event or payment files.

    Payments too: with --to-kafka no event file lands, and append_day took each new day for
    the first simulated one, so it never wrote a late file: no late event reached the topic.
    """
    found = {
        _DT.match(f.key) for source in ("events/", "payments/") for f in landing.list_files(source)
    }
    return sorted(date.fromisoformat(m.group(1)) for m in found if m)


def _tell(progress: Progress | None, result: DayResult, summary: SimulationSummary) -> None:
    if progress is None:
        return
    day = result.day
    events = sum(f.records for f in summary.files if f.source == "events" and f.dt == day)
    progress(
        f"{day}: {events} events, {result.n_orders} orders, {result.n_payments} payments, "
        f"{sum(len(job.files) for job in result.jobs)} files"
    )
