"""`data-platform`: simulator, headless materialization and read-only SQL on the command line."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from datetime import date

from data_platform.resources.duckdb_lock import LOCK_WAIT_SECONDS
from data_platform.settings import (
    OWNER_ONLY_UMASK,
    SettingsError,
    UsageError,
    load_settings,
    location_refusal,
    masked,
    without_userinfo,
)


def seconds(text: str, zero: bool = False) -> float:
    """An argparse type: a finite number of seconds > 0 (>= 0 with `zero`). nan compared
    false with every deadline: `sql` waited forever, `materialize` stopped at once ("timed out
    after nans"), as it did at 0 and below; inf crashed its timer thread, so no timeout."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        bound = ">= 0" if zero else "> 0"
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds {bound}")
    return value


def location(text: str) -> str:
    """An argparse type: a backup's folder or S3 prefix. Blank is refused: `backup "$DEST"`
    with DEST unset took its backup into the working folder and said it was verified."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is empty: give a folder or s3://bucket/prefix")
    # s3://user:secret@bucket/x was botocore's "Invalid bucket name" line, the secret in it.
    if refusal := location_refusal(text):
        raise argparse.ArgumentTypeError(f"{without_userinfo(text)!r} {refusal}")
    return text


def _add_materialize_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "materialize",
        help="materialize the whole graph (or a selection) for a date range, in one run",
        description="Headless: runs on the configured Dagster instance (DAGSTER_HOME), so the "
        "run shows in the UI. Partitioned assets get the whole date range in one run.",
    )
    parser.add_argument(
        "--start", type=date.fromisoformat, help="first day (default: first partition)"
    )
    parser.add_argument("--end", type=date.fromisoformat, help="last day (default: last partition)")
    parser.add_argument(
        "--select",
        default="*",
        help="asset selection, e.g. 'key:raw/events' or 'group:raw+' (default: everything)",
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        help="stop the run (marked failed, exit status 3) if it has not finished by then",
    )


def _add_operations_parsers(subparsers: argparse._SubParsersAction) -> None:
    subparsers.add_parser(
        "metrics",
        help="serve Prometheus metrics on 127.0.0.1:$DATA_PLATFORM_METRICS_PORT/metrics",
        description="Reads the Dagster instance and the warehouse at every scrape; "
        "runs until SIGINT or SIGTERM.",
    )
    backup = subparsers.add_parser(
        "backup",
        help="a consistent snapshot of the warehouse, the instance and the settings",
        description="Taken while runs write: waits for the warehouse's writer, then copies.",
    )
    backup.add_argument("dest", type=location, help="a new folder or s3://bucket/prefix")
    backup.add_argument(
        "--timeout",
        type=seconds,
        default=LOCK_WAIT_SECONDS,
        metavar="SECONDS",
        help="how long to wait for a run writing the warehouse (DuckDB; default %(default)g)",
    )
    restore = subparsers.add_parser(
        "restore",
        help="restore a backup into an empty home",
        description="Verifies every checksum before writing anything.",
    )
    restore.add_argument("src", type=location, help="the backup's folder or s3://bucket/prefix")
    restore.add_argument(
        "--force", action="store_true", help="overwrite a home that already holds state"
    )


def _finish_interrupted_restores() -> list[str]:
    """Before any command reads the home: a restore killed while putting its backup in place
    is finished (`operations/restore_journal.py`); the labels of those finished. One look at the
    home when there is none."""
    from data_platform.operations.backup_store import BackupError
    from data_platform.operations.restore_journal import finish_interrupted_restores
    from data_platform.settings import load_settings

    try:
        return finish_interrupted_restores(load_settings())
    except OSError as err:  # the disk: denied, full; its message names the path
        raise BackupError(
            f"finishing an interrupted restore: {err}: fix it, then run again"
        ) from None


def _parser(argv: Sequence[str] | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="data-platform", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    simulate = subparsers.add_parser("simulate", help="write simulated source data")
    if list(sys.argv[1:] if argv is None else argv)[:1] == ["simulate"]:
        # Its flags' defaults import the simulator (pandas, ~1 s): only for its own command,
        # so that `sql` answers a script in a fraction of a second.
        from data_platform.simulator.command import configure_parser

        configure_parser(simulate)
    _add_materialize_parser(subparsers)
    from data_platform.warehouse_sql import configure_parser as configure_sql

    configure_sql(
        subparsers.add_parser(
            "sql",
            help="a read-only query of the warehouse, results on stdout",
            description="Waits for a run writing the warehouse instead of failing on DuckDB's "
            "lock. Exit status: 0 done, 1 the query could not run, 2 a wrong setting.",
        )
    )
    _add_operations_parsers(subparsers)
    from data_platform.stream.command import configure_parser as configure_consume

    configure_consume(
        subparsers.add_parser(
            "consume",
            help="land the Kafka topic `events` into the landing zone, exactly once",
            description="Long-running: micro-batches become landing files named after their "
            "offsets, committed only once durable. Exit 0 on SIGTERM or Ctrl-C after a flush.",
        )
    )
    return parser


def _unreachable() -> tuple[type[Exception], ...]:
    """What a path, a database or an S3 store that cannot be used raises (a DAGSTER_HOME
    under a file, an unwritable landing folder, a database that does not answer, no bucket or
    no credentials): the setting's fault or the machine's, not the platform's. Imported only
    once one was raised: `sql` answers in less time than SQLAlchemy and botocore take to import."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError
    from sqlalchemy.exc import OperationalError

    return OSError, OperationalError, BotoCoreError, ClientError, Boto3Error


def _unreachable_line(err: Exception) -> str:
    """One line for `_unreachable`'s errors: what failed, where, and what to check."""
    from botocore.exceptions import EndpointConnectionError
    from sqlalchemy.exc import OperationalError

    if isinstance(err, OperationalError):
        from data_platform.ingestion.source_schema import driver_reason

        # An SQLite reason names no file, so the line shows the configured URL, password masked.
        url = masked(load_settings().source_db_url)
        return (
            f"a database could not be used ({driver_reason(err)}): check that DATA_PLATFORM_SOURCE_DB_URL="
            f"{url!r} names a database that is up and reachable (distributed mode: also the "
            "instance's PostgreSQL, DAGSTER_PG_HOST)"
        )
    if isinstance(err, EndpointConnectionError):  # it quotes the endpoint's URL
        return f"{without_userinfo(str(err))}: check AWS_ENDPOINT_URL and that the S3 store is up"
    if not isinstance(err, OSError):  # S3 refused it: no bucket, no or wrong credentials
        from data_platform.resources.landing import s3_access_advice

        said = without_userinfo(" ".join(str(err).split()))
        return f"S3 refused a request ({said}): {s3_access_advice()}"
    return f"{masked(str(err))}: fix the path or the setting that names it, then run again"


def main(argv: Sequence[str] | None = None) -> int:
    # Restored on return: the tests call main in their own process, whose umask is not ours to keep.
    previous = os.umask(OWNER_ONLY_UMASK)
    try:
        return _command(argv)
    finally:
        os.umask(previous)


def _command(argv: Sequence[str] | None) -> int:
    from data_platform.operations.backup_store import BackupError

    try:
        # Inside the `try`: a command's flag defaults may read the settings (consume's do).
        args = _parser(argv).parse_args(argv)
        finished_restores = _finish_interrupted_restores()
        if args.command in ("metrics", "backup", "restore"):
            from data_platform.operations.command import run as run_operation

            return run_operation(args, finished_restores)
        if args.command == "consume":
            from data_platform.stream.command import run as run_consume

            return run_consume(args)
        if args.command == "sql":
            from data_platform.warehouse_sql import run as run_sql

            return run_sql(args)
        if args.command == "simulate":
            from data_platform.simulator.command import run

            return run(args)
        from data_platform.materialize import materialize_range

        return materialize_range(args.select, args.start, args.end, args.timeout)
    except (SettingsError, UsageError) as err:
        print(f"data-platform: {err}", file=sys.stderr)
        return 2
    except BackupError as err:  # an interrupted restore's, or opening the Dagster instance
        print(f"data-platform: {err}", file=sys.stderr)
        return 1
    except _unreachable() as err:
        print(f"data-platform: {_unreachable_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
