"""`data-platform simulate`: the simulator on the command line.

Targets come from the environment (README.md, "Environment") through `load_settings`; the
knobs are flags. Progress goes to stderr line by line, the summary to stdout, so a script can
keep the summary and still show a person what is happening.
"""

from __future__ import annotations

import argparse
import fcntl
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from data_platform.settings import SettingsError, load_settings, masked_url
from data_platform.simulator.config import SimulationConfig, SimulationError
from data_platform.simulator.runner import append_day, simulate


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: use YYYY-MM-DD") from None


def configure_parser(parser: argparse.ArgumentParser) -> None:
    defaults = SimulationConfig()
    add = parser.add_argument
    add("--seed", type=int, default=defaults.seed, help="random seed (default %(default)s)")
    add("--days", type=int, default=defaults.days, help="days of history (default %(default)s)")
    add("--end-date", type=_day, default=None, help="last simulated day (default: yesterday UTC)")
    add("--users", type=int, default=defaults.users, help="initial users (default %(default)s)")
    add("--products", type=int, default=defaults.products, help="products (default %(default)s)")
    add(
        "--events-per-day",
        type=int,
        default=defaults.events_per_day,
        help="events a day (default %(default)s)",
    )
    add(
        "--defect-rate",
        type=float,
        default=defaults.defect_rate,
        help="fraction of records with a defect; 0 gives clean data (default %(default)s)",
    )
    add(
        "--append-day",
        action="store_true",
        help="advance an existing simulation by one day instead of creating it "
        "(--days, --end-date, --users and --products are then ignored)",
    )
    add(
        "--if-empty",
        action="store_true",
        help="do nothing when the landing zone already holds files (what `make run` uses)",
    )
    add(
        "--to-kafka",
        action="store_true",
        help="produce the events to the topic `events` at DATA_PLATFORM_KAFKA_BOOTSTRAP instead "
        "of writing event files (payments and the database as usual)",
    )
    add("--quiet", action="store_true", help="no progress lines on stderr")


@contextmanager
def one_simulation_at_a_time(home: Path) -> Iterator[None]:
    """Hold the home's simulate lock, waiting for one held. Two `--append-day` at once (a cron
    overlapping itself) both read the same last day and wrote the next: the second's database
    changes failed on the first's ids, a 53-line traceback quoting simulated people's e-mails.
    In turn, the second appends the day after. The lock is the kernel's (flock): a simulate
    killed holding it holds it no more."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".simulate.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("simulate: waiting for another simulate of this home", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    # Imported here: the landing zone pulls in dagster (a second or two), which --help does not need.
    from data_platform.resources.landing import LandingZone

    try:
        config = SimulationConfig(
            seed=args.seed,
            days=args.days,
            end_date=args.end_date,
            users=args.users,
            events_per_day=args.events_per_day,
            defect_rate=args.defect_rate,
            products=args.products,
        )
    except SimulationError as error:
        print(f"simulate: {error}", file=sys.stderr)
        return 2
    landing = LandingZone(url=settings.landing)
    target = landing
    if args.to_kafka:
        from confluent_kafka import KafkaException

        from data_platform.simulator.kafka_events import KafkaEventsLanding
        from data_platform.stream.config import TOPIC
        from data_platform.stream.topics import ensure_topics, kafka_error_line

        if not settings.kafka_bootstrap:
            print("simulate: --to-kafka needs DATA_PLATFORM_KAFKA_BOOTSTRAP", file=sys.stderr)
            return 2
        try:
            ensure_topics(settings.kafka_bootstrap, TOPIC, security=settings.kafka_security)
        except KafkaException as error:
            line = kafka_error_line(settings.kafka_bootstrap, error, settings.kafka_security)
            print(f"simulate: {line}", file=sys.stderr)
            return 1
        target = KafkaEventsLanding(
            landing, settings.kafka_bootstrap, TOPIC, settings.kafka_security
        )
    action = append_day if args.append_day else simulate
    with one_simulation_at_a_time(settings.home):
        if args.if_empty and landing.list_files():
            if _holds_world(settings.source_db_url):
                print(f"landing zone {settings.landing} already holds files: nothing simulated")
                return 0
            print(
                "simulate: the landing zone holds files but the source database no world "
                "(an interrupted simulate): simulating again",
                file=sys.stderr,
            )
        # Written all the same, they were files and rows no partition ever reads. Not `make
        # run`'s --if-empty: a start date after yesterday then leaves the UI empty, not stopped.
        if not (args.append_day or args.if_empty) and config.last_day < settings.start_date:
            print(
                f"simulate: every simulated day is before DATA_PLATFORM_START_DATE="
                f"{settings.start_date}, the first partition, so no run would read them: give an "
                "--end-date from that day on, or set an earlier start date",
                file=sys.stderr,
            )
            return 2
        try:
            summary = action(
                config,
                target,
                settings.source_db_url,
                progress=None if args.quiet else _progress,
            )
            if target is not landing:
                target.flush()
        except SimulationError as error:
            print(f"simulate: {error}", file=sys.stderr)
            return 1
    print(summary.describe())
    if target is not landing:
        print(f"kafka: {target.produced} events produced to {TOPIC} at {settings.kafka_bootstrap}")
    print(
        f"landing: {settings.landing}\nsource database: {_without_password(settings.source_db_url)}"
    )
    return 0


def _holds_world(url: str) -> bool:
    """Whether a simulate finished here: it writes the database after every file, so files
    with no world are what an interrupted first simulate (Ctrl-C in `make run`) leaves, and
    --if-empty skipped over them for good: a few days of files and no source database."""
    from data_platform.simulator import database

    return database.holds_world(database.connect(url))


def _without_password(url: str) -> str:
    """The URL as a log may show it: its password masked."""
    from sqlalchemy.engine import make_url

    return masked_url(make_url(url))


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
