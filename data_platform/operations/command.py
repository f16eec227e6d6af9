"""The `metrics`, `backup` and `restore` subcommands: settings in, one line out on failure."""

from __future__ import annotations

import argparse
import sys

from data_platform.settings import load_settings


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.command == "metrics":
        from data_platform.operations.metrics import serve

        return serve(settings.metrics_port)
    from data_platform.operations.backup_store import BackupError

    try:
        if args.command == "backup":
            from data_platform.operations.backup import run_backup

            return run_backup(settings, args.dest)
        from data_platform.operations.restore import run_restore

        return run_restore(settings, args.src, args.force)
    except BackupError as err:
        print(f"data-platform {args.command}: {err}", file=sys.stderr)
        return 1
