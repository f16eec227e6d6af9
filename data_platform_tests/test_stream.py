"""The Kafka sink against a real broker (tansu, from the services mechanism): exactly-once across
kill -9 and restarts, rebalances, dead letters, SIGTERM, and the landed files through ingestion.

Expectations are computed here, independently of the sink: the ids produced (from the
producer's delivery reports) against the ids read back from the landed files.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import NamedTuple

import dagster as dg
import pytest
from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    Message,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from data_platform import cli
from data_platform.assets.raw import DEAD_LETTER_SPEC, RAW_FILE_ASSETS
from data_platform.automation.landing_sensor import SourceCursor, scan_source
from data_platform.ingestion.file_formats import EVENT_FILES
from data_platform.ingestion.file_lines import BLANK
from data_platform.partitions import DAILY_PARTITIONS
from data_platform.resources.alerts import AlertWebhook
from data_platform.resources.landing import LandingZone
from data_platform.stream import sink as sink_module
from data_platform.stream import topics
from data_platform.stream.assets import build_lag_sensor
from data_platform.stream.batch import DAY_MS, HEADERS_UNREADABLE, Batch, Rejected
from data_platform.stream.client_logs import OncePerKind
from data_platform.stream.config import SinkConfig
from data_platform.stream.dead_letters import SINK_HEADERS, DeadLetterError, DeadLetters
from data_platform.stream.lag import PartitionLag
from data_platform.stream.lag_metrics import collect_kafka_lag
from data_platform.stream.landing_files import remove_partials
from data_platform.stream.sink import Sink
from data_platform_tests.helpers import free_port, materialize_days, query

# Files named before names carried the topic id have none: kafka-<partition>-<first>-<last>.
FILE = re.compile(r"^kafka-(?:([0-9a-f]{32})-)?(\d+)-(\d+)-(\d+)\.jsonl$")


def event(event_id: str) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "user_id": 7,
            "event_type": "login",
            "occurred_at": "2026-01-05T10:00:00Z",
        }
    ).encode()


@pytest.fixture
def stream(kafka_broker, settings, monkeypatch):
    """A fresh topic (two partitions) and group on the session's broker, for this test's home."""
    monkeypatch.setenv("DATA_PLATFORM_KAFKA_BOOTSTRAP", kafka_broker.bootstrap)
    topic = f"events-{uuid.uuid4().hex[:8]}"
    topics.ensure_topics(kafka_broker.bootstrap, topic, partitions=2)
    return {
        "bootstrap": kafka_broker.bootstrap,
        "topic": topic,
        "group": f"g-{topic}",
        "settings": settings,
    }


def produce(
    stream,
    values: list[bytes],
    timestamp_ms: int | list[int] | None = None,
    one_by_one: bool = False,
    partition: int | None = None,
) -> dict[int, int]:
    """Produce, wait for every acknowledgement; returns each partition's end offset.

    `timestamp_ms`: every message's, or one per message, else the producer's clock.
    `one_by_one`: a produce request per message. tansu reports a partition's end offset as the
    first offset of its newest request plus one, so only then is its lag exact. `partition`: all
    to that one, else alternating."""
    ends: dict[int, int] = {}

    def delivered(error, message) -> None:
        assert error is None, error
        ends[message.partition()] = max(ends.get(message.partition(), 0), message.offset() + 1)

    producer = Producer({"bootstrap.servers": stream["bootstrap"], "linger.ms": 5})
    for i, value in enumerate(values):
        at = timestamp_ms[i] if isinstance(timestamp_ms, list) else timestamp_ms
        extra = {"timestamp": at} if at else {}
        # Alternating partitions: both get data whatever the client's partitioner does.
        to = i % 2 if partition is None else partition
        producer.produce(stream["topic"], value, partition=to, on_delivery=delivered, **extra)
        if one_by_one:
            producer.flush(30)
    assert producer.flush(30) == 0
    return ends


class SinkProcess:
    """`data-platform consume` as a child process, its stderr in a file; `script`, a wrapper
    such as REPORT_PENDING, runs the command in its place."""

    def __init__(self, stream, tmp_path: Path, name: str, *flags: str, script: str | None = None):
        self.log = tmp_path / f"{name}.log"
        python = ["-c", script] if script else ["-m", "data_platform.cli"]
        command = [sys.executable, *python, "consume", "--topic", stream["topic"]]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [*command, "--group", stream["group"], *flags], stderr=log, env=dict(os.environ)
            )

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, needle: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            assert self.process.poll() is None, self.text()
            assert time.monotonic() < deadline, f"no {needle!r} in: {self.text()}"
            time.sleep(0.1)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class SinkThread:
    """The same sink in a thread of this process: no interpreter start (2-3 s) per consumer."""

    def __init__(self, stream, **limits):
        config = SinkConfig(stream["bootstrap"], stream["topic"], stream["group"], **limits)
        self.lines: list[str] = []
        self.sink = Sink(config, LandingZone(url=stream["settings"].landing), self.lines.append)
        self.thread = threading.Thread(target=self.sink.run, daemon=True)
        self.thread.start()

    def wait_for(self, needle: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(needle in line for line in self.lines):
            assert self.thread.is_alive() and time.monotonic() < deadline, self.lines
            time.sleep(0.05)

    def stop(self) -> None:
        self.end()
        assert not self.thread.is_alive()

    def end(self) -> None:
        self.sink.stop()
        self.thread.join(30)


class Sinks:
    """What the `sinks` fixture gives a test: starts its sinks, and ends at its teardown those
    still running. A failed wait or assert left `data-platform consume` running after the
    session, and threads polling the broker through every later test."""

    def __init__(self, stream, tmp_path: Path):
        self._stream, self._tmp_path = stream, tmp_path
        self.started: list[SinkProcess | SinkThread] = []

    def process(self, name: str, *flags: str, script: str | None = None) -> SinkProcess:
        sink = SinkProcess(self._stream, self._tmp_path, name, *flags, script=script)
        self.started.append(sink)
        return sink

    def thread(self, **limits) -> SinkThread:
        sink = SinkThread(self._stream, **limits)
        self.started.append(sink)
        return sink


@pytest.fixture
def sinks(stream, tmp_path):
    made = Sinks(stream, tmp_path)
    yield made
    for sink in made.started:  # a process is killed: a test that failed needs nothing flushed
        sink.end()


class Landed(NamedTuple):
    topic_id: str | None  # None: named before names carried it
    partition: int
    first: int
    last: int
    lines: list[str]


def landed(stream) -> list[Landed]:
    """Every file the sink landed."""
    root = Path(stream["settings"].landing) / "events"
    files = []
    for path in sorted(root.glob("dt=*/kafka-*.jsonl")):
        topic_id, *numbers = FILE.match(path.name).groups()
        files.append(Landed(topic_id, *map(int, numbers), path.read_text().splitlines()))
    return files


def landed_ids(stream) -> Counter[str]:
    return Counter(json.loads(line)["event_id"] for *_, lines in landed(stream) for line in lines)


def committed(stream) -> dict[int, int]:
    client = Consumer({"bootstrap.servers": stream["bootstrap"], "group.id": stream["group"]})
    try:
        parts = [TopicPartition(stream["topic"], p) for p in (0, 1)]
        return {tp.partition: tp.offset for tp in client.committed(parts, timeout=10)}
    finally:
        client.close()


def wait_committed(stream, ends: dict[int, int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while committed(stream) != ends:
        assert time.monotonic() < deadline, (committed(stream), ends)
        time.sleep(0.3)


def assert_exactly_once(stream, produced: list[str]) -> None:
    ids = landed_ids(stream)
    assert sorted(ids) == sorted(produced) and max(ids.values()) == 1
    # Offsets are only unique within one topic (id) and partition.
    ranges = sorted((f.topic_id or "", f.partition, f.first, f.last) for f in landed(stream))
    for (t1, p1, _, last1), (t2, p2, first2, _) in itertools.pairwise(ranges):
        assert (t1, p1) != (t2, p2) or first2 > last1, f"overlapping offset ranges: {ranges}"


def topic_id(stream) -> str:
    """The topic's id as 32 hex digits, from the broker's base64 (not through the sink's code)."""
    admin = AdminClient({"bootstrap.servers": stream["bootstrap"]})
    topic = stream["topic"]
    found = admin.describe_topics(TopicCollection([topic]))[topic].result(10)
    return uuid.UUID(bytes=base64.b64decode(f"{found.topic_id}==")).hex


def recreate_topic(stream) -> None:
    """Delete the topic and create it again: offsets start from 0 under a new topic id, as they
    do for every topic when tansu (in memory) restarts."""
    admin = AdminClient({"bootstrap.servers": stream["bootstrap"]})
    for future in admin.delete_topics([stream["topic"]], operation_timeout=10).values():
        future.result()
    created = admin.create_topics([NewTopic(stream["topic"], 2, 1)], operation_timeout=10)
    for future in created.values():
        future.result()


def test_kill_9_mid_stream_and_restart_land_every_event_once(stream, sinks):
    ids = [f"k-{i}" for i in range(10_000)]
    ends = produce(stream, [event(i) for i in ids])
    flags = ("--max-batch-messages", "300", "--max-batch-seconds", "1")
    for round_ in range(2):
        sink = sinks.process(f"run-{round_}", *flags)
        sink.wait_for("assigned")
        before = len(landed(stream))
        while len(landed(stream)) < before + 4:  # mid-stream: some batches landed, more to come
            assert sink.process.poll() is None, sink.text()
            time.sleep(0.02)
        sink.process.kill()
        sink.process.wait()
    assert committed(stream) != ends, "the kills came too late to test anything"
    survivor = sinks.process("last", *flags)
    wait_committed(stream, ends)
    assert survivor.terminate() == 0
    assert_exactly_once(stream, ids)


# `data-platform consume`, whose publish SIGKILLs the process right after the N-th file is
# durable, before its commit: exactly the crash adoption exists for, with no timing involved.
KILL_AFTER_PUBLISH = """
import os, signal, sys
import data_platform.stream.sink as sink
from data_platform import cli
real, calls, kill_at = sink.publish, [], int(sys.argv.pop(1))
def publish(*args):
    real(*args)
    calls.append(args[1])
    if len(calls) == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
sink.publish = publish
sys.exit(cli.main(sys.argv[1:]))
"""

# `data-platform consume` that logs `consume: pending <n>` whenever the messages its batches hold
# (`Sink.pending`) change: what a test waits for before signalling it, where a sleep only guessed.
REPORT_PENDING = """
import sys
import data_platform.stream.sink as sink
from data_platform import cli
real = sink.Sink._take
def take(self, messages):
    before = self.pending()
    real(self, messages)
    if self.pending() != before:
        print(f"consume: pending {self.pending()}", file=sys.stderr, flush=True)
sink.Sink._take = take
sys.exit(cli.main(sys.argv[1:]))
"""


def test_killed_between_publish_and_commit_the_file_is_adopted_on_restart(stream, sinks, tmp_path):
    ids = [f"p-{i}" for i in range(1_000)]
    ends = produce(stream, [event(i) for i in ids])
    log = tmp_path / "killed.log"
    command = ["consume", "--topic", stream["topic"], "--group", stream["group"]]
    limits = ["--max-batch-messages", "100", "--max-batch-seconds", "600"]
    with open(log, "wb") as stderr:
        child = subprocess.run(
            [sys.executable, "-c", KILL_AFTER_PUBLISH, "3", *command, *limits],
            stderr=stderr,
            env=dict(os.environ),
            timeout=120,
        )
    assert child.returncode == -signal.SIGKILL, log.read_text()
    files = landed(stream)
    assert len(files) == 3
    # Two files committed, the third landed only: its range starts at a committed offset.
    uncommitted = [f for f in files if committed(stream)[f.partition] == f.first]
    assert len(uncommitted) == 1
    survivor = sinks.thread(max_batch_seconds=0.5)  # other limits: it would cut elsewhere
    wait_committed(stream, ends)
    survivor.stop()
    [adopted] = uncommitted
    assert f"partition {adopted.partition}: adopting landed offsets {adopted.first}-" in "\n".join(
        survivor.lines
    )
    assert_exactly_once(stream, ids)


def test_a_file_landed_but_never_committed_is_adopted_not_rewritten(stream, sinks):
    """The state a crash between publish and commit leaves, made exactly: a group that never
    committed finds every file landed. With other batch limits it would cut other ranges."""
    ids = [f"a-{i}" for i in range(3_000)]
    ends = produce(stream, [event(i) for i in ids])
    first = sinks.thread(max_batch_messages=400, max_batch_seconds=0.5)
    wait_committed(stream, ends)
    first.stop()
    files_before = sorted(f[:4] for f in landed(stream))
    stream["group"] += "-again"
    second = sinks.thread(max_batch_messages=250, max_batch_seconds=0.5)
    wait_committed(stream, ends)
    second.stop()
    assert sorted(f[:4] for f in landed(stream)) == files_before
    assert any("adopting landed offsets" in line for line in second.lines)
    assert_exactly_once(stream, ids)


def test_a_group_that_never_committed_adopts_files_past_a_stretch_that_left_none(stream, sinks):
    """A batch of dead letters only (here a lone tombstone) leaves no file. A group that never
    committed (renamed, or its offsets expired) adopted the files before it, then stopped
    looking: every later range was landed again with other bounds, its events twice."""
    before, after = [f"b-{i}" for i in range(300)], [f"a-{i}" for i in range(300)]
    first = sinks.thread(max_batch_messages=100, max_batch_seconds=0.3)
    wait_committed(stream, {**produce(stream, [event(i) for i in before], partition=0), 1: -1001})
    wait_committed(stream, {**produce(stream, [None], partition=0), 1: -1001})
    ends = produce(stream, [event(i) for i in after], partition=0)
    wait_committed(stream, {**ends, 1: -1001})
    first.stop()
    files_before = sorted(f[:4] for f in landed(stream))
    # The tombstone at 300 was a batch of its own: dead-lettered, no file.
    ranges = [(0, 99), (100, 199), (200, 299), (301, 400), (401, 500), (501, 600)]
    assert [f[2:4] for f in files_before] == ranges
    stream["group"] += "-again"
    second = sinks.thread(max_batch_messages=70, max_batch_seconds=0.3)
    wait_committed(stream, {**ends, 1: -1001})
    second.stop()
    assert sorted(f[:4] for f in landed(stream)) == files_before
    assert sum("adopting landed offsets" in line for line in second.lines) == 6
    assert_exactly_once(stream, before + after)


def test_a_log_start_inside_a_landed_file_adopts_the_rest_of_it(tmp_path):
    """Retention may move a partition's first offset into a landed file: a group starting there
    skips to the file's end; a batch from a gap ends before the next file."""
    from data_platform.stream.adoption import Adoption
    from data_platform.stream.batch import batch_key

    landing, day, topic_id = LandingZone(url=str(tmp_path)), date(2026, 1, 5), "ab" * 16
    for first, last in ((0, 9), (12, 20)):
        (tmp_path / batch_key(day, topic_id, 0, first, last)).parent.mkdir(
            parents=True, exist_ok=True
        )
        (tmp_path / batch_key(day, topic_id, 0, first, last)).write_text("{}\n")
    (tmp_path / batch_key(day, "cd" * 16, 0, 10, 11)).write_text("{}\n")  # another incarnation
    adoption = Adoption(landing)
    adoption.assign({0}, topic_id)
    assert adoption.landed_end(0, day, 5) == 9 and adoption.skip_below == {0: 10}
    assert adoption.landed_end(0, day, 10) is None and adoption.skip_below == {}
    assert adoption.next_landed(0, day, 10) == 12
    assert adoption.landed_end(0, day, 20) == 20
    assert adoption.next_landed(0, day, 21) is None
    assert adoption.landed_end(1, day, 5) is None and adoption.landed_end(0, None, 5) is None


def noon(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, 12, tzinfo=UTC).timestamp() * 1000)


def test_a_recreated_topic_neither_adopts_nor_overwrites_the_old_ones_files(stream, sinks):
    """Deleted and created again, the topic's offsets start from 0 while the landing zone keeps
    the files of its first incarnation. Partition 0 meets an old file starting at its first
    offset (adopting it would skip the new messages); partition 1's second batch has the bounds
    of an old file in another day folder (publishing it would replace the old records)."""
    day_1, day_2 = date(2026, 1, 5), date(2026, 1, 6)
    old = [f"old-{i}" for i in range(80)]
    # Per partition: offsets 0-19 on day 1, 20-39 on day 2, one file each.
    produce(stream, [event(i) for i in old[:40]], timestamp_ms=noon(day_1))
    ends = produce(stream, [event(i) for i in old[40:]], timestamp_ms=noon(day_2))
    first = sinks.thread(max_batch_messages=20, max_batch_seconds=0.5)
    wait_committed(stream, ends)
    first.stop()
    old_id = topic_id(stream)
    old_files = {p: p.read_bytes() for p in Path(stream["settings"].landing).rglob("kafka-*")}
    assert len(old_files) == 4

    recreate_topic(stream)
    assert topic_id(stream) != old_id
    # The group's offsets went with the old topic (Kafka and tansu alike): the sink starts at 0.
    assert set(committed(stream).values()) == {OFFSET_INVALID}
    new = [f"new-{i}" for i in range(60)]
    ends = produce(stream, [event(i) for i in new[:20]], timestamp_ms=noon(day_1), partition=0)
    ends |= produce(stream, [event(i) for i in new[20:]], timestamp_ms=noon(day_2), partition=1)
    assert ends == {0: 20, 1: 40}
    second = sinks.thread(max_batch_messages=20, max_batch_seconds=0.5)
    wait_committed(stream, ends)
    second.stop()

    assert_exactly_once(stream, old + new)
    assert {p: p.read_bytes() for p in old_files} == old_files
    assert {f.topic_id for f in landed(stream)} == {old_id, topic_id(stream)}
    assert not any("adopting" in line for line in second.lines), second.lines
    # A sink still holding partitions assigned in the old incarnation stops before landing.
    admin = AdminClient({"bootstrap.servers": stream["bootstrap"]})
    with pytest.raises(topics.TopicIdError, match="deleted and created again"):
        topics.confirm_topic_id(admin, stream["topic"], old_id)


def test_files_named_before_topic_ids_are_never_adopted_and_still_ingested(
    stream, sinks, resources
):
    """The sink once named files kafka-<partition>-<first>-<last>: which topic they came from is
    unknown, so they are never adopted, and ingestion reads them like any file of the day."""
    day = date(2026, 1, 5)
    folder = Path(stream["settings"].landing) / f"events/dt={day}"
    folder.mkdir(parents=True)
    legacy = folder / "kafka-0-0-1.jsonl"
    legacy.write_bytes(event("legacy-1") + b"\n" + event("legacy-2") + b"\n")
    new = [f"n-{i}" for i in range(4)]
    ends = produce(stream, [event(i) for i in new], timestamp_ms=noon(day))
    sink = sinks.thread(max_batch_seconds=0.5)
    wait_committed(stream, ends)
    sink.stop()
    assert legacy.read_bytes() == event("legacy-1") + b"\n" + event("legacy-2") + b"\n"
    assert_exactly_once(stream, ["legacy-1", "legacy-2", *new])
    assert materialize_days(
        [*RAW_FILE_ASSETS, DEAD_LETTER_SPEC], resources, [day], selection=["raw/events"]
    ).success
    loaded = query(stream["settings"].warehouse, "SELECT event_id FROM raw.events")
    assert sorted(row[0] for row in loaded) == sorted(["legacy-1", "legacy-2", *new])


def test_two_consumers_split_the_partitions_and_hand_them_back(stream, sinks):
    one = sinks.thread(max_batch_seconds=0.5)
    one.wait_for("assigned partitions [0, 1]")
    ids = [f"r-{i}" for i in range(2_000)]
    produce(stream, [event(i) for i in ids[:1_000]])
    two = sinks.thread(max_batch_seconds=0.5)
    two.wait_for("assigned partitions [")
    one.wait_for("revoked partitions [0, 1]")
    produce(stream, [event(i) for i in ids[1_000:1_500]])
    deadline = time.monotonic() + 30
    while two.sink.landed == 0:  # its share of these, landed and committed by `two` itself
        assert time.monotonic() < deadline, two.lines
        time.sleep(0.1)
    two.stop()  # leaves the group: its partition goes back to `one`
    ends = produce(stream, [event(i) for i in ids[1_500:]])
    wait_committed(stream, ends)
    one.stop()
    assigned_two = [line for line in two.lines if line.startswith("assigned")]
    assert assigned_two and all("," not in line for line in assigned_two), two.lines
    assert len([line for line in one.lines if line.startswith("assigned")]) >= 2
    assert two.sink.landed > 0 and one.sink.landed > 0
    assert_exactly_once(stream, ids)


def dead_letter_messages(stream, count: int) -> list:
    """`count` messages of the dead-letter topic from its start (fewer after 30 s), read
    without a group (no join to wait for)."""
    reader = Consumer({"bootstrap.servers": stream["bootstrap"], "group.id": "unused"})
    dlq = f"{stream['topic']}.dlq"
    reader.assign([TopicPartition(dlq, p, 0) for p in (0, 1)])
    found = []
    deadline = time.monotonic() + 30
    while len(found) < count and time.monotonic() < deadline:
        message = reader.poll(0.5)
        if message is not None and message.error() is None:
            found.append(message)
    reader.close()
    return found


def read_dead_letters(stream, count: int) -> list[tuple[bytes, dict[str, bytes]]]:
    return [(m.value(), dict(m.headers())) for m in dead_letter_messages(stream, count)]


def test_unlandable_messages_go_to_the_dead_letter_topic_with_their_reason(stream, sinks):
    poison = {
        b"\xff\xfe not utf-8": "not_utf8",
        b"x" * 2_000: "too_large",
        b"  \t ": "empty",
        b"\x0b": "empty",
        # A space for it would land a valid record with a changed event_id.
        b'{"event_id": "two\nlines", "user_id": 7}': "line_break",
        b'{"event_id": "x",\n"user_id": }': "line_break",
    }
    values = [event("good-1"), *poison, event("good-2"), b'{"event_id": "multi",\n"user_id": 7}']
    ends = produce(stream, values)
    sink = sinks.thread(max_message_bytes=1_000, max_batch_seconds=0.5)
    wait_committed(stream, ends)
    sink.stop()
    found = read_dead_letters(stream, len(poison))
    assert {value: headers["reason"].decode() for value, headers in found} == poison
    for value, headers in found:
        position = values.index(value)
        assert headers["original_topic"].decode() == stream["topic"]
        assert int(headers["original_partition"]) == position % 2
        assert int(headers["original_offset"]) == position // 2  # alternating partitions
        assert headers["error"]
    lines = [line for *_, file_lines in landed(stream) for line in file_lines]
    # A line break between a valid message's tokens becomes a space: one message, one line.
    expected = [event("good-1"), event("good-2"), b'{"event_id": "multi", "user_id": 7}']
    assert sorted(lines) == sorted(value.decode() for value in expected)


@pytest.mark.parametrize("blank", BLANK)
def test_a_value_ingestion_would_skip_as_blank_is_rejected_as_empty(blank):
    """A value of only a vertical tab (blank to ingestion, not to the sink) was landed and
    committed, then skipped as a blank line: in neither raw.events nor any dead letter. Each of
    ingestion's blank characters, first in the batch or not, is rejected as an empty value is."""
    at = noon(date(2026, 1, 5))
    batch = Batch("0" * 32, 0, at // DAY_MS, first=0, opened_at=0, room=100)
    values = [blank.encode(), event("a"), f"{blank} {blank}".encode()]
    batch.messages = [message(offset, value, at) for offset, value in enumerate(values)]
    assert batch.seal() == event("a") + b"\n"
    assert [(r.offset, r.value, r.reason) for r in batch.rejected] == [
        (0, values[0], "empty"),
        (2, values[2], "empty"),
    ]


def test_values_that_stopped_the_sink_or_landed_by_chance_are_dead_letters():
    """A line break in a value nested too deep for json.loads was a RecursionError that
    stopped the sink at every restart (its partition never landed again); a byte order mark
    opening a value was loaded when its message opened a file and dead-lettered otherwise."""
    at = noon(date(2026, 1, 5))
    batch = Batch("0" * 32, 0, at // DAY_MS, first=0, opened_at=0, room=100)
    deep = b'{"event_id": "deep",\n"properties": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    bom = "\ufeff".encode() + event("bom")
    values = [bom, event("a"), deep, bom, event("b")]
    batch.messages = [message(offset, value, at) for offset, value in enumerate(values)]
    assert batch.seal() == event("a") + b"\n" + event("b") + b"\n"
    assert [(r.offset, r.reason) for r in batch.rejected] == [
        (0, "bom"),
        (3, "bom"),
        (2, "line_break"),
    ]


def test_a_timestamp_outside_the_partitions_is_dead_lettered_not_filed_under_its_day(stream, sinks):
    """Microseconds (the year 57971: the sink crashed on it at every restart), seconds (1970,
    before DATA_PLATFORM_START_DATE) and a day after tomorrow would name a dt folder that is no
    partition: never ingested. Each is a dead letter saying what to produce instead."""
    day = date(2026, 1, 5)
    micro, seconds = 1_767_225_600_000_000, 1_767_225_600
    future = int(time.time() * 1000) + 3 * 86_400_000
    stamps = [noon(day), micro, noon(day), seconds, future, noon(day)]
    values = [event(f"d-{i}") for i in range(len(stamps))]
    ends = produce(stream, values, timestamp_ms=stamps, partition=0)
    sink = sinks.thread(max_batch_seconds=0.5)
    wait_committed(stream, ends | {1: OFFSET_INVALID})
    sink.stop()
    assert_exactly_once(stream, ["d-0", "d-2", "d-5"])
    folders = {p.parent.name for p in Path(stream["settings"].landing).rglob("kafka-*")}
    assert folders == {f"dt={day}"}
    found = {
        int(headers["original_offset"]): headers for _, headers in read_dead_letters(stream, 3)
    }
    assert sorted(found) == [1, 3, 4]
    assert {headers["reason"] for headers in found.values()} == {b"bad_timestamp"}
    assert b"year 57971" in found[1]["error"] and b"microseconds" in found[1]["error"]
    assert b"1970-01-21" in found[3]["error"] and b"seconds" in found[3]["error"]
    assert b"milliseconds since the epoch" in found[4]["error"]
    # Kept, so that the event can be produced again, fixed, into its own day.
    assert found[1]["original_timestamp"] == str(micro).encode()


@pytest.fixture
def idle_sink(stream):
    """Makes sinks that own partition 0 without joining the group, whose flushes are only
    recorded: what `_take` makes of hand-made messages, with no broker round trip."""
    made: list[Sink] = []

    def make(**limits) -> tuple[Sink, list[Batch]]:
        config = SinkConfig(stream["bootstrap"], stream["topic"], stream["group"], **limits)
        sink = Sink(config, LandingZone(url=stream["settings"].landing), print)
        made.append(sink)
        sink._adoption.assign({0}, "0" * 32)
        flushed: list[Batch] = []
        sink._flush = flushed.append
        return sink, flushed

    yield make
    for sink in made:
        sink._consumer.close()
        sink._dead_letters.close()


def message(offset: int, value: bytes | None, timestamp_ms: int) -> Message:
    return Message(
        topic="events", partition=0, offset=offset, value=value, timestamp=(1, timestamp_ms)
    )


def test_a_message_without_a_timestamp_is_dead_lettered_not_filed_under_the_day_it_is_read(
    idle_sink,
):
    """Timestamp -1 (no timestamp) once meant the sink's clock: a range re-read after midnight
    UTC went to another day folder, where adoption missed its file, and landed twice."""
    sink, flushed = idle_sink()
    noon_ms = noon(date(2026, 1, 5))
    sink._take([message(0, b"{}", noon_ms), message(1, b"{}", -1), message(2, b"{}", noon_ms)])
    assert [(b.first, len(b.messages)) for b in flushed] == [(0, 1), (1, 0)]
    assert [(r.offset, r.reason) for r in flushed[1].rejected] == [(1, "no_timestamp")]
    assert sink._batches[0].first == 2 and len(sink._batches[0].messages) == 1


def test_partials_a_killed_sink_left_are_removed_when_their_partition_is_assigned(
    stream, idle_sink
):
    """kill -9 mid-write left a hidden partial, and the range batched again may end at another
    offset: nothing wrote that name again, and it stayed for good. Only the partials of this
    topic's partitions being assigned are removed: another's may be a write in progress."""
    events = Path(stream["settings"].landing) / "events"
    ours, other = topic_id(stream), "f" * 32
    files = {
        f"dt=2026-01-05/.kafka-{ours}-0-5-9.jsonl.partial": False,
        f"dt=2026-01-06/.kafka-{ours}-0-10-12.jsonl.partial": False,
        f"dt=2026-01-05/.kafka-{ours}-1-5-9.jsonl.partial": True,  # partition 1: not assigned
        f"dt=2026-01-05/.kafka-{other}-0-5-9.jsonl.partial": True,  # another topic
        f"dt=2026-01-05/kafka-{ours}-0-0-4.jsonl": True,  # published
    }
    for name in files:
        (events / name).parent.mkdir(parents=True, exist_ok=True)
        (events / name).write_bytes(b"{}\n")
    sink, _ = idle_sink()
    sink._on_assign(sink._consumer, [TopicPartition(stream["topic"], 0)])
    left = {path.relative_to(events).as_posix() for path in events.rglob("*") if path.is_file()}
    assert left == {name for name, kept in files.items() if kept}


def test_s3_partial_uploads_a_killed_sink_left_are_aborted_by_the_same_rule(s3_landing):
    """On S3 a sink killed mid-upload left an incomplete multipart upload, whose parts the
    bucket keeps (and bills) for good: `remove_partials` returned nothing there. It now aborts
    the uploads of the names the sink's partials would have, nothing else."""
    ours, other = "a" * 32, "f" * 32
    bucket, root = s3_landing._bucket_and_prefix
    s3 = s3_landing._s3()
    uploads = {
        f"dt=2026-01-05/kafka-{ours}-0-5-9.jsonl": False,
        f"dt=2026-01-06/kafka-{ours}-0-10-12.jsonl": False,
        f"dt=2026-01-05/kafka-{ours}-1-5-9.jsonl": True,  # partition 1: not assigned
        f"dt=2026-01-05/kafka-{other}-0-5-9.jsonl": True,  # another topic
    }
    # The same key killed twice: an upload from each life.
    for name in [*uploads, next(iter(uploads))]:
        key = f"{root}events/{name}"
        upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"{}\n")
    s3_landing.write_bytes(f"events/dt=2026-01-05/kafka-{ours}-0-0-4.jsonl", b"{}\n")

    removed = remove_partials(s3_landing, ours, {0})

    assert removed == sorted(f"events/{name}" for name, kept in uploads.items() if not kept)
    left = s3.list_multipart_uploads(Bucket=bucket, Prefix=root).get("Uploads", [])
    assert sorted(u["Key"] for u in left) == sorted(
        f"{root}events/{name}" for name, kept in uploads.items() if kept
    )
    assert [f.key for f in s3_landing.list_files("events/")] == [
        f"events/dt=2026-01-05/kafka-{ours}-0-0-4.jsonl"  # published: not an upload
    ]


def test_dead_letters_count_toward_the_batch_limits(idle_sink):
    """A burst of unlandable messages grew one batch's dead letters without bound in memory."""
    sink, flushed = idle_sink(max_batch_messages=3, max_batch_bytes=5_000, max_message_bytes=1_000)
    at = noon(date(2026, 1, 5))
    sink._take([message(offset, b"", at) for offset in range(7)])
    assert [(b.first, len(b.rejected)) for b in flushed] == [(0, 3), (3, 3)]
    assert sink.pending() == 1
    sink._batches.clear()
    sink._take([message(offset, b"x" * 2_000, at) for offset in range(7, 10)])
    assert [(b.first, len(b.rejected)) for b in flushed[2:]] == [(7, 3)]  # 6,000 bytes held


def test_dead_letters_wait_for_room_in_a_full_producer_queue(stream):
    """produce() raised BufferError once librdkafka's queue was full: a crash at every restart."""
    config = SinkConfig(stream["bootstrap"], stream["topic"], stream["group"])
    settings = {**config.producer_settings(), "queue.buffering.max.messages": 5}
    dead_letters = DeadLetters(settings, config.dlq_topic, config.topic)
    rejected = [Rejected(offset, b"poison-%d" % offset, "empty", "x") for offset in range(40)]
    dead_letters.send(0, rejected)
    dead_letters.flush()
    dead_letters.close()
    assert len(read_dead_letters(stream, 40)) == 40


def test_a_dead_letter_failure_is_raised_once_not_at_every_later_flush():
    """A failed delivery stayed in the list for good: after a flush on revoke logged it and the
    sink went on, every later flush raised it again, its own dead letters delivered or not
    (exit 1, and those sent again at the restart)."""
    settings = {"bootstrap.servers": f"127.0.0.1:{free_port()}", "message.timeout.ms": 300}
    dead_letters = DeadLetters(settings, "events.dlq", "events", lambda _: None)
    dead_letters.send(0, [Rejected(0, b"poison", "empty", "x")])
    with pytest.raises(DeadLetterError, match="timed out"):
        dead_letters.flush(timeout=10)
    dead_letters.flush(timeout=1)  # nothing sent since: nothing to fail
    dead_letters.close()


def test_a_dead_letter_keeps_the_key_headers_and_timestamp_and_survives_a_refusal(stream):
    """Dead letters dropped the original key, headers and timestamp: a fixed event could not be
    produced again as it was. And a dead letter the topic refuses as too large (here the
    client's message.max.bytes, on Kafka also the topic's) crashed the sink at every restart:
    it now goes without its value, saying so, in one log line."""
    config = SinkConfig(stream["bootstrap"], stream["topic"], stream["group"])
    settings = {**config.producer_settings(), "message.max.bytes": 1_000}
    lines: list[str] = []
    dead_letters = DeadLetters(settings, config.dlq_topic, config.topic, lines.append)
    original = [("trace", b"t-1"), ("reason", b"the producer's own header")]
    at = noon(date(2026, 1, 5))
    dead_letters.send(
        1,
        [
            Rejected(4, b"\xff", "not_utf8", "x", key=b"user-7", headers=original, timestamp=at),
            Rejected(5, b"y" * 5_000, "too_large", "x", key=b"user-8", timestamp=at),
        ],
    )
    dead_letters.flush()
    dead_letters.close()
    found = {got.key(): got for got in dead_letter_messages(stream, 2)}
    first, second = found[b"user-7"], found[b"user-8"]
    assert first.value() == b"\xff"
    assert first.headers()[:2] == original  # the producer's headers first, unchanged
    headers = dict(first.headers())  # the sink's after them: theirs win in a dict
    assert headers["reason"] == b"not_utf8" and headers["original_timestamp"] == str(at).encode()
    assert (headers["original_partition"], headers["original_offset"]) == (b"1", b"4")
    assert second.value() is None
    headers = dict(second.headers())
    assert headers["reason"] == b"too_large" and b"5000 bytes" in headers["value_omitted"]
    [line] = lines
    assert "partition 1 offset 5" in line and "without its value" in line


def test_a_dead_letter_too_large_without_its_value_goes_with_the_sinks_headers_alone(stream):
    """A tombstone with a key (or headers) over what the dead-letter topic takes was refused
    with its value left out too, and stopped the sink at every restart: its partition never
    landed again."""
    config = SinkConfig(stream["bootstrap"], stream["topic"], stream["group"])
    settings = {**config.producer_settings(), "message.max.bytes": 1_000}
    lines: list[str] = []
    dead_letters = DeadLetters(settings, config.dlq_topic, config.topic, lines.append)
    at = noon(date(2026, 1, 5))
    huge = [("trace", b"t" * 5_000)]
    dead_letters.send(
        0,
        [
            Rejected(8, None, "empty", "x", key=b"k" * 5_000, timestamp=at),
            Rejected(9, b"y" * 5_000, "too_large", "x", key=b"k", headers=huge, timestamp=at),
        ],
    )
    dead_letters.flush()
    dead_letters.close()
    found = {
        dict(got.headers())["original_offset"]: (got.value(), got.headers())
        for got in dead_letter_messages(stream, 2)
    }
    for offset, reason in ((b"8", b"empty"), (b"9", b"too_large")):
        value, headers = found[offset]
        assert value is None
        assert [name for name, _ in headers] == [*SINK_HEADERS, "value_omitted"]
        assert dict(headers)["reason"] == reason
        assert b"own headers were over what" in dict(headers)["value_omitted"]
    assert len(lines) == 3  # offset 9: without its value, then bare; offset 8: bare at once
    [bare_at_once] = [line for line in lines if "offset 8:" in line]
    assert bare_at_once.endswith("sent with the sink's headers alone")


def test_a_dead_letter_whose_header_names_are_not_utf8_is_sent_not_a_crash(stream):
    """confluent-kafka raises SystemError from Message.headers() when a header name is not
    UTF-8 (any non-Java producer may send one): on a message to set aside, that stopped the
    sink at every restart. The dead letter goes with a header saying where its headers are."""

    class Unreadable:
        def offset(self) -> int:
            return 3

        def key(self) -> bytes:
            return b"user-3"

        def timestamp(self) -> tuple[int, int]:
            return (1, noon(date(2026, 1, 5)))

        def headers(self):
            raise SystemError("<method 'headers'> returned a result with an exception set")

    rejected = Rejected.of(Unreadable(), None, "empty", "x")
    [(name, _)] = rejected.headers
    assert name == HEADERS_UNREADABLE
    config = SinkConfig(stream["bootstrap"], stream["topic"], stream["group"])
    dead_letters = DeadLetters(config.producer_settings(), config.dlq_topic, config.topic)
    dead_letters.send(0, [rejected])
    dead_letters.flush()
    dead_letters.close()
    [got] = dead_letter_messages(stream, 1)
    assert [name for name, _ in got.headers()] == [HEADERS_UNREADABLE, *SINK_HEADERS]
    assert got.key() == b"user-3"


def test_an_own_header_named_like_the_sinks_is_left_out_when_too_large(stream):
    """A tombstone whose own header, too large for the dead-letter topic, was named `error`
    (one of the sink's names) was taken for the sink's own: nothing was left out and the sink
    stopped at every restart."""
    config = SinkConfig(stream["bootstrap"], stream["topic"], stream["group"])
    settings = {**config.producer_settings(), "message.max.bytes": 1_000}
    dead_letters = DeadLetters(settings, config.dlq_topic, config.topic, lambda _: None)
    own = [("error", b"e" * 5_000)]
    dead_letters.send(0, [Rejected(11, None, "empty", "x", headers=own)])
    dead_letters.flush()
    dead_letters.close()
    [got] = dead_letter_messages(stream, 1)
    assert [name for name, _ in got.headers()] == [*SINK_HEADERS, "value_omitted"]
    assert dict(got.headers())["original_offset"] == b"11"


def test_a_poll_cut_into_many_flushes_is_put_back_before_max_poll_interval(idle_sink, monkeypatch):
    """One poll's 10,000 messages cut into one-message batches (--max-batch-messages 1, or days
    alternating) were all flushed inside that poll: past max.poll.interval.ms the member was
    dropped and the sink exited 1 at every restart. Past TAKE_SECONDS the rest is sought back."""
    monkeypatch.setattr(sink_module, "TAKE_SECONDS", 0.0)
    sink, flushed = idle_sink(max_batch_messages=1)

    def flush(batch: Batch) -> None:
        flushed.append(batch)
        sink._flushes += 1

    sink._flush = flush
    sought: list[tuple[int, int]] = []
    consumer = sink._consumer

    class Seeks:
        def seek(self, tp: TopicPartition) -> None:
            sought.append((tp.partition, tp.offset))

        def close(self) -> None:
            consumer.close()

    sink._consumer = Seeks()
    at = noon(date(2026, 1, 5))
    sink._take([message(offset, b"{}", at) for offset in range(5)])
    assert [b.first for b in flushed] == [0]
    assert sought == [(0, 1)]


def test_the_dead_letter_topic_is_created_with_the_topics_max_message_bytes(stream):
    """A topic that takes 2 MB messages needs a dead-letter topic that takes them too (plus the
    sink's headers), or its too-large dead letters would be refused."""
    admin = AdminClient({"bootstrap.servers": stream["bootstrap"]})
    name = f"big-{uuid.uuid4().hex[:8]}"
    big = NewTopic(name, 1, 1, config={"max.message.bytes": "2000000"})
    admin.create_topics([big])[name].result(10)
    topics.ensure_topics(stream["bootstrap"], name)
    resource = ConfigResource(ConfigResource.Type.TOPIC, f"{name}.dlq")
    found = admin.describe_configs([resource])[resource].result(10)
    assert int(found["max.message.bytes"].value) == 2_000_000 + topics.DLQ_HEADROOM


def test_broken_json_reaches_raw_dead_letter_with_its_line_number(stream, sinks, resources):
    day = date(2026, 1, 5)
    at = int(datetime(2026, 1, 5, 12, tzinfo=UTC).timestamp() * 1000)
    # Alternating partitions: 0 gets b-1, the cut line (its line 2), b-4; 1 gets b-2, b-3, [1, 2].
    values = [
        event("b-1"),
        event("b-2"),
        b'{"event_id": "cut',
        event("b-3"),
        event("b-4"),
        b"[1, 2]",
    ]
    ends = produce(stream, values, timestamp_ms=at)
    sink = sinks.thread(max_batch_seconds=0.5)
    wait_committed(stream, ends)
    sink.stop()
    assert materialize_days(
        [*RAW_FILE_ASSETS, DEAD_LETTER_SPEC], resources, [day], selection=["raw/events"]
    ).success
    warehouse = stream["settings"].warehouse
    dead = query(
        warehouse,
        "SELECT source_file, line_number, raw_record FROM raw.dead_letter ORDER BY raw_record",
    )
    tid = topic_id(stream)
    assert dead == [
        (f"events/dt={day}/kafka-{tid}-1-0-2.jsonl", 3, "[1, 2]"),
        (f"events/dt={day}/kafka-{tid}-0-0-2.jsonl", 2, '{"event_id": "cut'),
    ]
    loaded = query(warehouse, "SELECT event_id FROM raw.events ORDER BY event_id")
    assert loaded == [("b-1",), ("b-2",), ("b-3",), ("b-4",)]
    # The landing sensor takes the sink's files like any other.
    keys = set(DAILY_PARTITIONS.get_partition_keys())
    scan = scan_source(resources["landing"], EVENT_FILES, SourceCursor(), keys, 7, 100)
    assert [(d, s.files) for d, s in scan.changed.items()] == [(day, 2)]
    assert scan.waiting == []


def lag_series(stream) -> dict[str, float]:
    metrics = collect_kafka_lag(stream["bootstrap"], stream["group"], stream["topic"])
    return {f"{s.name}{s.labels.get('partition', '')}": s.value for m in metrics for s in m.samples}


def test_watermarks_unanswered_in_time_are_kafka_down_not_a_failed_scrape(stream, monkeypatch):
    """The client answers a watermark request that times out with None, not an exception: it
    was unpacked, and the TypeError failed the whole scrape (and the lag sensor's tick). The
    real client against the real broker, its answer replaced: a timeout cannot be timed here."""
    from data_platform.stream import lag as lag_module

    class TimingOut(Consumer):
        def get_watermark_offsets(self, *args, **kwargs):
            return None

    produce(stream, [event("e")])
    monkeypatch.setattr(lag_module, "Consumer", TimingOut)
    up = {
        m.name: m.samples[0].value
        for m in collect_kafka_lag(stream["bootstrap"], stream["group"], stream["topic"])
    }
    assert up == {"data_platform_kafka_up": 0}


def test_lag_per_partition_in_the_sensor_and_prometheus(stream, sinks):
    ends = produce(stream, [event(f"l-{i}") for i in range(6)], one_by_one=True)
    assert ends == {0: 3, 1: 3}
    sensor = build_lag_sensor(stream["bootstrap"], 4, stream["group"], stream["topic"])
    assert lag_series(stream) == {
        "data_platform_kafka_up": 1,
        "data_platform_kafka_consumer_lag0": 3,
        "data_platform_kafka_consumer_lag1": 3,
    }
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"alerts": AlertWebhook()})
        behind = sensor(context)
        observation = behind.asset_events[0]
        assert observation.metadata["lag_total"].value == 6
        assert observation.metadata["lag_partition_1"].value == 3
        assert json.loads(behind.cursor)["alerting"] is True  # 6 > 4: the alert went out
        sink = sinks.thread(max_batch_seconds=0.2)
        wait_committed(stream, ends)
        sink.stop()
        context = dg.build_sensor_context(
            instance=instance, cursor=behind.cursor, resources={"alerts": AlertWebhook()}
        )
        caught_up = sensor(context)
    kinds = {type(e).__name__: e.metadata["lag_total"].value for e in caught_up.asset_events}
    assert kinds == {"AssetObservation": 0, "AssetMaterialization": 0}
    assert json.loads(caught_up.cursor)["alerting"] is False
    assert lag_series(stream)["data_platform_kafka_consumer_lag0"] == 0


def test_sigterm_flushes_commits_and_exits_0(stream, sinks):
    sink = sinks.process("sink", "--max-batch-seconds", "600", script=REPORT_PENDING)
    sink.wait_for("assigned")
    ids = [f"t-{i}" for i in range(1_000)]
    ends = produce(stream, [event(i) for i in ids])
    # All 1,000 held, no limit reached: only SIGTERM flushes them. Waited for, not slept: on a
    # loaded machine the sink held fewer, and SIGTERM flushes only what it holds.
    sink.wait_for("consume: pending 1000\n")
    assert landed(stream) == []
    assert sink.terminate() == 0
    assert committed(stream) == ends
    assert_exactly_once(stream, ids)


@pytest.mark.parametrize("zone", ["not_a_folder", "missing_bucket"])
def test_a_landing_zone_that_refuses_the_file_is_one_line_and_exit_1(
    zone, stream, sinks, tmp_path, monkeypatch, request
):
    """A landing error (not a folder, disk full, no bucket or credentials) was a traceback, and
    the rebalance callback of the consumer's close published again and failed a second time."""
    if zone == "not_a_folder":
        # A file where the source's folder should be (a landing folder that is a file is a
        # wrong setting, refused before the sink starts: test_settings_lines.py).
        landing = tmp_path / "landing"
        landing.mkdir()
        (landing / "events").write_text("a file where the folder should be")
        expected = f"DATA_PLATFORM_LANDING={landing}"
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        for name, value in (("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "x")):
            monkeypatch.setenv(name, value)
        landing = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/zone"
        expected = f"DATA_PLATFORM_LANDING={landing}"
    monkeypatch.setenv("DATA_PLATFORM_LANDING", str(landing))
    ids = [f"e-{i}" for i in range(10)]
    ends = produce(stream, [event(i) for i in ids])
    sink = sinks.process("sink", "--max-batch-seconds", "0.5")
    assert sink.process.wait(60) == 1, sink.text()
    log = sink.text()
    assert "Traceback" not in log, log
    [line] = [line for line in log.splitlines() if expected in line]
    assert line.startswith("data-platform consume: landing zone"), log
    assert committed(stream) != ends  # nothing committed past a file that is not there


def test_a_broker_that_stops_answering_mid_flush_is_one_line_and_exit_1(
    kafka_broker, stream, sinks
):
    """The broker frozen while a batch waited: the topic's id, read before the flush, timed out
    as Python's bare TimeoutError, which fell to the CLI's path-error branch: exit 2 (a wrong
    setting's status) and `data-platform: : fix the path or the setting that names it`."""
    from data_platform.services.process import read_pid

    sink = sinks.process("sink", "--max-batch-seconds", "4")
    sink.wait_for("assigned partitions")
    produce(stream, [event(f"e-{i}") for i in range(10)], partition=0)
    time.sleep(1.5)  # fetched (the sink polls every 0.5 s), its batch 2.5 s from its flush
    broker = read_pid(kafka_broker.pid_file)
    os.kill(broker, signal.SIGSTOP)
    try:
        status = sink.process.wait(60)
    finally:
        os.kill(broker, signal.SIGCONT)
    log = sink.text()
    assert status == 1 and "Traceback" not in log, log
    [line] = [line for line in log.splitlines() if line.startswith("data-platform")]
    assert line == f"data-platform consume: Kafka at {stream['bootstrap']}: no answer within 10 s"
    assert committed(stream)[0] < 0  # nothing committed past a file that is not there


def test_a_broker_away_is_the_sinks_one_line_not_a_flood_of_client_lines(settings, monkeypatch):
    """Started with no broker, the sink printed 195 lines in 11 s, one librdkafka `FAIL` per
    connection retry (every 50 ms), before its own line; the clients' lines now go to one
    logger that shows each kind once a minute."""
    bootstrap = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("DATA_PLATFORM_KAFKA_BOOTSTRAP", bootstrap)
    consume = subprocess.run(
        [sys.executable, "-m", "data_platform.cli", "consume"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    lines = [line for line in (consume.stdout + consume.stderr).splitlines() if line.strip()]
    assert consume.returncode == 1 and "Traceback" not in consume.stderr, lines
    assert len(lines) <= 3, lines
    assert lines[-1].startswith(f"data-platform consume: Kafka at {bootstrap}: "), lines
    # What to do, not librdkafka's KafkaError{code=_TRANSPORT,...} alone.
    assert lines[-1].endswith(
        ": start the broker (the local one: SERVICES=kafka make services-up) or point "
        "DATA_PLATFORM_KAFKA_BOOTSTRAP at one that runs"
    ), lines
    assert "KafkaError{" not in lines[-1], lines
    assert not [line for line in lines if line.startswith("%")], lines  # librdkafka's own


def test_client_lines_of_a_kind_are_shown_once_a_minute():
    clock = [0.0]
    once = OncePerKind(seconds=60, clock=lambda: clock[0])

    def shown(kind: str) -> bool:
        record = logging.LogRecord("k", logging.ERROR, "", 0, "%s [%s] %s", (kind, "c", "m"), None)
        return once.filter(record)

    assert [shown("FAIL"), shown("FAIL"), shown("SESSTMOUT")] == [True, False, True]
    clock[0] = 59.9
    assert not shown("FAIL")
    clock[0] = 60.0
    assert shown("FAIL")


def test_simulate_to_kafka_lands_the_simulated_events_and_their_defects(
    stream, sinks, resources, capsys
):
    stream["topic"], stream["group"] = "events", f"g-sim-{uuid.uuid4().hex[:8]}"
    argv = ["simulate", "--to-kafka", "--days", "2", "--events-per-day", "300", "--quiet"]
    assert cli.main(argv) == 0
    summary = capsys.readouterr().out
    records, hard = map(
        int, re.search(r"events: \d+ files, (\d+) records, (\d+) for dead", summary).groups()
    )
    produced = int(re.search(r"kafka: (\d+) events produced", summary).group(1))
    assert produced == records
    assert not list(
        Path(stream["settings"].landing).glob("events/dt=*/2*.jsonl*")
    )  # no event files
    sink = sinks.thread(max_batch_seconds=0.5)
    deadline = time.monotonic() + 60
    while sum(len(lines) for *_, lines in landed(stream)) < produced:
        assert time.monotonic() < deadline, sink.lines
        time.sleep(0.2)
    sink.stop()
    days = sorted(
        {
            date.fromisoformat(p.parent.name[3:])
            for p in Path(stream["settings"].landing).glob("events/dt=*/kafka-*")
        }
    )
    assert materialize_days(
        [*RAW_FILE_ASSETS, DEAD_LETTER_SPEC], resources, days, selection=["raw/events"]
    ).success
    warehouse = stream["settings"].warehouse
    loaded = query(warehouse, "SELECT count(*) FROM raw.events")[0][0]
    rejected = query(warehouse, "SELECT count(*) FROM raw.dead_letter WHERE source = 'events'")[0][
        0
    ]
    assert (loaded + rejected, rejected) == (produced, hard)


def test_a_partition_never_committed_lags_from_the_start_of_its_log():
    """Retention moves a log's start past 0: counting from 0, the lag grew by every message
    deleted, and could raise a false "falling behind" alert."""
    assert PartitionLag(0, start_offset=100, end_offset=150, committed=None).lag == 50
    assert PartitionLag(0, start_offset=100, end_offset=150, committed=120).lag == 30
    # A commit past the end (the end read before the commit): no negative lag.
    assert PartitionLag(0, start_offset=100, end_offset=150, committed=160).lag == 0
