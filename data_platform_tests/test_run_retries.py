"""The daemon's run retry reloads an unreachable code location, a bounded number of times.

The real daemon, code server and kill are in test_self_healing.py; the race that needs a second
reload (the daemon's workspace refresh putting the dead location back) cannot be timed from
outside, so here Dagster's `retry_run` is replaced by a script of outcomes."""

from __future__ import annotations

from types import SimpleNamespace

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
