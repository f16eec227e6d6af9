"""`make bench-scale`: peak memory of a `raw/events` run as the day grows (1M, 10M, 30M events).

Each size is a clean day of plain files (1.25M events, ~330 MB each) materialized by `data-platform materialize` in a child process, with the checks of
`raw/events` (the Pandera gate reads the whole partition); the kernel reports the child's
peak RSS (wait4). Goals (issue 13): <= 1 GB at 10M, and no more than a few hundred MB more
at 30M than at 1M. Takes ~15 minutes and ~9 GB of disk, hence its own target.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from data_platform_tests.bench import BIN, DAY, write_clean_day

SIZES = (1_000_000, 10_000_000, 30_000_000)
EVENTS_PER_FILE = 1_250_000


def measure(home: Path, events: int) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one `raw/events` run over a day of `events` clean events."""
    files = max(4, events // EVENTS_PER_FILE)
    write_clean_day(home / "landing" / "events" / f"dt={DAY}", events, files)
    env = {
        **os.environ,
        "DATA_PLATFORM_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster_home"),
    }
    (home / "dagster_home").mkdir(parents=True, exist_ok=True)
    command = [str(BIN / "data-platform"), "materialize", "--select", "key:raw/events"]
    began = time.perf_counter()
    child = subprocess.Popen(
        [*command, "--start", str(DAY), "--end", str(DAY)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - began
    assert os.waitstatus_to_exitcode(status) == 0, f"raw/events over {events:,} events failed"
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        [(rows,)] = conn.execute("SELECT count(*) FROM raw.events").fetchall()
    assert rows == events, f"{rows:,} rows loaded of {events:,}"
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    peaks = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for events in SIZES:
            home = Path(tmp) / str(events)
            seconds, peaks[events] = measure(home, events)
            shutil.rmtree(home)  # 30M events take ~6 GB of files and ~2 GB of warehouse
            print(
                f"raw/events over {events:,} clean events: {seconds:.0f}s "
                f"({events / seconds:,.0f} events/s), peak RSS {peaks[events]:,.0f} MB",
                flush=True,
            )
    growth = peaks[SIZES[-1]] - peaks[SIZES[0]]
    ok = peaks[10_000_000] <= 1024 and growth <= 300
    print(
        f"peak RSS at 10M: {peaks[10_000_000]:,.0f} MB (goal <= 1,024); growth 1M -> 30M: "
        f"{growth:,.0f} MB (goal <= 300) [{'ok' if ok else 'MISSED'}]"
    )


if __name__ == "__main__":
    sys.exit(main())
