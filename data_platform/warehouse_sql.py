"""`data-platform sql`: a read-only query of the warehouse, the one way scripts and people read it.

The command line and the output formats are the same on every engine; how a query is kept
read-only, waited for and streamed is each engine's own (`data_platform.sql_engines`: DuckDB
waits for the writer's lock and opens the file read-only; Spark has its parser vet the statement).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

from data_platform.cli import seconds
from data_platform.resources.duckdb_lock import LOCK_WAIT_SECONDS
from data_platform.settings import load_settings
from data_platform.sql_engines import HOLD_SECONDS, QueryError, read_only_query
from data_platform.sql_output import FORMATS, write_csv, write_json, write_table

# Ctrl-C or SIGINT: the shell's convention (128 + SIGINT), as `materialize` answers it.
EXIT_INTERRUPTED = 130


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", help="one SQL query, e.g. 'SELECT * FROM marts.daily_revenue'")
    parser.add_argument("--format", choices=FORMATS, default="table", help="default: table")
    parser.add_argument(
        "--timeout",
        type=functools.partial(seconds, zero=True),
        default=LOCK_WAIT_SECONDS,
        metavar="SECONDS",
        help="how long to wait for a run writing the warehouse (DuckDB; default %(default)g)",
    )
    parser.add_argument(
        "--hold-at-most",
        type=functools.partial(seconds, zero=True),
        default=HOLD_SECONDS,
        metavar="SECONDS",
        help="stop a query that keeps the warehouse from its writers longer (DuckDB: a run "
        "waits ~1 min for it, then fails; 0: no limit; default %(default)g)",
    )


def run(args: argparse.Namespace) -> int:
    """Exit status: 0 done, 1 the query could not run (message on stderr), 2 a wrong setting,
    130 Ctrl-C (while it waits for the writer, runs the query or writes the rows): one line,
    where DuckDB's "Query interrupted" was a traceback and exit 1."""
    settings = load_settings()  # a SettingsError is the CLI's to report (status 2)
    try:
        with read_only_query(settings, args.query, args.timeout, args.hold_at_most) as result:
            if args.format == "csv":
                write_csv(result.columns, result.rows, sys.stdout)
            elif args.format == "json":
                write_json(result.columns, result.types, result.rows, sys.stdout)
            else:
                write_table(result.columns, result.rows, sys.stdout)
    except QueryError as err:
        print(f"data-platform sql: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("data-platform sql: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader stopped reading (`| head`): not an error of the query. Python's own flush
        # at exit would fail on the closed pipe again, so stdout points nowhere from here.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
