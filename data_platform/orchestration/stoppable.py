"""Run a command with SIGINT and SIGTERM at their defaults: `make run`'s `dagster dev`.

A shell without job control starts a background command (`make run &` in a script, a CI step,
a supervisor's wrapper) with SIGINT ignored, and POSIX lets no shell undo that. `dagster dev`
maps SIGTERM to whatever SIGINT does, so it then ignored both: SIGTERM to `make run`'s group
left the UI, the daemon and the code servers serving (measured: all six processes alive 60 s
later; make exited, the warehouse and port 3000 still held), and only kill -9 ended them,
mid-run. A signal ignored is inherited through exec, a handler is not: reset here, `dagster
dev` installs its own, and SIGTERM stops it in ~7 s as Ctrl-C does.

Usage: `python -m data_platform.orchestration.stoppable PROGRAM [ARGS...]`.
"""

from __future__ import annotations

import os
import signal
import sys


def exec_stoppable(argv: list[str]) -> None:
    """Replace this process with `argv`, SIGINT and SIGTERM at their defaults."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m data_platform.orchestration.stoppable PROGRAM [ARGS...]")
    exec_stoppable(sys.argv[1:])
