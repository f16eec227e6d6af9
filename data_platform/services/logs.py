"""Size caps for the servers' logs, which nothing else rotates.

`process.spawn` hands each server a log opened for append and the server holds it for its whole
life, so the file cannot be renamed away under it (the server would go on writing the renamed
file). It is copied, then truncated in place ("copytruncate", as logrotate calls it): every
writer opened it with O_APPEND (`spawn`'s "ab", `pg_ctl --log`, the shell's `>>`), so its next
write lands at the new end, not at its old offset with a hole of zeros before it.

What is kept: the live log, and in `<log>.1` the last `KEPT_BYTES` of it as it was when capped
(from a line's start). A log is capped when `services-up` starts or checks its service, so at
most `KEPT_BYTES` plus what the server wrote since the last `up` are on disk. Lines written
between the copy and the truncation (milliseconds) are lost, logrotate's copytruncate caveat.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from data_platform.services.base import Service

# Past this size a log is capped; its last KEPT_BYTES go to `<log>.1`. A few thousand lines of
# Spark's or Celery's: the minutes before a failure, with the errors among them.
LIMIT_BYTES = 16 * 1024 * 1024
KEPT_BYTES = 8 * 1024 * 1024
_CHUNK = 1024 * 1024


def rotated(log_file: Path) -> Path:
    return log_file.with_name(log_file.name + ".1")


def cap_log(log_file: Path, limit: int | None = None, kept: int | None = None) -> bool:
    """Copy the last `kept` bytes of `log_file` (whole lines) to `<log>.1`, replacing the one
    there, then empty `log_file`, when it is larger than `limit`; True when it did. A missing
    log is fine (a service never started). Unset, the module's sizes, read at the call."""
    limit = LIMIT_BYTES if limit is None else limit
    kept = KEPT_BYTES if kept is None else kept
    try:
        size = log_file.stat().st_size
    except FileNotFoundError:
        return False
    if size <= limit:
        return False
    target = rotated(log_file)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temp.unlink(missing_ok=True)
    # Owner-only, as the log itself: it quotes what the server saw.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out, open(log_file, "rb") as log:
            start = max(0, size - kept)
            if start:
                # From the first line starting at `start` or after: the byte before tells
                # whether a line starts right at `start`, kept whole then.
                log.seek(start - 1)
                log.readline()
            # Up to the current end, not `size`: the server may have written meanwhile.
            while chunk := log.read(_CHUNK):
                out.write(chunk)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    os.truncate(log_file, 0)
    return True


def logs_of(service: Service) -> tuple[Path, ...]:
    """Every log a service writes: its `log_files` when it has several, else its `log_file`."""
    return tuple(getattr(service, "log_files", (service.log_file,)))


def cap_every_service_log(environ: Mapping[str, str]) -> int:
    """Cap the logs of every local service of the home `environ` names, running or not (a log
    never written is nothing to cap); how many were capped. The daemon's hourly sweep calls it
    (orchestration/log_retention.py): a server left running between two `up`s is capped too,
    wherever the platform runs beside its services."""
    from data_platform.services.config import load_services_config
    from data_platform.services.registry import SERVICE_NAMES, build_services

    services = build_services(load_services_config(environ), SERVICE_NAMES)
    return sum(cap_log(log_file) for service in services for log_file in logs_of(service))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m data_platform.services.logs LOG...`: cap logs a shell appends to (`make run`'s
    `consume.log`) before it starts their writer again."""
    parser = argparse.ArgumentParser(prog="python -m data_platform.services.logs")
    parser.add_argument("logs", nargs="+", type=Path)
    for log_file in parser.parse_args(argv).logs:
        cap_log(log_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
