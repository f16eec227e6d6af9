"""Which partitions this sink owns, and the files a previous owner landed but never committed.

A crash between publishing a file and committing its offsets leaves a file whose range starts
exactly at the committed offset. Batching that range again could end it at another offset (the
time limit depends on what has arrived by then), and two files over overlapping offsets would
load records twice, since ingestion reads whole days. So the first batch of a newly assigned
partition looks for a landed file starting at its offset and *adopts* it: the sink commits the
file's last offset + 1 and skips its messages (their dead letters went out before the file was
published). The check repeats at the next batch until none is found, so a chain of uncommitted
files is adopted too. No landed range is ever written again with other bounds.

Only a file of the same topic incarnation is adopted: its name carries the topic id, read at
the assignment (`topics.describe_topic_id`). A topic deleted and created again counts its
offsets from 0 again, so an older incarnation's file starting at the committed offset holds
other messages; adopting it would skip the new ones. Files named before names carried the id
are never adopted, for the same reason.
"""

from __future__ import annotations

from datetime import date

from data_platform.resources.landing import LandingZone
from data_platform.stream.landing_files import published_batch


class Adoption:
    def __init__(self, landing: LandingZone):
        self._landing = landing
        self.owned: set[int] = set()
        # The topic's id at the last assignment. The group's assignment is eager (every one
        # follows the revocation of all partitions), so it holds for every owned partition.
        self.topic_id = ""
        self._unchecked: set[int] = set()  # partitions whose next batch may meet a landed file
        # partition -> first offset after an adopted file; read per message, so a plain dict.
        self.skip_below: dict[int, int] = {}

    def assign(self, partitions: set[int], topic_id: str) -> None:
        self.owned |= partitions
        self._unchecked |= partitions
        self.topic_id = topic_id

    def forget(self, partitions: set[int]) -> None:
        self.owned -= partitions
        self._unchecked -= partitions
        for partition in partitions:
            self.skip_below.pop(partition, None)

    def landed_end(self, partition: int, day: date | None, first: int) -> int | None:
        """The last offset of a landed file starting at `first`, now to be skipped; else None.

        `day` None: a batch of misdated messages, which no file ever holds (they are always a
        batch of their own); the batch after it may still meet one."""
        self.skip_below.pop(partition, None)
        if partition not in self._unchecked or day is None:
            return None
        last = published_batch(self._landing, day, self.topic_id, partition, first)
        if last is None:
            self._unchecked.discard(partition)
        else:
            self.skip_below[partition] = last + 1
        return last
