"""What the raw checks judge and list: the days the anomaly check scores when runs only ever
ask for today, the files conservation leaves out of its balance because they changed after the
load (the landing sensor re-runs their day), the landing keys a run lists, and the versions of
an app-database log whose time order the gate judges."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from data_platform.checks import anomaly
from data_platform.checks.anomaly import row_count_anomaly_check
from data_platform.checks.conservation import balances, conservation_check, warehouse_counts
from data_platform.checks.gates import GATES
from data_platform.checks.pandera_gate import pandera_check
from data_platform.checks.scope import Window
from data_platform.checks.thresholds import QualityThresholds
from data_platform.ingestion.file_formats import EVENT_FILES
from data_platform.ingestion.files import files_for
from data_platform.ingestion.tables import (
    DEAD_LETTER,
    EVENTS,
    SOURCE_DB_TABLES,
    ensure_raw_tables,
)
from data_platform.resources.landing import LandingZone
from data_platform.resources.warehouse import Warehouse
from data_platform.resources.warehouse_reader import DuckDBReader

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


# A producer filing its late uploads under their events' day (an old folder; the contract, and
# the simulator, file them under their arrival day): a fiftieth of a day's events.
LATE_SHARE = 50


def days_with_late_uploads(
    tmp_path: Path, monkeypatch, instance: dg.DagsterInstance, usual: int, days: int
) -> tuple[dg.AssetChecksDefinition, dict, date]:
    """`days` days run as the sensor runs them: each day's run (of today) judges yesterday,
    which then lacks its late upload; the upload lands the next day. Returns the check, its
    resources and the next today, whose yesterday holds `usual` rows less its late upload."""
    path = tmp_path / "wh.duckdb"
    check = row_count_anomaly_check("events", QualityThresholds())
    resources = {"warehouse": Warehouse(path=str(path))}
    first = TODAY - timedelta(days=days)
    late = usual // LATE_SHARE
    for offset in range(days):
        now = first + timedelta(days=offset)
        # Yesterday's files, but not its late upload yet (it lands under its dt tomorrow).
        store_daily_counts(path, {now - timedelta(days=1): usual - late})
        monkeypatch.setattr(anomaly, "today", lambda now=now: now, raising=False)
        assert evaluate(check, [now], now, resources, instance=instance).passed
        store_daily_counts(path, {now - timedelta(days=1): late})
    store_daily_counts(path, {TODAY - timedelta(days=1): usual - late})
    monkeypatch.setattr(anomaly, "today", lambda: TODAY, raising=False)
    return check, resources, TODAY - timedelta(days=1)


def test_yesterday_before_its_late_upload_is_no_anomaly(tmp_path, monkeypatch):
    """50,000 events a day, 2 % of them uploaded two days late: yesterday, judged before its
    late upload, holds 49,000 rows; its baseline days hold 50,000 now, but held 49,000 when
    each was judged as yesterday. Against the settled counts it read -1,000 / sqrt(50,000) =
    -4.5 robust z, a WARN every single day; like with like, it is 0."""
    with dg.DagsterInstance.ephemeral() as instance:
        check, resources, yesterday = days_with_late_uploads(
            tmp_path, monkeypatch, instance, usual=50_000, days=5
        )
        evaluation = evaluate(check, [TODAY], TODAY, resources, instance=instance)
    assert evaluation.metadata["days_judged"].value == [str(yesterday)]
    assert evaluation.passed, evaluation.description
    assert evaluation.metadata["rows_as_yesterday"].value == {str(yesterday): 49_000}
    assert "| 49000 | 49000.0 | 0.00 |" in evaluation.metadata["per_dt"].value


@pytest.mark.parametrize(
    ("rows", "why"),
    [(4_900, "a collector down: a tenth of the events"), (57_167, "a file of six sent twice")],
)
def test_yesterday_far_from_its_baseline_is_still_flagged(tmp_path, monkeypatch, rows, why):
    with dg.DagsterInstance.ephemeral() as instance:
        check, resources, yesterday = days_with_late_uploads(
            tmp_path, monkeypatch, instance, usual=50_000, days=5
        )
        with duckdb.connect(str(tmp_path / "wh.duckdb")) as conn:
            conn.execute("DELETE FROM raw.events WHERE dt = ?", [yesterday])
        store_daily_counts(tmp_path / "wh.duckdb", {yesterday: rows})
        evaluation = evaluate(check, [TODAY], TODAY, resources, instance=instance)
    assert not evaluation.passed, why
    assert evaluation.metadata["partitions_flagged"].value == [str(yesterday)]


# -- conservation ---------------------------------------------------------------------------------


def landing_with(tmp_path: Path, files: dict[str, str]) -> LandingZone:
    for name, text in files.items():
        path = tmp_path / "landing" / "events" / f"dt={DAY}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return LandingZone(url=str(tmp_path / "landing"))


def store_rows(
    path: Path, rows: list[tuple[str, int]], loaded_at: datetime, day: date = DAY
) -> None:
    with duckdb.connect(str(path)) as conn:
        ensure_raw_tables(conn, (EVENTS, DEAD_LETTER))
        if not rows:
            return
        conn.executemany(
            "INSERT INTO raw.events (event_id, user_id, event_type, occurred_at, _source_file, "
            "_line_number, _loaded_at, dt) VALUES ('e', 1, 't', ?, ?, ?, ?, ?)",
            [(loaded_at, f"events/dt={day}/{name}", n, loaded_at, day) for name, n in rows],
        )


def stamp(tmp_path: Path, name: str, when: datetime, day: date = DAY) -> None:
    seconds = when.replace(tzinfo=UTC).timestamp()
    os.utime(tmp_path / "landing" / "events" / f"dt={day}" / name, (seconds, seconds))


LOADED = datetime(2026, 1, 5, 12, 0, 0, 300_000)


def conservation_of(tmp_path: Path, landing: LandingZone, during_run=None):
    resources = {"warehouse": Warehouse(path=str(tmp_path / "wh.duckdb")), "landing": landing}
    return evaluate(conservation_check(EVENT_FILES), [DAY], DAY, resources, during_run)


@pytest.mark.parametrize("change", ["rewritten", "appended", "deleted"])
def test_a_file_changed_after_the_load_is_left_for_the_rerun(tmp_path, change):
    """The check queues behind other runs: a producer rewrites a loaded file, or a compaction
    deletes it, before it runs. The landing sensor re-runs the day; this check must not fail
    (blocking) on content its run never read."""
    landing = landing_with(tmp_path, {"a.jsonl": "{}\n{}\n", "b.jsonl": "{}\n"})
    store_rows(tmp_path / "wh.duckdb", [("a.jsonl", 1), ("a.jsonl", 2), ("b.jsonl", 1)], LOADED)
    stamp(tmp_path, "b.jsonl", LOADED - timedelta(minutes=5))
    a = tmp_path / "landing" / "events" / f"dt={DAY}" / "a.jsonl"
    if change == "deleted":
        a.unlink()
    else:
        a.write_text("{}\n" * 3 if change == "appended" else "{}\n\n{}\n{}\n")
        # S3 stamps whole seconds: a write just after the load can show a time before it.
        stamp(tmp_path, "a.jsonl", LOADED.replace(microsecond=0))
    evaluation = conservation_of(tmp_path, landing)
    assert evaluation.passed, evaluation.metadata
    assert evaluation.metadata["files_changed_after_load"].value == [f"events/dt={DAY}/a.jsonl"]
    assert evaluation.metadata["records_in_files"].value == 1
    assert evaluation.metadata["rows_loaded"].value == 1


def test_an_unchanged_file_that_lost_a_row_still_fails(tmp_path):
    landing = landing_with(tmp_path, {"a.jsonl": "{}\n{}\n", "b.jsonl": "{}\n"})
    store_rows(tmp_path / "wh.duckdb", [("a.jsonl", 1), ("b.jsonl", 1)], LOADED)
    for name in ("a.jsonl", "b.jsonl"):
        stamp(tmp_path, name, LOADED - timedelta(minutes=5))
    evaluation = conservation_of(tmp_path, landing)
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["files_unbalanced"].value == 1
    assert evaluation.metadata["files_changed_after_load"].value == []


def test_a_range_run_balances_each_day_under_its_own_partition(tmp_path):
    """conservation is partitioned by day (as dead_letter_ratio): a single-run range records
    one verdict per day, so the day that lost a row stays failed on the instance while the
    other passes (one verdict for the range read as the last run's, whatever the days)."""
    from data_platform.partitions import RANGE_TAGS
    from data_platform_tests.test_dead_letter_partitions import check_statuses

    other = DAY + timedelta(days=1)
    landing = landing_with(tmp_path, {"a.jsonl": "{}\n{}\n"})
    (tmp_path / "landing" / "events" / f"dt={other}").mkdir()
    (tmp_path / "landing" / "events" / f"dt={other}" / "a.jsonl").write_text("{}\n")
    warehouse = tmp_path / "wh.duckdb"
    store_rows(warehouse, [("a.jsonl", 1)], LOADED)  # one of DAY's two records lost
    store_rows(warehouse, [("a.jsonl", 1)], LOADED, day=other)
    for day in (DAY, other):
        stamp(tmp_path, "a.jsonl", LOADED - timedelta(minutes=5), day=day)
    check = conservation_check(EVENT_FILES)
    [key] = check.check_keys
    resources = {"warehouse": Warehouse(path=str(warehouse)), "landing": landing}
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [stub_raw_events([DAY, other]), check],
            resources=resources,
            instance=instance,
            tags=dict(zip(RANGE_TAGS, (str(DAY), str(other)), strict=True)),
            raise_on_error=False,
        )
        verdicts = {e.partition: e.passed for e in result.get_asset_check_evaluations()}
        assert verdicts == {str(DAY): False, str(other): True}
        assert check_statuses(instance, key) == {str(DAY): "FAILED", str(other): "SUCCEEDED"}


def test_a_file_landing_during_the_run_of_an_empty_day_is_left_for_the_rerun(tmp_path):
    """The run found no file for the day, so nothing says when it loaded; a file landing
    before the check runs is new to the sensor, which re-runs the day."""
    landing = landing_with(tmp_path, {})
    store_rows(tmp_path / "wh.duckdb", [], LOADED)

    def lands() -> None:
        landing_with(tmp_path, {"a.jsonl": "{}\n{}\n"})

    evaluation = conservation_of(tmp_path, landing, during_run=lands)
    assert evaluation.passed, evaluation.metadata
    assert evaluation.metadata["files_landed_after_load"].value == [f"events/dt={DAY}/a.jsonl"]


# -- what a run lists ----------------------------------------------------------------------------


@pytest.fixture
def listed_keys(monkeypatch) -> list[str]:
    """Every key LandingZone.list_files returns, in this test."""
    keys: list[str] = []
    listing = LandingZone.list_files

    def recording(self, *args, **kwargs):
        files = listing(self, *args, **kwargs)
        keys.extend(f.key for f in files)
        return files

    monkeypatch.setattr(LandingZone, "list_files", recording)
    return keys


def landing_of_many_days(tmp_path: Path, days: int) -> LandingZone:
    for n in range(days):
        folder = tmp_path / "landing" / "events" / f"dt={DAY - timedelta(days=n)}"
        folder.mkdir(parents=True)
        for name in ("a.jsonl", "b.jsonl.gz"):
            (folder / name).write_text("{}\n")
    (tmp_path / "landing" / "events" / f"dt={DAY}" / "sub").mkdir()
    (tmp_path / "landing" / "events" / f"dt={DAY}" / "sub" / "c.jsonl").write_text("{}\n")
    return LandingZone(url=str(tmp_path / "landing"))


def test_ingestion_lists_only_the_run_days(tmp_path, listed_keys):
    landing = landing_of_many_days(tmp_path, 200)
    days = {DAY, DAY - timedelta(days=1), DAY - timedelta(days=5)}
    files = files_for(landing, EVENT_FILES, days)
    expected = sorted(
        [f"events/dt={d}/{name}" for d in days for name in ("a.jsonl", "b.jsonl.gz")]
        + [f"events/dt={DAY}/sub/c.jsonl"]
    )
    assert [f.key for f in files] == expected
    # One listing of the range the days span (six days' folders), not of 200 days.
    assert len(listed_keys) == 6 * 2 + 1


def test_conservation_lists_only_the_window(tmp_path, listed_keys):
    landing = landing_of_many_days(tmp_path, 200)
    conn = duckdb.connect()
    ensure_raw_tables(conn, (EVENTS, DEAD_LETTER))
    window = Window(DAY - timedelta(days=1), DAY)
    found, _ = balances(
        landing, EVENT_FILES, warehouse_counts(DuckDBReader(conn), EVENT_FILES, window), window
    )
    assert len(found) == 5
    assert sorted(set(listed_keys)) == sorted(b.key for b in found)


# -- the version logs' time order ---------------------------------------------------------------

USERS_GATE = next(g for g in GATES if g.table == "raw.users")
LONG_AGO = datetime(2026, 1, 1)


def store_user_versions(path: Path, versions: list[tuple[int, datetime, datetime, datetime]]):
    """(id, created_at, updated_at, _extracted_at) versions of raw.users."""
    with duckdb.connect(str(path)) as conn:
        ensure_raw_tables(conn, SOURCE_DB_TABLES)
        if not versions:
            return
        conn.executemany(
            "INSERT INTO raw.users (id, email, full_name, country, created_at, updated_at, "
            "deleted_at, _extracted_at) VALUES (?, 'e', 'n', 'FR', ?, ?, NULL, ?)",
            versions,
        )


def users_gate(tmp_path: Path, extracted: list[tuple[int, datetime, datetime]]):
    """The raw.users gate in a run whose extraction adds `extracted` (id, created, updated)."""
    path = tmp_path / "wh.duckdb"

    @dg.asset(key=["raw", "users"])
    def _extraction() -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        store_user_versions(path, [(*version, now) for version in extracted])

    result = dg.materialize(
        [_extraction, pandera_check(USERS_GATE, QualityThresholds())],
        resources={"warehouse": Warehouse(path=str(path))},
        raise_on_error=False,
    )
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_a_skewed_old_version_does_not_fail_every_later_extraction(tmp_path):
    """A version stamped updated before it was created (clock skew, which extraction allows)
    is kept in raw; it failed the blocking gate of every later extraction, for good."""
    jan = datetime(2026, 1, 2, 12)
    skewed = (1, jan, jan - timedelta(seconds=3), LONG_AGO)
    store_user_versions(tmp_path / "wh.duckdb", [skewed])
    evaluation = users_gate(tmp_path, [(2, jan, jan)])
    assert evaluation.passed, evaluation.metadata
    assert evaluation.metadata["versions_extracted_checked"].value == 1
    assert evaluation.metadata["rows_validated"].value == 2


def test_the_run_that_extracts_a_skewed_version_fails(tmp_path):
    jan = datetime(2026, 1, 2, 12)
    store_user_versions(tmp_path / "wh.duckdb", [(1, jan, jan, LONG_AGO)])
    evaluation = users_gate(tmp_path, [(2, jan, jan - timedelta(seconds=3))])
    assert not evaluation.passed
    assert evaluation.metadata["failing_rows"].value == 1
    assert "not_updated_before_created" in evaluation.metadata["failing_checks"].value


def test_a_duplicated_old_version_still_fails(tmp_path):
    """Uniqueness of (id, updated_at) is judged over the whole log, whenever it was extracted."""
    jan = datetime(2026, 1, 2, 12)
    store_user_versions(tmp_path / "wh.duckdb", [(1, jan, jan, LONG_AGO)] * 2)
    evaluation = users_gate(tmp_path, [(2, jan, jan)])
    assert not evaluation.passed
    assert "multiple_fields_uniqueness" in evaluation.metadata["failing_checks"].value


def test_an_extraction_that_adds_nothing_passes_after_a_skewed_one(tmp_path):
    """The run after the one that extracted a skewed version adds no version: it judged the
    latest extraction again (the skewed one) and failed the blocking gate until some row of the
    table changed."""
    jan = datetime(2026, 1, 2, 12)
    earlier = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=10)
    store_user_versions(tmp_path / "wh.duckdb", [(1, jan, jan - timedelta(seconds=3), earlier)])
    evaluation = users_gate(tmp_path, [])
    assert evaluation.passed, evaluation.metadata
    assert evaluation.metadata["versions_extracted_checked"].value == 0


def test_a_window_lists_each_of_its_days_and_a_checks_verdicts_cover_them():
    from data_platform.checks.anomaly import days_of
    from data_platform.checks.scope import WHOLE_TABLE, Window, run_days

    first, last = date(2026, 2, 27), date(2026, 3, 2)
    days = [date(2026, 2, 27), date(2026, 2, 28), date(2026, 3, 1), date(2026, 3, 2)]
    assert Window(first, last).days() == days
    assert Window(first, first).days() == [first]
    assert WHOLE_TABLE.days() == []
    # A run's days all get a verdict, a day without data too; launched alone, those with data.
    assert run_days(Window(first, last), [last]) == days
    assert run_days(WHOLE_TABLE, [last, first, last]) == [first, last]
    # The anomaly check takes an unbounded window's ends from the days with rows.
    assert days_of(WHOLE_TABLE, {last: 1, first: 1}) == days
    assert days_of(WHOLE_TABLE, {}) == []
