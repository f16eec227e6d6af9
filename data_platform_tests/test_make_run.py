"""`make run` as a script or supervisor starts it: in the background, then stopped by SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from data_platform_tests.helpers import environ_without_settings, free_port

REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("data-platform"))


def _serves(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_make_run_started_in_the_background_stops_on_sigterm(tmp_path):
    """A shell without job control starts `make run &` with SIGINT ignored, and `dagster dev`
    maps SIGTERM to SIGINT's disposition: SIGTERM to the group left the UI, the daemon and the
    code servers serving 60 s later (make gone, port and warehouse held) until kill -9. Here
    the whole group is gone within a minute of SIGTERM, and the UI's port is free again."""
    env = environ_without_settings(
        DATA_PLATFORM_HOME=str(tmp_path / "home"),
        DATA_PLATFORM_UI_PORT=str(ui_port := free_port()),
        DATA_PLATFORM_METRICS_PORT=str(free_port()),
    )
    env = {k: v for k, v in env.items() if not k.startswith(("MAKE", "MFLAGS"))}
    small_day = ["--days", "1", "--users", "5", "--products", "5", "--events-per-day", "50"]
    subprocess.run([CLI, "simulate", *small_day, "--quiet"], env=env, check=True, timeout=120)
    make = [shutil.which("make"), "-s", "-C", str(REPO), "-o", "install", "-o", ".venv/.installed"]
    with (tmp_path / "make_run.log").open("wb") as log:
        process = subprocess.Popen(
            [*make, "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_ignore_sigint,
        )
    url = f"http://127.0.0.1:{ui_port}/server_info"
    try:
        deadline = time.monotonic() + 240
        while not _serves(url):
            assert process.poll() is None, (tmp_path / "make_run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the UI did not come up"
            time.sleep(1)
        os.killpg(process.pid, signal.SIGTERM)
        stopped = time.monotonic()
        while _group_alive(process.pid) and time.monotonic() - stopped < 60:
            process.poll()  # reaps make: a zombie would keep the group "alive"
            time.sleep(0.5)
        assert not _group_alive(process.pid), "make run's processes outlived SIGTERM by 60 s"
        assert not _serves(url)
    finally:
        if _group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


# A stand-in for `dagster dev`: each start noted with its pid; the first ends by itself after a
# second, with the status given (dagster dev exits 0 when its daemon died), the next serves
# until interrupted.
SERVER = """
import os, sys, time
from pathlib import Path
starts = Path(sys.argv[1])
with starts.open("a") as noted:
    noted.write(f"{os.getpid()}\\n")
if len(starts.read_text().split()) == 1:
    time.sleep(1)
    sys.exit(int(sys.argv[2]))
time.sleep(600)
"""
RESTARTING = (
    "import sys; from data_platform.orchestration.stoppable import run_restarting; "
    "sys.exit(run_restarting(sys.argv[2:], pause=0.2, settled=float(sys.argv[1])))"
)


def _restarting(tmp_path: Path, status: int, settled: float) -> tuple[subprocess.Popen, Path]:
    starts = tmp_path / "starts"
    server = [sys.executable, "-c", SERVER, str(starts), str(status)]
    runner = subprocess.Popen(
        [sys.executable, "-c", RESTARTING, str(settled), *server], cwd=REPO, start_new_session=True
    )
    return runner, starts


def test_a_dagster_dev_that_ends_by_itself_is_started_again_until_a_sigterm_stops_it(tmp_path):
    """`dagster dev` ends the UI, the daemon and the code servers, with status 0, when its
    daemon dies (the OOM killer): the platform stayed down until a person ran `make run`."""
    runner, starts = _restarting(tmp_path, 0, 0.5)
    deadline = time.monotonic() + 30
    while len(starts.read_text().split() if starts.exists() else []) < 2:
        assert time.monotonic() < deadline and runner.poll() is None, "never started again"
        time.sleep(0.1)
    second = int(starts.read_text().split()[1])
    os.killpg(runner.pid, signal.SIGTERM)  # make run's group, as a supervisor stops it
    runner.wait(timeout=30)
    deadline = time.monotonic() + 10
    while psutil.pid_exists(second):
        assert time.monotonic() < deadline, "the restarted server outlived its stop"
        time.sleep(0.1)
    assert len(starts.read_text().split()) == 2


def test_a_dagster_dev_that_ends_before_it_settled_is_not_started_again(tmp_path):
    """A port in use or a broken workspace ends it at once: started again every 5 s, for ever,
    it would hide the error in a loop."""
    runner, starts = _restarting(tmp_path, 3, 60)
    assert runner.wait(timeout=30) == 3
    assert len(starts.read_text().split()) == 1
