"""Which partitions this sink owns, and the files a previous owner landed but never committed.

A crash between publishing a file and committing its offsets leaves a file whose range starts
exactly at the committed offset. Batching that range again could end it at another offset (the
time limit depends on what has arrived by then), and two files over overlapping offsets would
load records twice, since ingestion reads whole days. So a batch about to start at an offset a
landed file holds *adopts* that file instead: the sink commits the file's last offset + 1 and
skips its messages (their dead letters went out before the file was published). And a batch
ends before the first offset of the next landed file, which the batch after it adopts. No
landed range is ever written again with other bounds.

Every batch is checked, not only the first after an assignment: a group that never committed
(renamed, or its offsets expired) starts at the log's start and meets every file landed since,
and a stretch that left no file (a batch of dead letters only) broke the chain the first check
followed: every later range was landed a second time. A log start moved by retention into a
file adopts the rest of it. Each day folder of a partition is listed once while it is assigned
(the day's first batch), since a batch never spans days and this sink's own files end before
any batch it opens.

Only a file of the same topic incarnation is adopted: its name carries the topic id, read at
the assignment (`topics.describe_topic_id`). A topic deleted and created again counts its
offsets from 0 again, so an older incarnation's file holding the offset holds other messages;
adopting it would skip the new ones. Files named before names carried the id are never adopted,
for the same reason.
"""

from __future__ import annotations

import bisect
from datetime import date

from data_platform.resources.landing import LandingZone
from data_platform.stream.landing_files import landed_ranges

# Day folders whose landed ranges are kept per sink: a stream whose days alternate would
# otherwise list a folder per batch.
_DAYS_KEPT = 16


class Adoption:
    def __init__(self, landing: LandingZone):
        self._landing = landing
        self.owned: set[int] = set()
        # The topic's id at the last assignment. The group's assignment is eager (every one
        # follows the revocation of all partitions), so it holds for every owned partition.
        self.topic_id = ""
        # (partition, day) -> the (first, last) offsets of the files landed there, by first.
        self._ranges: dict[tuple[int, date], list[tuple[int, int]]] = {}
        # partition -> first offset after an adopted file; read per message, so a plain dict.
        self.skip_below: dict[int, int] = {}

    def assign(self, partitions: set[int], topic_id: str) -> None:
        self.owned |= partitions
        self.topic_id = topic_id
        self._drop_ranges(partitions)

    def forget(self, partitions: set[int]) -> None:
        self.owned -= partitions
        self._drop_ranges(partitions)
        for partition in partitions:
            self.skip_below.pop(partition, None)

    def _drop_ranges(self, partitions: set[int]) -> None:
        for key in [key for key in self._ranges if key[0] in partitions]:
            del self._ranges[key]

    def _landed(self, partition: int, day: date) -> list[tuple[int, int]]:
        key = (partition, day)
        if key not in self._ranges:
            if len(self._ranges) >= _DAYS_KEPT:
                del self._ranges[next(iter(self._ranges))]
            self._ranges[key] = landed_ranges(self._landing, day, self.topic_id, partition)
        return self._ranges[key]

    def landed_end(self, partition: int, day: date | None, first: int) -> int | None:
        """The last offset of a landed file holding offset `first`, now to be skipped; else None.

        `day` None: a batch of misdated messages, which no file ever holds (they are always a
        batch of their own)."""
        self.skip_below.pop(partition, None)
        if day is None:
            return None
        ranges = self._landed(partition, day)
        holding = bisect.bisect_right(ranges, (first, float("inf"))) - 1
        if holding < 0 or ranges[holding][1] < first:
            return None
        last = ranges[holding][1]
        self.skip_below[partition] = last + 1
        return last

    def next_landed(self, partition: int, day: date | None, first: int) -> int | None:
        """The first offset of the next file landed in `day` after offset `first`: a batch from
        `first` must end before it. None if there is none (or `day` is None)."""
        if day is None:
            return None
        ranges = self._landed(partition, day)
        after = bisect.bisect_right(ranges, (first, float("inf")))
        return ranges[after][0] if after < len(ranges) else None
