"""`data-platform-dbt`: this environment's dbt, ended with the process that started it.

dagster-dbt runs dbt as a subprocess and offers no hook into how. A run killed with kill -9 (or
by the OOM killer) left its dbt step's `dbt` running until its current model ended, holding
DuckDB's single-writer lock: the run's retry waited behind it, and failed after the lock wait
(120 s) behind a longer model. Linux's parent-death signal, set before dbt starts, ends dbt
with the step that started it; DuckDB's write-ahead log makes that as safe as killing the step.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
from pathlib import Path

from data_platform.resources.spark_retries import bound_every_client

PR_SET_PDEATHSIG = 1
# The pid of the process that starts dbt, set by it (resources/dbt_cli.py): read from the
# child, the parent's pid could already be its new parent's, had the step died while Python
# started (tens of milliseconds).
PARENT_VARIABLE = "DATA_PLATFORM_DBT_PARENT"


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> None:
    """Ask Linux to send `sig` to this process when its parent ends (kept across exec);
    exit at once if the parent ended before the request was made."""
    expected = os.environ.get(PARENT_VARIABLE, "")
    parent = int(expected) if expected.isdigit() else os.getppid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        sys.exit(f"data-platform-dbt: the process that started dbt ended first (pid {parent})")


def report_log_failure_once() -> None:
    """A log handler that cannot write says so in one line, once, for the whole process.

    dbt logs every event to its file too (`<warehouse file>.dbt-target/dbt.log`): with that
    disk full, each event printed logging's "--- Logging error ---" and a 70-line traceback,
    1,825 of them for one failed step, burying dbt's own error (which still fails the step, as
    a write of its results fails too)."""
    reported = False

    def handle_error(handler: logging.Handler, record: logging.LogRecord) -> None:
        nonlocal reported
        if reported or not logging.raiseExceptions:
            return
        reported = True
        error = sys.exc_info()[1]
        where = getattr(handler, "baseFilename", None) or type(handler).__name__
        # Like logging's own report: a stderr that is gone too must not fail dbt's event.
        with contextlib.suppress(OSError, ValueError):
            print(
                f"data-platform-dbt: dbt's log {where} cannot be written ({error}): free "
                "space or fix permissions there; further log errors are not shown",
                file=sys.stderr,
                flush=True,
            )

    logging.Handler.handleError = handle_error  # type: ignore[method-assign]


def main() -> None:
    """dbt's own entry point, run in this process: on Spark its session's retries are bounded
    first (resources/spark_retries.py), which an exec of the `dbt` script would undo."""
    die_with_parent()
    report_log_failure_once()
    if os.environ.get("SPARK_REMOTE"):  # dbt-spark's session goes through Spark Connect
        bound_every_client()
    from dbt.cli.main import cli

    sys.argv[0] = str(Path(sys.executable).with_name("dbt"))
    sys.exit(cli())
