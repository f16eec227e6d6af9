"""The servers' logs are capped (services/logs.py): on real files, one of them held open by a
live writer as `process.spawn` holds a server's; and at every `services-up`, whether the service
runs or not. Spark's level and its worker's cleanup are checked on a real cluster in
test_spark_services.py."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from data_platform.services.base import start
from data_platform.services.logs import cap_log, main, rotated
from data_platform.services.process import wait_until

LINE = "2026-12-06 17:00:00 INFO line {:08d} " + "x" * 40 + "\n"
LINE_BYTES = 80  # every line alike


def write_lines(path: Path, count: int) -> None:
    path.write_text("".join(LINE.format(i) for i in range(count)))


def test_a_log_past_the_limit_keeps_its_last_whole_lines_in_dot_1_and_starts_empty(tmp_path):
    log = tmp_path / "redis.log"
    assert len(LINE.format(0)) == LINE_BYTES
    for kept in (100_000, 100_040):  # on a line's start; 40 B into the line before
        write_lines(log, 10_000)  # 800,000 B

        assert cap_log(log, limit=500_000, kept=kept)

        assert log.stat().st_size == 0
        copy = rotated(log).read_text()
        # 100,000 B are 1250 whole lines; with 40 B more the cut line is dropped, not kept half.
        lines = copy.splitlines(keepends=True)
        assert len(lines) == 1250
        assert lines[0] == LINE.format(10_000 - 1250)
        assert lines[-1] == LINE.format(9_999)
        assert len(copy) == 100_000
    assert stat.S_IMODE(rotated(log).stat().st_mode) == 0o600
    # No temp file left beside them.
    assert {p.name for p in tmp_path.iterdir()} == {"redis.log", "redis.log.1"}


def test_a_log_within_the_limit_or_missing_is_left_alone(tmp_path):
    log = tmp_path / "tansu.log"
    write_lines(log, 100)  # 8,000 B
    assert not cap_log(log, limit=8_000, kept=1_000)
    assert log.stat().st_size == 8_000
    assert not rotated(log).exists()
    assert not cap_log(tmp_path / "never-started.log")


def test_a_second_cap_replaces_dot_1(tmp_path):
    log = tmp_path / "workers.log"
    write_lines(log, 2_000)
    cap_log(log, limit=10_000, kept=5_000)
    log.write_text(LINE.format(99_999_999) * 200)  # 16,000 B written since
    assert cap_log(log, limit=10_000, kept=5_000)
    assert rotated(log).read_text() == LINE.format(99_999_999) * (5_000 // LINE_BYTES)


WRITER = """
import sys, time
out = open(sys.argv[1], "ab", buffering=0)  # as process.spawn opens a server's log
i = 0
while True:
    out.write(("line %08d " % i).encode() + b"x" * 100 + b"\\n")
    i += 1
    if i % 200 == 0:
        time.sleep(0.01)
"""
WRITER_LINE_BYTES = 115  # "line %08d " (14 B), 100 x, a newline


def test_a_log_a_live_server_holds_open_shrinks_and_gets_no_hole(tmp_path):
    """Truncated under a writer that opened it for append, the file takes the writer's next
    lines at its new start: no zeros up to the writer's old offset (a plain "wb" writer would
    leave them, and the file's size would come straight back)."""
    log = tmp_path / "connect.log"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(log)])
    try:
        assert wait_until(lambda: log.exists() and log.stat().st_size > 2_000_000, 60)
        size_before = log.stat().st_size
        assert cap_log(log, limit=1_000_000, kept=200_000)
        time.sleep(0.3)
        # Still writing, into the capped file.
        assert wait_until(lambda: log.stat().st_size > 10_000, 10)
    finally:
        writer.kill()
        writer.wait()
    data = log.read_bytes()
    assert b"\0" not in data
    assert len(data) < size_before
    numbers = [int(line.split()[1]) for line in data.splitlines()]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # whole, in order
    kept_lines = rotated(log).read_bytes().splitlines()
    kept_numbers = [int(line.split()[1]) for line in kept_lines]
    assert kept_numbers == list(range(kept_numbers[0], kept_numbers[0] + len(kept_numbers)))
    # The copy starts within the last 200,000 B of the file as it was at the cap (at least
    # `size_before`); it runs on to whatever the writer added while it copied.
    assert kept_numbers[0] * WRITER_LINE_BYTES >= size_before - 200_000 - WRITER_LINE_BYTES
    # The copy ends where the live file starts again, give or take the lines the writer added
    # between the copy and the truncation (logrotate's copytruncate loses those too).
    assert 0 < numbers[0] - int(kept_lines[-1].split()[1]) < 20_000


@dataclass
class RunningService:
    """A service that already answers: `start` launches nothing, only caps its logs."""

    log_files: tuple[Path, ...]
    name: str = "fake"
    launched: bool = False

    @property
    def log_file(self) -> Path:
        return self.log_files[0]

    def is_up(self) -> bool:
        return True

    def is_running(self) -> bool:
        return True

    def launch(self) -> None:
        self.launched = True


def test_services_up_caps_every_log_of_a_service_already_running(tmp_path, monkeypatch):
    import data_platform.services.logs as logs

    monkeypatch.setattr(logs, "LIMIT_BYTES", 100_000)
    monkeypatch.setattr(logs, "KEPT_BYTES", 50_000)
    big, small = tmp_path / "master.log", tmp_path / "worker.log"
    write_lines(big, 2_000)  # 160,000 B: past the limit
    write_lines(small, 1_000)  # 80,000 B: within it
    service = RunningService((big, small))

    start(service)  # type: ignore[arg-type]

    assert not service.launched
    assert big.stat().st_size == 0
    assert rotated(big).stat().st_size == 50_000
    assert small.stat().st_size == 80_000
    assert not rotated(small).exists()


def test_the_cli_caps_the_logs_it_is_given(tmp_path, monkeypatch):
    """What `make run` runs before each start of the event-stream sink, for consume.log."""
    import data_platform.services.logs as logs

    monkeypatch.setattr(logs, "LIMIT_BYTES", 10_000)
    monkeypatch.setattr(logs, "KEPT_BYTES", 5_000)
    log = tmp_path / "consume.log"
    write_lines(log, 200)  # 16,000 B
    assert main([str(log), str(tmp_path / "absent.log")]) == 0
    assert log.stat().st_size == 0
    assert rotated(log).stat().st_size == 4_960  # 62 whole lines of the last 5,000 B


def test_a_log_that_cannot_be_capped_is_said_and_the_service_still_starts(
    tmp_path, capsys, monkeypatch
):
    import data_platform.services.logs as logs

    monkeypatch.setattr(logs, "LIMIT_BYTES", 10_000)
    log = tmp_path / "redis.log"
    write_lines(log, 300)  # 24,000 B
    (tmp_path / "redis.log.1").mkdir()  # what the copy cannot replace
    (tmp_path / "redis.log.1" / "x").touch()
    service = RunningService((log,))
    service.is_up = lambda: service.launched  # type: ignore[method-assign]

    start(service, timeout=5)  # type: ignore[arg-type]

    assert service.launched
    assert log.stat().st_size == 24_000  # left whole, not emptied uncopied
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"fake: {log} was not capped: ")
