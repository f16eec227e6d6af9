"""What the raw checks judge and list: the days the anomaly check scores when runs only ever
ask for today, the files conservation leaves out of its balance because they changed after the
load (the landing sensor re-runs their day), and the landing keys a run lists."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb

from data_platform.checks import anomaly
from data_platform.checks.anomaly import row_count_anomaly_check
from data_platform.checks.thresholds import QualityThresholds
from data_platform.ingestion.tables import DEAD_LETTER, EVENTS, ensure_raw_tables
from data_platform.resources.warehouse import Warehouse

TODAY = date(2026, 3, 10)  # the clock the anomaly check reads, pinned
DAY = date(2026, 1, 5)


def stub_raw_events(days: list[date], during_run=None) -> dg.AssetsDefinition:
    """raw/events as a run sees it: the rows are already in the warehouse; `during_run` is what
    happens while the asset step runs (a file landing, say)."""

    @dg.asset(
        key=["raw", "events"],
        partitions_def=dg.StaticPartitionsDefinition([d.isoformat() for d in days]),
    )
    def _raw_events() -> None:
        if during_run:
            during_run()

    return _raw_events


def evaluate(check, days, partition: date, resources: dict, during_run=None, instance=None):
    result = dg.materialize(
        [stub_raw_events(days, during_run), check],
        partition_key=partition.isoformat(),
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def store_daily_counts(path: Path, counts: dict[date, int]) -> None:
    with duckdb.connect(str(path)) as conn:
        ensure_raw_tables(conn, (EVENTS, DEAD_LETTER))
        for day, n in counts.items():
            conn.execute(
                "INSERT INTO raw.events (event_id, user_id, event_type, occurred_at, "
                "_source_file, _line_number, _loaded_at, dt) SELECT 'e' || i, 1, 't', ?, "
                "'events/dt=' || ? || '/a.jsonl', i, ?, ? FROM range(1, ? + 1) t(i)",
                [datetime(2026, 1, 1), str(day), datetime(2026, 1, 1), day, n],
            )


# -- row_count_anomaly ---------------------------------------------------------------------------


def test_a_run_of_today_judges_yesterday(tmp_path, monkeypatch):
    """Runs ask for the day files arrive in: today, which is never judged (still filling up).
    Yesterday, a tenth of its usual size, was judged by no run at all."""
    monkeypatch.setattr(anomaly, "today", lambda: TODAY, raising=False)
    yesterday = TODAY - timedelta(days=1)
    counts = {yesterday - timedelta(days=n): 1000 for n in range(1, 60)}
    counts |= {yesterday: 100, TODAY: 300}
    store_daily_counts(tmp_path / "wh.duckdb", counts)
    check = row_count_anomaly_check("events", QualityThresholds())
    resources = {"warehouse": Warehouse(path=str(tmp_path / "wh.duckdb"))}
    evaluation = evaluate(check, [TODAY], TODAY, resources)
    assert not evaluation.passed
    assert evaluation.metadata["partitions_flagged"].value == [str(yesterday)]
    assert str(yesterday) in evaluation.metadata["days_judged"].value
    assert str(TODAY) not in evaluation.metadata["days_judged"].value


def test_a_day_without_files_is_judged_as_empty_by_a_later_run(tmp_path, monkeypatch):
    """No file landed the day before yesterday, so no run then or yesterday asked for it; a
    run of today judges it (0 rows: flagged) unless an earlier run already did."""
    monkeypatch.setattr(anomaly, "today", lambda: TODAY, raising=False)
    empty = TODAY - timedelta(days=2)
    counts = {TODAY - timedelta(days=n): 1000 for n in range(3, 60)}
    counts |= {TODAY - timedelta(days=1): 1000, TODAY: 300}
    store_daily_counts(tmp_path / "wh.duckdb", counts)
    check = row_count_anomaly_check("events", QualityThresholds())
    resources = {"warehouse": Warehouse(path=str(tmp_path / "wh.duckdb"))}
    with dg.DagsterInstance.ephemeral() as instance:
        first = evaluate(check, [TODAY], TODAY, resources, instance=instance)
        assert first.metadata["partitions_flagged"].value == [str(empty)]
        assert not first.passed
        # The next run of today judges yesterday again, not the day already judged.
        second = evaluate(check, [TODAY], TODAY, resources, instance=instance)
        assert second.metadata["days_judged"].value == [str(TODAY - timedelta(days=1))]
        assert second.passed


def test_a_backfill_of_past_days_judges_those_days_only(tmp_path, monkeypatch):
    monkeypatch.setattr(anomaly, "today", lambda: TODAY, raising=False)
    counts = {TODAY - timedelta(days=n): 1000 for n in range(0, 60)}
    store_daily_counts(tmp_path / "wh.duckdb", counts)
    check = row_count_anomaly_check("events", QualityThresholds())
    resources = {"warehouse": Warehouse(path=str(tmp_path / "wh.duckdb"))}
    day = TODAY - timedelta(days=20)
    evaluation = evaluate(check, [day], day, resources)
    assert evaluation.passed
    assert evaluation.metadata["days_judged"].value == [str(day)]
