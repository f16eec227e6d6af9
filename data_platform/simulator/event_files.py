"""How one day's events are cut into files.

The app's collector ships a file every four hours, so a day has six files named after the
window they cover (`20260105-0400.jsonl`); two of them are gzipped, as a collector upgrade
might do. A late file holds events a mobile client buffered offline and uploaded days later.
The contract files by arrival (`dt` is the day a file arrives, and the partition), so it lands
in its arrival day's folder, beside that day's own files; its name, `late-<event day>.jsonl`,
tells a person which earlier day its events belong to (their occurred_at).
"""

from __future__ import annotations

from datetime import date

import numpy as np

from data_platform.simulator import event_records
from data_platform.simulator.clock import HOUR_MS, day_start_ms
from data_platform.simulator.event_records import EVENT_DEFECTS
from data_platform.simulator.event_sql import EVENT_LINE_SQL, line_table
from data_platform.simulator.files import PlannedFile, RenderJob

WINDOW_MS = 4 * HOUR_MS
GZIPPED_WINDOWS = (1, 4)


def _planned(key: str, day: date, kinds: np.ndarray) -> PlannedFile:
    return PlannedFile(key=key, source="events", dt=day, kinds=kinds, defect_kinds=EVENT_DEFECTS)


def plan_event_files(
    rng: np.random.Generator, day: date, columns: dict[str, np.ndarray], rate: float
) -> RenderJob:
    """Six files of the day's events (some may be empty on a tiny day), defects injected."""
    per_line, kinds, lines = event_records.inject(rng, columns, rate)
    arrival = columns["ts_ms"][lines.position] - day_start_ms(day)
    window = np.clip(arrival // WINDOW_MS, 0, 5)
    bounds = np.searchsorted(window, np.arange(7))  # lines are in arrival order
    files = []
    for number in range(6):
        suffix = ".jsonl.gz" if number in GZIPPED_WINDOWS else ".jsonl"
        key = f"events/dt={day.isoformat()}/{day:%Y%m%d}-{4 * number:02d}00{suffix}"
        files.append(_planned(key, day, kinds[bounds[number] : bounds[number + 1]]))
    return RenderJob(lines=line_table(per_line), sql=EVENT_LINE_SQL, files=files)


def plan_late_file(
    rng: np.random.Generator,
    arrival: date,
    event_day: date,
    columns: dict[str, np.ndarray],
    rate: float,
) -> RenderJob:
    """The late file of `event_day`'s events, under `arrival`'s dt: a partition holds what
    arrived that day, so a day already loaded is not re-opened by a client's upload."""
    per_line, kinds, _ = event_records.inject(rng, columns, rate)
    key = f"events/dt={arrival.isoformat()}/late-{event_day:%Y%m%d}.jsonl"
    return RenderJob(
        lines=line_table(per_line), sql=EVENT_LINE_SQL, files=[_planned(key, arrival, kinds)]
    )
