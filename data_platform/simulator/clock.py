"""Simulated time: epoch milliseconds (UTC) in int64 arrays.

Every timestamp the simulator produces is an integer number of milliseconds since the epoch, so
whole columns are numpy arithmetic and the values survive a round trip through any database
(DATETIME keeps microseconds) and through JSON text exactly.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
EPOCH = date(1970, 1, 1)


def day_start_ms(day: date) -> int:
    """Milliseconds of `day` 00:00 UTC."""
    return (day - EPOCH).days * DAY_MS


def day_of_ms(ms: int) -> date:
    return EPOCH + timedelta(days=int(ms) // DAY_MS)


def yesterday_utc() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


def to_datetimes(ms: pd.Series) -> list[datetime | None]:
    """Naive UTC datetimes for a database driver; missing values become None."""
    missing = ms.isna().to_numpy()
    # numpy turns datetime64 into datetime objects in C: no Python call per value.
    stamps = ms.to_numpy(dtype=np.int64, na_value=0).astype("datetime64[ms]").astype(object)
    stamps[missing] = None
    return stamps.tolist()


def from_datetimes(values: pd.Series) -> pd.Series:
    """The inverse of `to_datetimes`: naive UTC datetimes (or None) -> nullable Int64 ms."""
    stamps = pd.to_datetime(values).astype("datetime64[ms]")
    return (
        pd.Series(stamps.astype("int64"), index=values.index).where(stamps.notna()).astype("Int64")
    )


def diurnal_offsets(rng: np.random.Generator, n: int) -> np.ndarray:
    """Times of day (ms) shaped like web traffic: a lunch peak, an evening peak, a quiet night."""
    component = rng.choice(3, size=n, p=[0.15, 0.35, 0.50])
    hours = np.where(
        component == 0,
        rng.uniform(0, 24, n),
        np.where(component == 1, rng.normal(12.5, 2.5, n), rng.normal(20.5, 2.0, n)),
    )
    return (hours * HOUR_MS).astype(np.int64) % DAY_MS
