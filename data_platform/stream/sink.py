"""`data-platform consume`: topic `events` -> landing files, each message landed exactly once.

How exactly-once holds, step by step (a crash can happen between any two):
1. Messages of one partition accumulate in a batch until it holds `max_batch_messages` or
   `max_batch_bytes`, is `max_batch_seconds` old, or the next message's UTC day (its Kafka
   timestamp, so the same on every re-read) differs, or the next message is one a file
   already landed holds (see below). A batch never spans partitions or days.
   A timestamp outside the days the platform ingests (`batch.DayWindow`), or none at all, is
   a "day" of its own: such runs of messages are batches of dead letters, never in a file.
2. Flush: dead letters of the batch are produced and acknowledged, then its file is published
   (`landing_files.publish`: complete or invisible, fsynced), named after the topic's id and
   the first and last offset of the range it covers,
   `events/dt=<day>/kafka-<topic id>-<partition>-<first>-<last>.jsonl`.
3. Then, synchronously, the commit of last + 1.
A restart (or the next owner after a rebalance) resumes at the committed offset. A crash before
2 leaves nothing visible (a hidden partial at most, removed when the partition is next assigned),
and the range is batched again. A crash between 2 and 3 leaves a file starting at the committed
offset, which the next owner adopts instead of cutting the range again with other bounds; so
does a group that never committed for every file landed before it (`adoption.py`).

Offsets name messages only within one incarnation of the topic: deleted and created again (on
tansu: after every broker restart), it counts from 0 under a new topic id, while the landing
zone keeps the old files. The id in the name keeps the new files from replacing old ones of the
same bounds, and adoption from taking an old file for a new range. The id is read when the
partitions are assigned, before anything is fetched, and read again before a file is published
or adopted: if the topic was recreated in between, the messages in hand may be the new
incarnation's (librdkafka does not reliably notice a recreated topic, librdkafka #4898), and the
sink exits 1 instead (`TopicIdError`). A restart lands the new incarnation from its start, since
the group's offsets went with the old topic.

Rebalances: partitions being revoked are flushed and committed in `on_revoke`; lost ones (the
group already gave them away) are dropped unflushed, for the new owner to batch. SIGTERM and
SIGINT flush and commit everything, then exit 0. The remaining gap is a *zombie*: a member that
stalls past max.poll.interval.ms between fetching and publishing, while its partition already
has a new owner. Its commit then fails and the sink exits 1, but its file stays; the sink polls
every half second and publishes in milliseconds, so this needs a 10 s stall mid-flush. Likewise
a topic recreated in the milliseconds between the id's second reading and the commit would
receive the old incarnation's offset.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from data_platform.resources.landing import LandingZone
from data_platform.stream.adoption import Adoption
from data_platform.stream.batch import DAY_MS, Batch, DayWindow, day_number, day_of, unlandable
from data_platform.stream.config import SinkConfig
from data_platform.stream.dead_letters import DeadLetterError, DeadLetters
from data_platform.stream.landing_files import LandingError, publish, remove_partials
from data_platform.stream.topics import TopicIdError, confirm_topic_id, describe_topic_id

POLL_SECONDS = 0.5
# The longest a sink works through one poll's messages before it polls again: well within
# max.poll.interval.ms (10 s). Flushes are synchronous (fsyncs, a commit), so a poll's 10,000
# messages cut into small batches (--max-batch-messages 1, days alternating) took over 10 s:
# the member was dropped mid-poll and the sink exited 1 ("Unknown member") at every restart.
TAKE_SECONDS = 3.0


class Sink:
    """One member of the sink's consumer group; `landed` and `dead_lettered` count what it
    committed, for the command's last line and the benchmark."""

    def __init__(
        self, config: SinkConfig, landing: LandingZone, log: Callable[[str], None] = print
    ):
        self.config = config
        self._landing = landing
        self._log = log
        self._consumer = Consumer(config.consumer_settings())
        self._admin = AdminClient(config.admin_settings())
        self._dead_letters = DeadLetters(
            config.producer_settings(), config.dlq_topic, config.topic, log
        )
        self._batches: dict[int, Batch] = {}
        self._adoption = Adoption(landing)
        self._stopping = False
        self._failed = False  # run() raised: the consumer's close must flush nothing more
        self._first_day = day_number(config.first_day)
        self.landed = self.dead_lettered = 0
        self._flushes = 0

    def stop(self, *_: object) -> None:
        self._stopping = True

    def pending(self) -> int:
        """Messages taken into batches not flushed yet (landed or dead-lettered at the flush).

        Safe to call from another thread (the benchmark's watcher): the batches are copied in
        one step before they are counted, while `run` may be adding or flushing one."""
        return sum(len(b.messages) + len(b.rejected) for b in list(self._batches.values()))

    def run(self) -> None:
        """Consume until `stop` (the command calls it on SIGTERM, SIGINT), then flush and commit
        everything."""
        self._consumer.subscribe(
            [self.config.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        try:
            while not self._stopping:
                self._take(self._consumer.consume(10_000, POLL_SECONDS))
                self._flush_due(time.monotonic())
            for partition in list(self._batches):
                self._flush(self._batches.pop(partition))
        except BaseException:
            # close() revokes the partitions: flushing there would meet the same error again,
            # inside the callback. What is not committed is the next owner's, as when lost.
            self._failed = True
            raise
        finally:
            self._consumer.close()
            self._dead_letters.close()

    def _take(self, messages: list[Message]) -> None:
        # The hot path: five C calls and an append per message; values are read at the flush.
        now = time.monotonic()
        batches, skip_below = self._batches, self._adoption.skip_below
        limit, max_bytes = self.config.max_message_bytes, self.config.max_batch_bytes
        window = DayWindow(self._first_day, int(time.time() * 1000) // DAY_MS + 1)
        first_day, last_day = window.first, window.last
        deadline, flushes = now + TAKE_SECONDS, self._flushes
        for index, message in enumerate(messages):
            # The clock is read per message only once this poll's messages made a flush.
            if self._flushes != flushes and time.monotonic() > deadline:
                self._put_back(messages[index:])
                break
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    self._log(f"a message could not be read: {error}")
                continue
            partition = message.partition()
            if skip_below and message.offset() < skip_below.get(partition, -1):
                continue
            day = message.timestamp()[1] // DAY_MS
            if not first_day <= day <= last_day:
                day = None  # misdated, or no timestamp (-1): a batch of dead letters
            batch = batches.get(partition)
            if (
                batch is None
                or batch.day_number != day
                or (batch.end_before is not None and message.offset() >= batch.end_before)
            ):
                if batch is not None:
                    self._flush(batches.pop(partition))
                batch = self._open(partition, day, message.offset(), now)
                if batch is None:
                    continue
            size = len(message)  # the value's length; 0 for an empty value or a tombstone
            if day is None or not size or size > limit:
                batch.rejected.append(unlandable(message, limit, window))
                # Held until the flush too: dead letters count, or a burst of them grew one
                # batch without bound. (`room`: one comparison per message, not two lengths.)
                batch.room -= 1
            else:
                batch.messages.append(message)
            batch.size += size
            if len(batch.messages) >= batch.room or batch.size >= max_bytes:
                self._flush(batches.pop(partition))

    def _put_back(self, messages: list[Message]) -> None:
        """Fetch these messages again at the next poll: each partition sought back to the first
        of them (its batch in hand holds the offsets before)."""
        first: dict[int, int] = {}
        for message in messages:
            if message.error() is None:
                first.setdefault(message.partition(), message.offset())
        for partition, offset in first.items():
            if partition in self._adoption.owned:
                self._consumer.seek(TopicPartition(self.config.topic, partition, offset))

    def _open(self, partition: int, day: int | None, offset: int, now: float) -> Batch | None:
        if partition not in self._adoption.owned:
            return None  # fetched before its revocation: the new owner reads it again
        folder = None if day is None else day_of(day * DAY_MS)
        last = self._adoption.landed_end(partition, folder, offset)
        if last is not None:
            # The file is of the incarnation assigned; the message at `offset`, only if it still is.
            confirm_topic_id(self._admin, self.config.topic, self._adoption.topic_id)
            self._log(f"partition {partition}: adopting landed offsets {offset}-{last}")
            self._commit(partition, last)
            return None
        batch = Batch(
            topic_id=self._adoption.topic_id,
            partition=partition,
            day_number=day,
            first=offset,
            opened_at=now,
            room=self.config.max_batch_messages,
            end_before=self._adoption.next_landed(partition, folder, offset),
        )
        self._batches[partition] = batch
        return batch

    def _flush_due(self, now: float) -> None:
        for partition, batch in list(self._batches.items()):
            if now - batch.opened_at >= self.config.max_batch_seconds:
                self._flush(self._batches.pop(partition))

    def _flush(self, batch: Batch) -> None:
        self._flushes += 1
        confirm_topic_id(self._admin, self.config.topic, batch.topic_id)
        data = batch.seal()  # also moves what cannot be landed to batch.rejected
        if batch.rejected:
            self._dead_letters.send(batch.partition, batch.rejected)
            self._dead_letters.flush()
        if data:
            publish(self._landing, batch.key, data)
        self._commit(batch.partition, batch.last)
        self.landed += batch.landed
        self.dead_lettered += len(batch.rejected)

    def _commit(self, partition: int, last: int) -> None:
        offsets = [TopicPartition(self.config.topic, partition, last + 1)]
        self._consumer.commit(offsets=offsets, asynchronous=False)

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = {tp.partition for tp in partitions}
        # Read before anything is fetched: the incarnation every fetched message then belongs to,
        # as long as `confirm_topic_id` finds it unchanged.
        topic_id = describe_topic_id(self._admin, self.config.topic)
        self._adoption.assign(numbers, topic_id)
        self._log(f"assigned partitions {sorted(numbers)} of {self.config.topic} (id {topic_id})")
        for key in remove_partials(self._landing, topic_id, numbers):
            self._log(f"removed the partial of {key}, left by a writer that stopped mid-write")

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            batch = self._batches.pop(tp.partition, None)
            if batch is not None and not self._failed:
                try:
                    self._flush(batch)
                except (KafkaException, DeadLetterError, TopicIdError, LandingError) as error:
                    # Uncommitted: the next owner adopts its file, if it was published.
                    self._log(f"partition {tp.partition}: flush on revoke failed: {error}")
        self._forget(partitions, "revoked")

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._batches.pop(tp.partition, None)
        self._forget(partitions, "lost")

    def _forget(self, partitions: list[TopicPartition], how: str) -> None:
        numbers = {tp.partition for tp in partitions}
        self._adoption.forget(numbers)
        self._log(f"{how} partitions {sorted(numbers)} of {self.config.topic}")
