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
