"""One landing file in the making: a run of consecutive offsets of one partition and one day.

A batch never spans partitions or days, so its file name (`batch_key`) is a function of its
offsets alone. Checks run on the whole batch at once (one UTF-8 decode, one search for blank or
multi-line values) and fall back to message by message only when one fails: the fast path does
no Python work per message beyond appending its value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

# A value with no visible character would be a blank line, which ingestion skips: it would be
# lost silently. RE2's \S (DuckDB) treats exactly these as blank.
_BLANK_LINE = re.compile(rb"(?m)^[ \t\f\r]*$")
_LINE_BREAK = re.compile(rb"[\r\n]")

NOT_UTF8 = "not_utf8"
TOO_LARGE = "too_large"
EMPTY = "empty"


def day_of(timestamp_ms: int) -> date:
    """The UTC day of a message timestamp: the landing file's dt."""
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).date()


def batch_key(day: date, partition: int, first: int, last: int) -> str:
    return f"events/dt={day.isoformat()}/kafka-{partition}-{first}-{last}.jsonl"


def parse_batch_key(name: str) -> tuple[int, int, int] | None:
    """(partition, first, last) of a file name the sink wrote, else None."""
    match = re.fullmatch(r"kafka-(\d+)-(\d+)-(\d+)\.jsonl", name)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


@dataclass(frozen=True)
class Rejected:
    """A message set aside for the dead-letter topic: where it was, what it held, and why."""

    offset: int
    value: bytes | None
    reason: str
    detail: str


@dataclass
class Batch:
    partition: int
    day_number: int  # timestamp_ms // 86_400_000: compared per message, cheaper than a date
    first: int
    opened_at: float
    last: int = -1
    size: int = 0
    offsets: list[int] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def day(self) -> date:
        return day_of(self.day_number * 86_400_000)

    @property
    def key(self) -> str:
        return batch_key(self.day, self.partition, self.first, self.last)

    def file_bytes(self) -> bytes:
        """The file's content, one landable message a line; the others move to `rejected`."""
        data = _lines(self.values)
        if not _valid_utf8(data) or _BLANK_LINE.search(data[:-1]):
            self._reject_one_by_one()
            data = _lines(self.values)
        if data.count(b"\n") != len(self.values) or b"\r" in data:
            # JSON allows a line break only as whitespace between tokens, where a space means
            # the same: one message stays one line, so a line number points at one message.
            data = _lines([_LINE_BREAK.sub(b" ", value) for value in self.values])
        return data

    def _reject_one_by_one(self) -> None:
        kept_offsets, kept_values = [], []
        for offset, value in zip(self.offsets, self.values, strict=True):
            problem = _problem(value)
            if problem is None:
                kept_offsets.append(offset)
                kept_values.append(value)
            else:
                self.rejected.append(Rejected(offset, value, *problem))
        self.offsets, self.values = kept_offsets, kept_values


def _lines(values: list[bytes]) -> bytes:
    return b"\n".join(values) + b"\n" if values else b""


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _problem(value: bytes) -> tuple[str, str] | None:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as error:
        return NOT_UTF8, f"not valid UTF-8 at byte {error.start}: produce the event as UTF-8 JSON"
    if not text.strip(" \t\f\r\n"):
        return EMPTY, "an empty or blank value: produce one JSON event per message"
    return None
