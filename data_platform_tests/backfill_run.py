"""What the backfill benchmarks measure of a command: one `data-platform materialize` over a
date range (its time, the runs it made, each step's time) and the peak memory of a process
with its children (a run and its dbt subprocesses): the sum of their resident sets, sampled,
and the kernel's exact peak of the largest one (what `make bench-scale` reports)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import psutil

CLI = str(Path(sys.executable).with_name("data-platform"))
# Often enough to see a step's peak: the runs measured last minutes.
RSS_SAMPLE_SECONDS = 0.25


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss: int  # bytes: the largest sum, over the samples, of the process tree's RSS
    max_rss: int  # bytes: the kernel's peak RSS of the largest single process of the tree
    cpu_seconds: float  # user + system, the tree's: what a busy shared machine cannot inflate


@dataclass(frozen=True)
class Backfill:
    measured: Measured
    runs: int  # on the instance, after this one
    step_seconds: dict[str, float]  # this run's steps, from the instance's event log

    @property
    def seconds(self) -> float:
        return self.measured.seconds


def _tree_rss(root: psutil.Process) -> int:
    total = 0
    for process in (root, *root.children(recursive=True)):
        # A child may end between the listing and the reading.
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total


def run_measured(command: list[str], env: dict[str, str]) -> Measured:
    """Run `command` to completion (CalledProcessError if it fails, after its last output)."""
    began = time.perf_counter()
    with tempfile.TemporaryFile("w+", errors="replace") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        peak, done = 0, threading.Event()

        def sample() -> None:
            nonlocal peak
            with contextlib.suppress(psutil.NoSuchProcess):  # raised once the command ended
                root = psutil.Process(process.pid)
                while not done.wait(RSS_SAMPLE_SECONDS):
                    peak = max(peak, _tree_rss(root))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # wait4, not wait: the kernel's peak RSS of the child and of its waited descendants.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - began
        done.set()
        sampler.join()
        if process.returncode:
            output.seek(0)
            print(output.read()[-5000:], file=sys.stderr)
            raise subprocess.CalledProcessError(process.returncode, command)
    return Measured(seconds, peak, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime)


def backfill(env: dict[str, str], first: date, last: date, select: str | None = None) -> Backfill:
    """`data-platform materialize` of `select` (default: the whole graph) from first to last."""
    command = [CLI, "materialize", "--start", str(first), "--end", str(last)]
    measured = run_measured(command + (["--select", select] if select else []), env)
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        [run] = instance.get_runs(limit=1)
        steps = {
            stats.step_key: stats.end_time - stats.start_time
            for stats in instance.get_run_step_stats(run.run_id)
            if stats.start_time is not None and stats.end_time is not None
        }
        runs = instance.get_runs_count()
    return Backfill(measured, runs, steps)
