"""`make bench`: the Kafka sink's throughput, landing 200-byte events on this machine.

The events are produced first (not timed); the clock runs from the sink's partition assignment
(the group join, seconds on any broker, is not throughput) until its committed offsets reach
the end of every partition, i.e. until the last file is durable and committed; the last
batches are flushed by stopping the sink once it holds every message. The broker is
tansu, on the same 2 cores as the sink.
"""

from __future__ import annotations

import resource
import tempfile
import threading
import time

import psutil
from confluent_kafka import Producer

from data_platform.resources.landing import LandingZone
from data_platform.services.base import start
from data_platform.services.config import load_services_config
from data_platform.services.kafka_broker import KafkaBroker
from data_platform.services.process import read_pid
from data_platform.stream.config import SinkConfig
from data_platform.stream.lag import consumer_lag
from data_platform.stream.sink import Sink
from data_platform.stream.topics import ensure_topics
from data_platform_tests.helpers import free_port

EVENTS = 1_000_000
GOAL = 100_000


def event(i: int) -> bytes:
    text = (
        f'{{"event_id":"bench-{i:09d}","user_id":{i % 5000},"event_type":"page_view",'
        f'"occurred_at":"2026-01-05T12:00:00Z","session_id":"s-{i % 9973}","properties":'
        '{"page":"/products/'
    )
    return (text + "x" * (198 - len(text)) + '"}').encode()


def produce(bootstrap: str, topic: str, count: int) -> dict[int, int]:
    """Produce `count` events; returns each partition's end offset, from the delivery reports."""
    ends: dict[int, int] = {}

    def delivered(error, message) -> None:
        assert error is None, error
        ends[message.partition()] = max(ends.get(message.partition(), 0), message.offset() + 1)

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1 << 20})
    for i in range(count):
        while True:
            try:
                producer.produce(topic, event(i), on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush()
    return ends


def cpu_seconds(broker_pid: int) -> tuple[float, float]:
    """CPU seconds used so far by this process (the sink and its client threads) and the broker."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    broker = psutil.Process(broker_pid).cpu_times()
    return own.ru_utime + own.ru_stime, broker.user + broker.system


def measure(
    bootstrap: str, broker_pid: int, landing: LandingZone, topic: str, ends: dict[int, int]
) -> tuple[float, float, float]:
    """Wall seconds from assignment to every message landed (or dead-lettered) and committed,
    and the CPU seconds the sink and the broker used meanwhile: on a shared machine the wall
    clock measures the neighbours too."""
    assigned = threading.Event()
    config = SinkConfig(bootstrap=bootstrap, topic=topic, group=f"bench-{topic}")
    sink = Sink(config, landing, lambda line: assigned.set() if "assigned" in line else None)
    times: dict[str, float] = {}

    def watch() -> None:
        assigned.wait()
        times["start"], times["cpu_start"] = time.perf_counter(), cpu_seconds(broker_pid)
        # Once every message is taken, the tail batches are flushed by stopping the sink (as
        # SIGTERM does) rather than by their 5 s timer: that wait is latency, measured apart.
        # The sink counts a batch as landed once its commit returned: no broker round trips here.
        while sink.landed + sink.dead_lettered + sink.pending() < sum(ends.values()):
            time.sleep(0.01)
        sink.stop()
        while sink.landed + sink.dead_lettered < sum(ends.values()):
            time.sleep(0.01)
        times["end"], times["cpu_end"] = time.perf_counter(), cpu_seconds(broker_pid)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    sink.run()
    watcher.join()
    committed = {p.partition: p.committed for p in consumer_lag(bootstrap, config.group, topic)}
    assert committed == ends and sink.landed == sum(ends.values()), (committed, ends)
    (sink_0, broker_0), (sink_1, broker_1) = times["cpu_start"], times["cpu_end"]
    return times["end"] - times["start"], sink_1 - sink_0, broker_1 - broker_0


def bench_stream_throughput() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        broker = KafkaBroker(
            load_services_config(
                {"DATA_PLATFORM_HOME": tmp, "DATA_PLATFORM_KAFKA_PORT": str(free_port())}
            )
        )
        start(broker)
        try:
            ensure_topics(broker.bootstrap, "bench", partitions=2)
            ends = produce(broker.bootstrap, "bench", EVENTS)
            landing = LandingZone(url=f"{tmp}/landing")
            pid = read_pid(broker.pid_file)
            seconds, sink_cpu, broker_cpu = measure(broker.bootstrap, pid, landing, "bench", ends)
        finally:
            broker.stop()
    rate = EVENTS / seconds
    print(
        f"stream sink: {EVENTS:,} events of 200 bytes landed and committed in {seconds:.2f}s "
        f"= {rate:,.0f}/s -> goal >= {GOAL:,}/s [{'ok' if rate >= GOAL else 'MISSED'}]; "
        f"CPU: sink {sink_cpu:.2f}s ({EVENTS / sink_cpu:,.0f} events per CPU second), "
        f"broker {broker_cpu:.2f}s"
    )


def bench_stream_latency() -> None:
    """Produce -> rows in raw.events and marts.fct_events, under `make run`'s processes."""
    from data_platform_tests import bench_stream_latency as latency

    result = latency.run()
    raw, fct = result["produce_to_raw_events_s"], result["produce_to_fct_events_s"]
    print(
        f"stream: produced -> raw.events {raw:.0f}s (goal < 30 s) "
        f"[{'ok' if raw < 30 else 'MISSED'}], -> marts.fct_events {fct:.0f}s (goal < 90 s) "
        f"[{'ok' if fct < 90 else 'MISSED'}]; details: {result}"
    )


if __name__ == "__main__":
    bench_stream_throughput()
    bench_stream_latency()
