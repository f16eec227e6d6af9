"""The daemon's run retries: a run read before it settled, and an unreachable code location.

The real daemon, code server and kill are in test_self_healing.py. Both races it met are timed
here instead: a run read between its failure event and its status (a stale read, and a thread
that settles it), and the daemon's workspace refresh putting a dead location back (Dagster's
`retry_run` replaced by a script of outcomes)."""

from __future__ import annotations

import inspect
import threading
import time
from types import SimpleNamespace

import dagster as dg
import pytest
from dagster._core.errors import (
    DagsterCodeLocationLoadError,
    DagsterUserCodeProcessError,
    DagsterUserCodeUnreachableError,
)
from dagster._daemon.auto_run_reexecution import auto_run_reexecution

from data_platform.orchestration import run_retries

RUN = SimpleNamespace(remote_job_origin=SimpleNamespace(location_name="raw_files"))


class Workspace:
    def __init__(self) -> None:
        self.reloaded: list[str] = []

    def reload_code_location(self, name: str) -> None:
        self.reloaded.append(name)


@pytest.fixture(autouse=True)
def dagster_own_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dagster's own functions in the daemon's module for the test, whatever this process
    installed before (a HealthCheckedRunLauncher built by another test), put back after."""
    for name in ("retry_run", "filter_runs_to_should_retry"):
        original = inspect.unwrap(getattr(auto_run_reexecution, name))
        monkeypatch.setattr(auto_run_reexecution, name, original)


def install_scripted(monkeypatch: pytest.MonkeyPatch, outcomes: list[Exception | None]) -> list:
    """Dagster's retry_run replaced by one that raises (or returns) `outcomes` in turn, then
    the platform's wrapper installed over it; the calls it received."""
    calls = []

    def scripted_retry_run(failed_run, workspace_context) -> None:
        calls.append(failed_run)
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    monkeypatch.setattr(auto_run_reexecution, "retry_run", scripted_retry_run)
    run_retries.install()
    return calls


def test_a_location_the_refresh_put_back_dead_is_reloaded_again(monkeypatch):
    gone = DagsterUserCodeUnreachableError("server gone")
    put_back = DagsterCodeLocationLoadError("dead location", load_error_infos=[])
    calls = install_scripted(monkeypatch, [gone, put_back, None])
    workspace = Workspace()

    auto_run_reexecution.retry_run(RUN, workspace)

    assert len(calls) == 3
    assert workspace.reloaded == ["raw_files", "raw_files"]


def test_a_location_never_reached_is_given_up_to_dagster_after_its_reloads(monkeypatch):
    outcomes = [DagsterUserCodeUnreachableError(f"try {i}") for i in range(run_retries.RELOADS + 1)]
    calls = install_scripted(monkeypatch, list(outcomes))
    workspace = Workspace()

    with pytest.raises(DagsterUserCodeUnreachableError, match=f"try {run_retries.RELOADS}"):
        auto_run_reexecution.retry_run(RUN, workspace)

    assert len(calls) == run_retries.RELOADS + 1
    assert workspace.reloaded == ["raw_files"] * run_retries.RELOADS


def test_an_error_in_the_code_itself_is_not_reloaded(monkeypatch):
    broken = DagsterUserCodeProcessError(
        "the job raised while building its plan", user_code_process_error_infos=[]
    )
    calls = install_scripted(monkeypatch, [broken])
    workspace = Workspace()

    with pytest.raises(DagsterUserCodeProcessError):
        auto_run_reexecution.retry_run(RUN, workspace)

    assert len(calls) == 1 and workspace.reloaded == []


@pytest.fixture
def retrying_instance(tmp_path):
    """On SQLite files, as the daemon's threads share it (an in-memory one locks its tables)."""
    settings = {"run_retries": {"enabled": True, "max_retries": 2}}
    with dg.DagsterInstance.local_temp(str(tmp_path), overrides=settings) as instance:
        yield instance


def started_run(instance: dg.DagsterInstance) -> dg.DagsterRun:
    return instance.add_run(dg.DagsterRun(job_name="job", status=dg.DagsterRunStatus.STARTED))


def fail_later(instance: dg.DagsterInstance, run: dg.DagsterRun, after: float) -> threading.Thread:
    """Report `run` failed `after` seconds from now, as the monitoring daemon does."""

    def fail() -> None:
        time.sleep(after)
        instance.report_run_failed(run)

    thread = threading.Thread(target=fail)
    thread.start()
    return thread


def test_a_run_read_before_its_failure_settled_is_retried(retrying_instance):
    instance = retrying_instance
    stale = started_run(instance)

    # Dagster's own judgement of the stale read: not retried, and its cursor moves on.
    assert list(auto_run_reexecution.filter_runs_to_should_retry([stale], instance)) == []

    run_retries.install()
    failing = fail_later(instance, stale, after=0.3)
    [retried] = auto_run_reexecution.filter_runs_to_should_retry([stale], instance)
    failing.join()
    assert retried.run_id == stale.run_id and retried.status == dg.DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(stale.run_id).tags["dagster/will_retry"] == "true"


def test_a_run_that_never_settles_is_judged_as_it_is(monkeypatch, retrying_instance):
    monkeypatch.setattr(run_retries, "SETTLE_SECONDS", 0.3)
    run = started_run(retrying_instance)
    began = time.monotonic()
    assert run_retries.settled(run, retrying_instance).status == dg.DagsterRunStatus.STARTED
    assert 0.3 <= time.monotonic() - began < 5
