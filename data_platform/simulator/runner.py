"""`simulate` and `append_day`: run simulated days and publish what they produce.

Re-running `simulate` with the same config regenerates identically: every file of its window is
rewritten byte for byte under the same key (keys do not depend on volumes), and the database
tables are replaced by the same rows. Files that `append_day` added after the window are left
alone. `append_day` continues from the database (the world) and the landing zone (the first
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
_DT = re.compile(r"^events/dt=(\d{4}-\d{2}-\d{2})/")


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
    written = database.replace_world(database.connect(source_db_url), world)
    summary.db_inserted.update(written)
    return summary


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
    landed = landed_event_days(landing)
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


def landed_event_days(landing: LandingZone) -> list[date]:
    """The dt partitions that hold event files."""
    found = {_DT.match(f.key) for f in landing.list_files("events/")}
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
