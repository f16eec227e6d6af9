"""The `metrics`, `backup` and `restore` subcommands: settings in, one line out on failure."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from data_platform.settings import load_settings, without_userinfo


def _s3_errors() -> tuple[type[BaseException], ...]:
    """What S3 raises when it refuses (no such bucket, credentials refused) or cannot be reached."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


S3_HINT = (
    "check the bucket, the AWS credentials (AWS_ACCESS_KEY_ID or AWS_PROFILE) and AWS_ENDPOINT_URL"
)


def run(args: argparse.Namespace, finished_restores: Sequence[str] = ()) -> int:
    """`finished_restores`: the labels of the interrupted restores the CLI finished first."""
    settings = load_settings()
    if args.command == "metrics":
        from data_platform.operations.metrics import serve

        return serve(settings.metrics_port)
    from data_platform.operations.backup_store import BackupError

    try:
        if args.command == "backup":
            from data_platform.operations.backup import run_backup

            return run_backup(settings, args.dest, args.timeout)
        from data_platform.operations.restore import run_restore

        return run_restore(settings, args.src, args.force, finished_restores)
    except BackupError as err:
        print(f"data-platform {args.command}: {err}", file=sys.stderr)
        return 1
    except _s3_errors() as err:
        location = without_userinfo(args.dest if args.command == "backup" else args.src)
        said = without_userinfo(str(err))  # botocore quotes the endpoint's URL
        print(f"data-platform {args.command}: {location}: {said}: {S3_HINT}", file=sys.stderr)
        return 1
    except OSError as err:  # the disk: denied, full, gone; a backup's names the file it stored
        print(
            f"data-platform {args.command}: {err}: fix it (free space, permissions), then run "
            "it again",
            file=sys.stderr,
        )
        return 1
