"""What to simulate: the knobs of `data-platform simulate`, validated once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from data_platform.simulator.clock import yesterday_utc


class SimulationError(RuntimeError):
    """The simulation cannot run as asked; the message is one line a person can act on."""


# The most days of history one simulation writes.
MAX_DAYS = 36_500
# The most users, products and events a day: the simulator holds the world and a day's events
# in memory, ~0.9 KB an event and ~0.9 KB a user (1M events: 850 MB; 2M users: 1.7 GB), so
# `--users 2000000000` grew for minutes, silent, until the machine ran out.
MAX_SIZES = {"users": 10_000_000, "events_per_day": 10_000_000, "products": 1_000_000}


@dataclass(frozen=True)
class SimulationConfig:
    """The simulated world's size and quality.

    `end_date` None means yesterday (UTC) at the moment of the call, which is convenient on the
    command line but not reproducible across days: tests and scripts pass it. The same config
    (with `end_date` set) always produces byte-identical files and identical database rows.
    """

    seed: int = 42
    days: int = 7
    end_date: date | None = None
    users: int = 1000
    events_per_day: int = 20_000
    defect_rate: float = 0.01
    products: int = 200

    def __post_init__(self) -> None:
        for name, low in (("days", 1), ("users", 1), ("events_per_day", 1), ("products", 1)):
            if getattr(self, name) < low:
                raise SimulationError(f"{name} must be at least {low}, got {getattr(self, name)}")
        if self.days > MAX_DAYS:  # days before year 1: an OverflowError traceback
            raise SimulationError(f"days is at most {MAX_DAYS} (a century), got {self.days}")
        for name, most in MAX_SIZES.items():
            if getattr(self, name) > most:
                raise SimulationError(
                    f"{name} is at most {most:,} (the simulator holds them in memory, about "
                    f"1 KB each), got {getattr(self, name):,}"
                )
        if self.seed < 0:
            raise SimulationError(f"seed must be a non-negative integer, got {self.seed}")
        if not 0.0 <= self.defect_rate <= 0.5:
            raise SimulationError(
                f"defect_rate is a fraction of records between 0 and 0.5, got {self.defect_rate}"
            )

    @property
    def last_day(self) -> date:
        return self.end_date or yesterday_utc()

    @property
    def dates(self) -> list[date]:
        """The simulated days, oldest first, ending at `last_day`."""
        last = self.last_day
        return [last - timedelta(days=offset) for offset in range(self.days - 1, -1, -1)]
