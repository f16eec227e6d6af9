"""`data-platform`: the simulator and headless materialization from the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date

from data_platform.settings import SettingsError


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="data-platform", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    from data_platform.simulator.command import configure_parser

    configure_parser(subparsers.add_parser("simulate", help="write simulated source data"))
    _add_materialize_parser(subparsers)
    args = parser.parse_args(argv)
    try:
        if args.command == "simulate":
            from data_platform.simulator.command import run

            return run(args)
        from data_platform.materialize import materialize_range

        return materialize_range(args.select, args.start, args.end)
    except SettingsError as err:
        print(f"data-platform: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
