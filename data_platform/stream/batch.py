"""One landing file in the making: a run of consecutive offsets of one partition and one day.

A batch never spans partitions or days, so its file name (`batch_key`) is a function of its
offsets and of the topic id they count in (`topics.py`: one id per incarnation of the topic)
alone. Checks run on the whole batch at once (one UTF-8 decode, one search for blank or
multi-line values) and fall back to message by message only when one fails: the fast path does
no Python work per message beyond appending its value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from confluent_kafka import Message

from data_platform.ingestion.file_lines import BLANK

# A value made only of ingestion's BLANK characters would be a blank line, which ingestion skips:
# it would be lost silently. Such a value starts with one of them; searching for a line that
# does is a fast scan for "\n", where a multi-line pattern for the blank line itself took 0.26 s
# per 20 MB batch.
_LINE_STARTING_BLANK = re.compile(b"\n[" + re.escape(BLANK.encode()) + b"]")
_LINE_BREAK = re.compile(rb"[\r\n]")

DAY_MS = 86_400_000
_EPOCH = date(1970, 1, 1).toordinal()
_YEAR_MS = 31_556_952_000  # a Gregorian year's mean length
NOT_UTF8 = "not_utf8"
TOO_LARGE = "too_large"
EMPTY = "empty"
LINE_BREAK = "line_break"
BOM = "bom"
_BOM = "\ufeff".encode()
NO_TIMESTAMP = "no_timestamp"
BAD_TIMESTAMP = "bad_timestamp"


def day_of(timestamp_ms: int) -> date:
    """The UTC day of a message timestamp: the landing file's dt (only for one in `DayWindow`)."""
    return date.fromordinal(_EPOCH + timestamp_ms // DAY_MS)


def day_number(day: date) -> int:
    """Days since the epoch: what `timestamp_ms // DAY_MS` gives for a moment of `day`."""
    return day.toordinal() - _EPOCH


@dataclass(frozen=True)
class DayWindow:
    """The days a message may be filed under, as day numbers: DATA_PLATFORM_START_DATE (the
    first partition) to tomorrow, UTC (today's folder is a partition, tomorrow's will be one
    soon enough for a producer whose clock runs a little ahead). Any other dt folder would
    never be ingested, and a timestamp in microseconds is not even a date."""

    first: int
    last: int

    def describe(self, timestamp_ms: int) -> tuple[str, str]:
        """The dead letter's reason and error for a timestamp outside the window."""
        if timestamp_ms < 0:
            return NO_TIMESTAMP, (
                "no timestamp (a message format before Kafka 0.10): its day would be the day it "
                "is read, another one when read again; produce it with a timestamp, the event's "
                "arrival in milliseconds since the epoch"
            )
        days = timestamp_ms // DAY_MS
        when = (
            day_of(timestamp_ms).isoformat()
            if 0 <= days <= date.max.toordinal() - _EPOCH
            else f"in the year {1970 + timestamp_ms // _YEAR_MS}"
        )
        if self.first <= timestamp_ms * 1000 // DAY_MS <= self.last:
            when += ", as if it counted seconds"
        elif self.first <= timestamp_ms // 1000 // DAY_MS <= self.last:
            when += ", as if it counted microseconds"
        first, last = (day_of(n * DAY_MS).isoformat() for n in (self.first, self.last))
        return BAD_TIMESTAMP, (
            f"timestamp {timestamp_ms} ms is {when}: outside the days this platform ingests, "
            f"{first} (DATA_PLATFORM_START_DATE) to {last} (tomorrow); produce milliseconds "
            "since the epoch, the event's arrival time"
        )


def batch_key(day: date, topic_id: str, partition: int, first: int, last: int) -> str:
    return f"events/dt={day.isoformat()}/kafka-{topic_id}-{partition}-{first}-{last}.jsonl"


def parse_batch_key(name: str) -> tuple[str, int, int, int] | None:
    """(topic id, partition, first, last) of a file name the sink writes, else None.

    Names from before they carried the topic id (`kafka-<partition>-<first>-<last>.jsonl`) give
    None: their offsets may count in any incarnation, so nothing may take them for its own."""
    match = re.fullmatch(r"kafka-([0-9a-f]{32})-(\d+)-(\d+)-(\d+)\.jsonl", name)
    return (match[1], int(match[2]), int(match[3]), int(match[4])) if match else None


@dataclass(frozen=True)
class Rejected:
    """A message set aside for the dead-letter topic: where it was, what it held, and why.

    Key, headers and timestamp (-1: none) are kept too, so that a fixed event can be produced
    again as it was, into its own day."""

    offset: int
    value: bytes | None
    reason: str
    detail: str
    key: bytes | None = None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp: int = -1

    @classmethod
    def of(cls, message: Message, value: bytes | None, reason: str, detail: str) -> Rejected:
        return cls(
            message.offset(),
            value,
            reason,
            detail,
            message.key(),
            _headers(message),
            message.timestamp()[1],
        )


# The header a dead letter carries in place of its message's own headers when the client cannot
# read them: confluent-kafka turns header names into str, and a name that is not UTF-8 (any
# non-Java producer may send one) makes Message.headers() raise SystemError. Raised, it stopped
# the sink at every restart: a poison pill on a message it was only to set aside.
HEADERS_UNREADABLE = "headers_unreadable"


def _headers(message: Message) -> list[tuple[str, bytes | None]]:
    """The message's own headers; one explaining header if the client cannot hand them over.

    Read once: after the error, confluent-kafka keeps a half-built list for the next call."""
    try:
        return message.headers() or []
    except (SystemError, UnicodeDecodeError):
        return [
            (
                HEADERS_UNREADABLE,
                b"the message's own headers could not be read (a header name that is not "
                b"UTF-8): read them from the original topic at original_offset, until its "
                b"retention; produce header names as UTF-8",
            )
        ]


@dataclass
class Batch:
    """Messages are kept as the client's objects: their values are read once, at `seal`."""

    topic_id: str  # of the incarnation the partition was assigned in
    partition: int
    # timestamp_ms // DAY_MS: compared per message, cheaper than a date. None: a run of
    # messages whose timestamp is outside the `DayWindow`, all dead letters, never a file.
    day_number: int | None
    first: int
    opened_at: float
    room: int  # messages to the flush: max_batch_messages less the dead letters held
    # The first offset of the next file already landed (adoption.py): the batch ends before it.
    end_before: int | None = None
    size: int = 0  # bytes of the values held, dead letters' included
    messages: list[Message] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    last: int = -1  # set by `seal`
    landed: int = 0  # set by `seal`

    @property
    def day(self) -> date:
        assert self.day_number is not None, "a batch of misdated messages has no file"
        return day_of(self.day_number * DAY_MS)

    @property
    def key(self) -> str:
        return batch_key(self.day, self.topic_id, self.partition, self.first, self.last)

    def seal(self) -> bytes:
        """The file's content, one landable message a line; the others move to `rejected`."""
        ends = [m.offset for m in self.rejected]
        self.last = max([self.messages[-1].offset(), *ends] if self.messages else ends)
        kept = [(m, m.value()) for m in self.messages]
        data = _lines([value for _, value in kept])
        if (
            not _valid_utf8(data)
            or _LINE_STARTING_BLANK.search(b"\n" + data[:-1])
            or b"\n" + _BOM in b"\n" + data
        ):
            kept = self._reject(kept, _problem)
            data = _lines([value for _, value in kept])
        if data.count(b"\n") != len(kept) or b"\r" in data:
            # One message stays one line, so that a line number points at one message.
            kept = self._reject(kept, _line_break_problem)
            data = _lines([_LINE_BREAK.sub(b" ", value) for _, value in kept])
        self.landed = len(kept)
        return data

    def _reject(
        self,
        kept: list[tuple[Message, bytes]],
        problem_of: Callable[[bytes], tuple[str, str] | None],
    ) -> list[tuple[Message, bytes]]:
        """`kept` without the messages `problem_of` finds a problem with, which go to `rejected`."""
        still = []
        for message, value in kept:
            problem = problem_of(value)
            if problem is None:
                still.append((message, value))
            else:
                self.rejected.append(Rejected.of(message, value, *problem))
        return still


def unlandable(message: Message, limit: int, window: DayWindow) -> Rejected:
    """Why a message failed the checks made as it arrives: its timestamp, no value, too large."""
    value, timestamp = message.value(), message.timestamp()[1]
    if not window.first <= timestamp // DAY_MS <= window.last:
        return Rejected.of(message, value, *window.describe(timestamp))
    if not value:
        return Rejected.of(
            message, value, EMPTY, "no value (empty or a tombstone): produce one event"
        )
    return Rejected.of(
        message,
        value,
        TOO_LARGE,
        f"{len(value)} bytes, over the sink's limit of {limit}: split the event or raise "
        "--max-message-bytes",
    )


def _lines(values: list[bytes]) -> bytes:
    return b"\n".join(values) + b"\n" if values else b""


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _line_break_problem(value: bytes) -> tuple[str, str] | None:
    """A line break lands as a space only where JSON allows it, between tokens (where a space
    means the same): in a value that is JSON with it. Inside a string (where JSON needs `\\n`)
    a space would make a broken record a valid, changed one: the message is rejected instead."""
    if not _LINE_BREAK.search(value):
        return None
    try:
        json.loads(value)  # strict: a raw line break inside a string is an error
    except ValueError:
        return LINE_BREAK, (
            "not valid JSON, and it holds a line break, which cannot land as one line (inside "
            "a string, JSON needs \\n): produce one JSON event per message"
        )
    except RecursionError:  # raised, it stopped the sink at every restart: a poison pill
        return LINE_BREAK, (
            "it holds a line break, and is nested too deep to tell whether the break is inside a "
            "string: produce one JSON event per message, on one line"
        )
    return None


def _problem(value: bytes) -> tuple[str, str] | None:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as error:
        return NOT_UTF8, f"not valid UTF-8 at byte {error.start}: produce the event as UTF-8 JSON"
    if not text.strip(BLANK):
        return EMPTY, "an empty or blank value: produce one JSON event per message"
    # Landed, a file's readers drop it at the file's start only: the same event loaded or
    # dead-lettered by where a batch happened to begin.
    if text.startswith("\ufeff"):
        return BOM, "starts with a byte order mark (U+FEFF): produce the event as UTF-8 without one"
    return None
