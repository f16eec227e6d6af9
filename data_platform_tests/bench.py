"""`make bench`: the platform against bare DuckDB and plain dbt, side by side, in one run.

Each comparison runs both sides on the same data on this machine, alternating, and reports
medians and their ratio, so a loaded machine slows both sides alike.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

REPEATS = 3
DAY = date(2026, 1, 5)
BIN = Path(sys.executable).parent


def median_seconds(action: Callable[[], None], prepare: Callable[[], None] | None = None) -> float:
    times = []
    for _ in range(REPEATS):
        if prepare:
            prepare()
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def alternate(
    first: Callable[[], None], second: Callable[[], None], prepare: Callable[[], None]
) -> tuple[float, float]:
    """Median seconds of each side, interleaved so both see the same machine load."""
    a, b = [], []
    for _ in range(REPEATS):
        for action, times in ((first, a), (second, b)):
            prepare()
            began = time.perf_counter()
            action()
            times.append(time.perf_counter() - began)
    return statistics.median(a), statistics.median(b)


def report(name: str, ours: float, baseline: float, goal: str, ok: bool) -> None:
    print(
        f"{name}: platform {ours:.2f}s, baseline {baseline:.2f}s -> {goal} [{'ok' if ok else 'MISSED'}]"
    )


def simulated_home(root: Path, days: int, events_per_day: int) -> dict[str, str]:
    env = {**os.environ, "DATA_PLATFORM_HOME": str(root)}
    subprocess.run(
        [str(BIN / "data-platform"), "simulate", "--quiet", "--days", str(days),
         "--end-date", str(DAY), "--users", "20000", "--events-per-day", str(events_per_day)],
        env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return env


def bench_ingestion(root: Path) -> None:
    """One day of 1,000,000 events through raw/events vs a bare read_json into a table."""
    import dagster as dg
    import duckdb

    from data_platform.assets.raw import DEAD_LETTER_SPEC, RAW_FILE_ASSETS
    from data_platform.resources.build import build_resources
    from data_platform.settings import load_settings

    env = simulated_home(root, days=1, events_per_day=1_000_000)
    settings = load_settings(env)
    files = sorted(str(p) for p in (settings.home / "landing" / "events" / f"dt={DAY}").iterdir())
    bare_db, ours_db = root / "bare.duckdb", settings.warehouse
    resources = build_resources(settings)
    events_asset = [a for a in RAW_FILE_ASSETS if a.key.path[-1] == "events"]

    def fresh() -> None:
        for path in (bare_db, ours_db):
            path.unlink(missing_ok=True)

    def bare() -> None:
        with duckdb.connect(str(bare_db)) as conn:
            conn.execute(
                "CREATE TABLE events AS SELECT * FROM read_json(?, format = 'newline_delimited', "
                "ignore_errors = true)",
                [files],
            )

    def ours() -> None:
        result = dg.materialize(
            [*events_asset, DEAD_LETTER_SPEC], resources=resources, partition_key=str(DAY)
        )
        assert result.success

    bare_s, ours_s = alternate(bare, ours, fresh)
    ratio = bare_s / ours_s
    report(
        "ingest 1M events",
        ours_s,
        bare_s,
        f"throughput {1e6 / ours_s:,.0f} events/s = {ratio:.2f}x bare read_json (goal >= 0.6x)",
        ratio >= 0.6,
    )


def main() -> None:
    import logging

    logging.getLogger("dagster").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        root = Path(tmp)
        bench_ingestion(root / "ingestion")


if __name__ == "__main__":
    main()
