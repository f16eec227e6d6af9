"""How long a new series of `data-platform metrics` reads 0 before its real value.

`delta()` and `increase()` see a change only between two stored samples of one series: a series
whose first stored sample is already 1 (a job's first run, failed) is no rise, and the alert on
it never fires. So the exporter exposes a new label set at 0 first. One scrape at 0 was not
enough: that response is not always a sample in the Prometheus that evaluates the alert (the
scrape timed out on a loaded machine, the other server of an HA pair scraped first, or a person
curled /metrics), and then the 0 was never stored. A span of time at 0, a few scrape intervals
long, is seen by every Prometheus scraping in that span.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)


class NewSeriesHold(Generic[Key]):
    """Label sets held at 0 from when the exporter first found them until `seconds` later.

    Only label sets still held are kept here: a scrape's cost does not grow with history.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._found_at: dict[Key, float] = {}

    def start(self, key: Key) -> None:
        """Hold `key`, first found now (held already: no change)."""
        self._found_at.setdefault(key, self._clock())

    def release(self) -> list[Key]:
        """The label sets whose hold ended by now, forgotten here: from now on, their real
        values."""
        now = self._clock()
        ended = [key for key, at in self._found_at.items() if now - at >= self._seconds]
        for key in ended:
            del self._found_at[key]
        return ended

    def __contains__(self, key: object) -> bool:
        """Whether `key` is still held (as of the last `release()`)."""
        return key in self._found_at
