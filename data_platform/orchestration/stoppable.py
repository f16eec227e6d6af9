"""Run a command with SIGINT and SIGTERM at their defaults: `make run`'s `dagster dev`.

A shell without job control starts a background command (`make run &` in a script, a CI step,
a supervisor's wrapper) with SIGINT ignored, and POSIX lets no shell undo that. `dagster dev`
maps SIGTERM to whatever SIGINT does, so it then ignored both: SIGTERM to `make run`'s group
left the UI, the daemon and the code servers serving (measured: all six processes alive 60 s
later; make exited, the warehouse and port 3000 still held), and only kill -9 ended them,
mid-run. A signal ignored is inherited through exec, a handler is not: reset here, `dagster
dev` installs its own, and SIGTERM stops it in ~7 s as Ctrl-C does.

`--restart`: run the command as a child and start it again, RESTART_SECONDS later, whenever it
exits unasked after running SETTLED_SECONDS, whatever its status. `dagster dev` ends itself, the
UI and every code server, with status 0, when its daemon or its webserver dies ("dagster-daemon
process shut down unexpectedly with return code -9"): the OOM killer taking the daemon stopped
the whole platform until a person ran `make run` again (the 2026-12-07 chaos review). A command
that ends sooner (a port in use, a broken workspace) is not restarted: its status is returned.
The child runs in a process group of its own, and a SIGINT or SIGTERM received here (a group's
or this process's) is passed on to it once and stops it for good: in `make run`'s group it
would also have had the group's own, and a second interrupt may cut `dagster dev`'s shutdown
short.

Usage: `python -m data_platform.orchestration.stoppable [--restart] PROGRAM [ARGS...]`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

RESTART_SECONDS = 5.0
# How long a command must have run for its end to be a crash worth a restart.
SETTLED_SECONDS = 60.0


def exec_stoppable(argv: list[str]) -> None:
    """Replace this process with `argv`, SIGINT and SIGTERM at their defaults."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    os.execvp(argv[0], argv)


def run_restarting(
    argv: list[str], pause: float = RESTART_SECONDS, settled: float = SETTLED_SECONDS
) -> int:
    """Run `argv` until a SIGINT or SIGTERM asks it to stop, or until it ends within `settled`
    seconds of its start; its last exit status."""
    stopping: list[int] = []
    child: subprocess.Popen | None = None

    def stop(signum: int, _frame: object) -> None:
        if not stopping and child is not None and child.poll() is None:
            child.send_signal(signum)
        stopping.append(signum)

    # Handlers, not SIG_IGN: the child's exec resets them to the defaults, as exec_stoppable's.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    status = 0
    while not stopping:
        started = time.monotonic()
        child = subprocess.Popen(argv, process_group=0)
        status = child.wait()
        if stopping:
            break
        if time.monotonic() - started < settled:
            print(f"{argv[0]} exited with status {status}: not started again", file=sys.stderr)
            break
        print(
            f"{argv[0]} exited with status {status}, unasked: starting it again in {pause:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        deadline = time.monotonic() + pause
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.1)
    return status


if __name__ == "__main__":
    args = sys.argv[1:]
    restart = bool(args) and args[0] == "--restart"
    args = args[1:] if restart else args
    if not args:
        sys.exit(
            "usage: python -m data_platform.orchestration.stoppable [--restart] PROGRAM [ARGS...]"
        )
    if restart:
        sys.exit(run_restarting(args))
    exec_stoppable(args)
