"""`make bench-year`: a year of sources, simulated, then backfilled through the whole graph.

365 days of about 50,000 events a day (18.6 million events, 3.1 GB of landing files) and the
app database they go with. Each measurement is one run (a year does not repeat in a coffee
break), so a busy machine shows: the load average is printed before and after.

- the simulator: `data-platform simulate` of the year, a figure of its own;
- the backfill: one `data-platform materialize` of the whole graph over the 365 days (raw
  sources and files, dbt, checks, analytics), embedded (DuckDB, steps in the run's process),
  with its time per step from the run's event log;
- the same landing files read by bare DuckDB into two tables (`read_json` / `read_csv`,
  ignore_errors as in `make bench`), the events both as `make bench` reads them (types
  detected, raw.events' contract types): the faster is the floor any ingestion of them has;
- the partitioned dbt facts (`tag:partitioned`: fct_events, fct_payments) re-run alone over
  the last 1, 7, 30, 90 and 365 days of the year: separate runs, because one backfill has one
  window; the step's own time is read from each run, without the process start and the
  definitions load that every run pays;
- one day of the whole graph once the year is in: what a daily run costs at that point.

Peak memory: the resident sets of the run and its dbt subprocess together (sampled), and the
kernel's peak of the largest process alone.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb

from data_platform_tests.backfill_run import CLI, Backfill, Measured, backfill, run_measured
from data_platform_tests.bench import (
    BARE_READS,
    bare_read_events,
    stricter_baseline,
)
from data_platform_tests.helpers import environ_without_settings

DAYS = 365
LAST = date(2026, 11, 30)
FIRST = LAST - timedelta(days=DAYS - 1)
EVENTS_PER_DAY = 50_000
USERS = 20_000
FACT_WINDOWS = (1, 7, 30, 90, 365)
FACTS_STEP = "dbt_partitioned_facts"
RAW_FILE_STEPS = ("raw__events", "raw__payments")


def year_env(root: Path) -> dict[str, str]:
    """An embedded platform in `root` whose daily partitions start on the year's first day."""
    (root / "dagster_home").mkdir(parents=True)
    (root / "dagster_home" / "dagster.yaml").touch()  # the defaults, without a notice saying so
    return {
        **environ_without_settings(),
        "DATA_PLATFORM_HOME": str(root),
        "DAGSTER_HOME": str(root / "dagster_home"),
        "DATA_PLATFORM_START_DATE": str(FIRST),
    }


def _gb(size: int) -> str:
    return f"{size / 1e9:.1f} GB"


def _load() -> str:
    return "load average " + " ".join(f"{n:.1f}" for n in os.getloadavg())


def _cost(measured: Measured) -> str:
    """CPU and memory of a measured command, which one wall-clock figure does not show."""
    return (
        f"CPU {measured.cpu_seconds:.0f}s, peak RSS {_gb(measured.peak_rss)} (processes "
        f"together; the largest alone {_gb(measured.max_rss)})"
    )


def bare_ingestion(landing: Path, database: Path, read: str) -> tuple[float, float]:
    """(seconds, CPU seconds) for bare DuckDB, in this process, to read every events file (the
    `read` of BARE_READS) and payments file into a table."""
    events = sorted(str(p) for p in landing.glob("events/dt=*/*") if not p.name.startswith("."))
    payments = sorted(str(p) for p in landing.glob("payments/dt=*/*.csv"))
    began, cpu = time.perf_counter(), time.process_time()
    with duckdb.connect(str(database)) as conn:
        bare_read_events(conn, events, read)
        # Export files name their columns in a different order each: match them by name.
        conn.execute(
            "CREATE TABLE payments AS SELECT * FROM read_csv(?, union_by_name = true, "
            "ignore_errors = true)",
            [payments],
        )
    return time.perf_counter() - began, time.process_time() - cpu


def print_steps(run: Backfill, days: int, shown: int = 10) -> None:
    """The run's slowest steps, and the others' total (about 40 steps, most of them checks)."""
    steps = sorted(run.step_seconds.items(), key=lambda item: -item[1])
    for step, seconds in steps[:shown]:
        print(f"  {step}: {seconds:.1f}s ({seconds / days:.3f}s a day)")
    rest = steps[shown:]
    print(f"  {len(rest)} other steps: {sum(seconds for _, seconds in rest):.1f}s")


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # tens of minutes: each figure as it comes
    print(f"a year: {DAYS} days ({FIRST}..{LAST}), {EVENTS_PER_DAY:,} events a day; {_load()}")
    with tempfile.TemporaryDirectory(prefix="bench-year-") as tmp:
        root = Path(tmp)
        env = year_env(root)
        simulated = run_measured(
            [CLI, "simulate", "--quiet", "--days", str(DAYS), "--end-date", str(LAST),
             "--users", str(USERS), "--events-per-day", str(EVENTS_PER_DAY)],
            env,
        )  # fmt: skip
        landed = sum(p.stat().st_size for p in (root / "landing").rglob("*") if p.is_file())
        print(
            f"simulate the year: {simulated.seconds:.0f}s ({simulated.seconds / DAYS:.2f}s a day),"
            f" {_gb(landed)} of landing files, {_cost(simulated)}"
        )

        year = backfill(env, FIRST, LAST)
        print(
            f"backfill of the whole graph over the year, embedded, {year.runs} run: "
            f"{year.seconds:.0f}s ({year.seconds / DAYS:.2f}s a day), "
            f"{_cost(year.measured)}; its steps:"
        )
        print_steps(year, DAYS)

        reads = {
            read: bare_ingestion(root / "landing", root / f"bare-{n}.duckdb", read)
            for n, read in enumerate(BARE_READS)
        }
        judge = stricter_baseline({read: seconds for read, (seconds, _) in reads.items()})
        bare, bare_cpu = reads[judge]
        raw_files = sum(year.step_seconds.get(step, 0.0) for step in RAW_FILE_STEPS)
        print(
            "bare DuckDB read_json + read_csv of the same files, events "
            + ", ".join(f"{read}: {s:.0f}s (CPU {c:.0f}s)" for read, (s, c) in reads.items())
            + f"; the faster ({judge}) judges -> the whole backfill takes "
            f"{year.seconds / bare:.1f}x a bare "
            f"ingestion ({year.measured.cpu_seconds / bare_cpu:.1f}x its CPU); its raw file "
            f"steps {raw_files:.0f}s = {raw_files / bare:.2f}x (no goal)"
        )

        print(f"dbt partitioned facts ({FACTS_STEP}) by window, ending {LAST}, a year loaded:")
        for days in FACT_WINDOWS:
            run = backfill(env, LAST - timedelta(days=days - 1), LAST, select="tag:partitioned")
            step = run.step_seconds[FACTS_STEP]
            print(
                f"  {days:>3} day(s): {step:.1f}s ({step / days:.2f}s a day); the run "
                f"{run.seconds:.0f}s, {_cost(run.measured)}"
            )

        day = backfill(env, LAST, LAST)
        print(
            f"one day ({LAST}) of the whole graph with the year loaded: {day.seconds:.0f}s, "
            f"{_cost(day.measured)}; its steps:"
        )
        print_steps(day, 1)
    print(_load())


if __name__ == "__main__":
    main()
