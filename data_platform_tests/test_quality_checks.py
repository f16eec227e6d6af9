"""Quality gates end to end, on simulated sources in a real warehouse.

Clean data passes every check; data with defects fails exactly the checks that should fail,
with the figures in their metadata equal to figures computed here independently (plain Python
over the landing files and the source database); a failing gate blocks its downstream in the
same run, a WARN does not; the scorecard counts what the checks did.

Two warehouses are built once for the module (clean, defective): raw through Dagster, the marts
with a plain `dbt build` (a third of the cost of building them through Dagster, and the checks
only need the tables); the checks then run by themselves over the simulated days.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from pandera.typing import Series

from data_platform.assets.dbt import DBT_ASSETS
from data_platform.assets.dbt_project import DBT_PROJECT
from data_platform.assets.raw import DEAD_LETTER_SPEC, RAW_FILE_ASSETS, RAW_SOURCE_TABLE_ASSETS
from data_platform.assets.scorecard import SCORECARD_ASSETS
from data_platform.checks import QUALITY_CHECKS, models
from data_platform.checks.pandera_gate import Gate, pandera_check
from data_platform.checks.thresholds import QualityThresholds
from data_platform.resources.build import build_resources
from data_platform.settings import Settings, load_settings
from data_platform.simulator import SimulationConfig, simulate
from data_platform_tests.helpers import materialize_days, put_lines, query
from data_platform_tests.landed_records import (
    KNOWN_EVENT_TYPES,
    Landed,
    read_landed,
    source_table,
)

DAYS = [date(2026, 1, 3) + timedelta(days=n) for n in range(5)]
DEFECT_RATE = 0.1
RAW_ASSETS = [*RAW_SOURCE_TABLE_ASSETS, *RAW_FILE_ASSETS, DEAD_LETTER_SPEC]
ASSETS = [*RAW_ASSETS, *DBT_ASSETS, *SCORECARD_ASSETS]
EVENTS_KEY = dg.AssetKey(["raw", "events"])
STAGING_EVENTS_KEY = dg.AssetKey(["staging", "stg_events__events"])
FCT_EVENTS_KEY = dg.AssetKey(["marts", "fct_events"])
T = QualityThresholds()
WARN, ERROR = dg.AssetCheckSeverity.WARN, dg.AssetCheckSeverity.ERROR


@dataclass
class Platform:
    settings: Settings
    resources: dict
    result: dg.ExecuteInProcessResult | None = None

    @property
    def landing(self) -> Path:
        return Path(self.settings.landing)

    @property
    def source_db(self) -> Path:
        return self.settings.home / "source.db"

    def run_checks(self, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
        """Every quality check, by itself, in one run over the simulated days."""
        return materialize_days(
            [*ASSETS, *QUALITY_CHECKS],
            self.resources,
            DAYS,
            selection=dg.AssetSelection.checks(*QUALITY_CHECKS),
            instance=instance,
        )


def build_marts(settings: Settings, pii_salt: str) -> None:
    work = settings.home / "dbt"
    environment = os.environ | {
        "DATA_PLATFORM_WAREHOUSE": str(settings.warehouse),
        "DATA_PLATFORM_PII_SALT": pii_salt,
    }
    dbt = Path(sys.executable).with_name("dbt")
    subprocess.run(
        [
            *(str(dbt), "build", "--quiet", "--project-dir", str(DBT_PROJECT.project_dir)),
            *("--profiles-dir", str(DBT_PROJECT.profiles_dir)),
            *("--target-path", str(work / "target"), "--log-path", str(work / "logs")),
        ],
        env=environment,
        check=True,
        capture_output=True,
    )


def build_platform(home: Path, defect_rate: float, tamper=None) -> Platform:
    settings = load_settings({"DATA_PLATFORM_HOME": str(home)})
    resources = build_resources(settings)
    config = SimulationConfig(
        seed=7,
        days=len(DAYS),
        end_date=DAYS[-1],
        users=1000,
        events_per_day=1000,
        defect_rate=defect_rate,
    )
    simulate(config, resources["landing"], settings.source_db_url)
    if tamper:
        tamper(Path(settings.landing))
    assert materialize_days(RAW_ASSETS, resources, DAYS).success
    build_marts(settings, resources["privacy"].salt())
    platform = Platform(settings, resources)
    platform.result = platform.run_checks(dg.DagsterInstance.ephemeral())
    return platform


def resend_last_day(landing: Path) -> None:
    """A producer re-sends a whole day under new file names: that day's events double."""
    folder = landing / "events" / f"dt={DAYS[-1]}"
    for path in sorted(folder.iterdir()):
        shutil.copyfile(path, folder / f"resent-{path.name}")


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Platform:
    return build_platform(tmp_path_factory.mktemp("clean"), 0.0)


@pytest.fixture(scope="module")
def defects(tmp_path_factory) -> Platform:
    return build_platform(tmp_path_factory.mktemp("defects"), DEFECT_RATE, resend_last_day)


def evaluations(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], object]:
    return {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
    }


def value(evaluation, name: str):
    return evaluation.metadata[name].value


def by_day(result: dg.ExecuteInProcessResult, asset: str, check: str) -> dict[str, object]:
    """The evaluations of a check partitioned by day (one per day of the run), by day."""
    return {
        e.partition: e
        for e in result.get_asset_check_evaluations()
        if (e.asset_key.to_user_string(), e.check_name) == (asset, check)
    }


def day_total(result: dg.ExecuteInProcessResult, asset: str, check: str, name: str) -> int:
    """A figure of a check partitioned by day, summed over the run's days (all of them)."""
    days = by_day(result, asset, check)
    assert sorted(days) == [str(day) for day in DAYS]
    return sum(value(evaluation, name) for evaluation in days.values())


def md_rows(markdown: str) -> list[dict[str, str]]:
    lines = markdown.splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
        for line in lines[2:]
    ]


def quality_check_names() -> set[tuple[str, str]]:
    return {
        (key.asset_key.to_user_string(), key.name) for c in QUALITY_CHECKS for key in c.check_keys
    }


def test_clean_data_passes_every_check(clean):
    found = evaluations(clean.result)
    assert set(found) == quality_check_names()
    assert sorted(key for key, e in found.items() if not e.passed) == []
    events, payments = read_landed(clean.landing, "events"), read_landed(clean.landing, "payments")
    # The raw files' gates are partitioned by day: a verdict per day of the range, on that
    # day's rows.
    for source, landed in (("events", events), ("payments", payments)):
        schema = day_total(clean.result, f"raw/{source}", "pandera_schema", "rows_validated")
        assert schema == len(landed.valid)
        days = by_day(clean.result, f"raw/{source}", "pandera_schema")
        assert [value(e, "partitions") for e in days.values()] == [str(day) for day in DAYS]
    # A single-run range hands the other checks of partitioned assets the whole range.
    assert value(found["raw/events", "row_count_anomaly"], "partitions") == f"{DAYS[0]}..{DAYS[-1]}"
    assert value(found["raw/users", "pandera_schema"], "partitions") == "all partitions"
    # Checks partitioned by day: one verdict per day of the range.
    for check in ("conservation", "dead_letter_ratio", "pandera_schema", "pandera_dead_letter"):
        assert all(e.passed for e in by_day(clean.result, "raw/events", check).values())
    assert day_total(clean.result, "raw/events", "conservation", "records_in_files") == sum(
        events.records.values()
    )
    assert day_total(clean.result, "raw/events", "dead_letter_ratio", "rows_dead_lettered") == 0
    # The partitioned facts' gates too: a verdict per day, on that day's rows of the fact.
    fact = by_day(clean.result, "marts/fct_events", "pandera_schema")
    assert [value(e, "partitions") for e in fact.values()] == [str(day) for day in DAYS]
    assert day_total(clean.result, "marts/fct_events", "pandera_schema", "rows_validated") == len(
        events.valid
    )
    assert sorted(by_day(clean.result, "marts/fct_payments", "pandera_schema")) == [
        str(day) for day in DAYS
    ]


def rule_expectations(events: Landed, payments: Landed, db: Path) -> dict:
    """(offending rows, flagged partitions) per soft-rule check, from the independent reading."""
    users = set(source_table(db, "SELECT id FROM users")["id"])
    orders = set(source_table(db, "SELECT id FROM orders")["id"])
    ev, pay = events.valid, payments.valid
    far = (ev["occurred_at"].dt.date - ev["dt"]).map(lambda d: abs(d.days)) > T.max_days_from_dt
    rules = {
        ("raw/events", "unknown_event_types"): (events, ~ev["event_type"].isin(KNOWN_EVENT_TYPES)),
        ("raw/events", "occurred_far_from_dt"): (events, far),
        ("raw/events", "orphan_user_ids"): (events, ~ev["user_id"].isin(users)),
        ("raw/payments", "orphan_order_ids"): (payments, ~pay["order_id"].isin(orders)),
        ("raw/payments", "amount_out_of_range"): (
            payments,
            (pay["amount"] < 0) | (pay["amount"] > 100_000),
        ),
        ("raw/payments", "unknown_statuses"): (
            payments,
            ~pay["status"].isin(["succeeded", "failed", "refunded"]),
        ),
        ("raw/payments", "unknown_currencies"): (
            payments,
            ~pay["currency"].str.strip().str.upper().isin(["EUR", "USD", "GBP"]),
        ),
    }
    thresholds = {
        "unknown_event_types": T.unknown_value_warn_ratio,
        "unknown_statuses": T.unknown_value_warn_ratio,
        "unknown_currencies": T.unknown_value_warn_ratio,
        "occurred_far_from_dt": T.far_from_dt_warn_ratio,
        "orphan_user_ids": T.orphan_user_warn_ratio,
        "orphan_order_ids": T.orphan_order_warn_ratio,
        "amount_out_of_range": T.out_of_range_warn_ratio,
    }
    expected = {}
    for key, (landed, mask) in rules.items():
        offending, rows = landed.per_dt(mask), landed.per_dt()
        flagged = [str(d) for d in sorted(rows) if offending[d] / rows[d] > thresholds[key[1]]]
        expected[key] = (sum(offending.values()), flagged)
    return expected


def dead_letter_expectations(landed: Landed) -> tuple[int, list[str]]:
    dead = landed.dead_lettered()
    flagged = [
        str(d) for d in sorted(dead) if dead[d] / landed.records[d] > T.dead_letter_warn_ratio
    ]
    return sum(dead.values()), flagged


def revenue_days_out_of_tolerance(payments: Landed, db: Path) -> tuple[int, int]:
    """(days with completed orders, days whose succeeded payments miss their revenue)."""
    orders = source_table(db, "SELECT id, status, substr(ordered_at, 1, 10) AS day FROM orders")
    items = source_table(db, "SELECT order_id, quantity * unit_price AS total FROM order_items")
    completed = orders[orders["status"] == "completed"].set_index("id")
    totals = items.groupby("order_id")["total"].sum()
    revenue = completed.assign(total=totals.reindex(completed.index).fillna(0.0))
    revenue = revenue.groupby("day")["total"].sum()
    paid = payments.valid.drop_duplicates("payment_id")
    paid = paid[(paid["status"] == "succeeded") & paid["order_id"].isin(completed.index)]
    paid = paid.assign(day=completed.loc[paid["order_id"], "day"].to_numpy())
    paid = paid.groupby("day")["amount"].sum().reindex(revenue.index, fill_value=0.0)
    off = (paid - revenue).abs() > T.revenue_tolerance * revenue.abs() + 1e-6
    return len(revenue), int(off.sum())


def test_defects_fail_exactly_the_checks_that_should(defects):
    found = evaluations(defects.result)
    events = read_landed(defects.landing, "events")
    payments = read_landed(defects.landing, "payments")
    rules = rule_expectations(events, payments, defects.source_db)
    dead = {
        ("raw/events", "dead_letter_warning"): dead_letter_expectations(events),
        ("raw/payments", "dead_letter_warning"): dead_letter_expectations(payments),
    }
    revenue_days, revenue_off = revenue_days_out_of_tolerance(payments, defects.source_db)
    expected = {key for key, (_, flagged) in {**rules, **dead}.items() if flagged}
    expected |= {("raw/events", "schema_drift"), ("raw/payments", "schema_drift")}
    expected |= {("raw/events", "row_count_anomaly")} | (
        {("marts/daily_revenue", "revenue_reconciliation")} if revenue_off else set()
    )
    failed = {key for key, e in found.items() if not e.passed}
    assert failed == expected
    # The scenario really has every kind of defect the checks are for.
    assert expected == {
        ("raw/events", name)
        for name in (
            "dead_letter_warning",
            "unknown_event_types",
            "occurred_far_from_dt",
            "orphan_user_ids",
            "schema_drift",
            "row_count_anomaly",
        )
    } | {
        ("raw/payments", name)
        for name in (
            "dead_letter_warning",
            "orphan_order_ids",
            "amount_out_of_range",
            "schema_drift",
        )
    } | {("marts/daily_revenue", "revenue_reconciliation")}
    assert {found[key].severity for key in failed} == {WARN}
    for key, (offending, flagged) in rules.items():
        assert value(found[key], "offending") == offending, key
        assert value(found[key], "partitions_flagged") == flagged, key
        if flagged:  # its one line names the first day (it said "<rule>: 1 partition(s)")
            assert f"of a day's records: {flagged[0]}: " in found[key].description, key
    for key, (rows, flagged) in dead.items():
        assert value(found[key], "rows_dead_lettered") == rows, key
        assert value(found[key], "partitions_flagged") == flagged, key
    # The failure's one line names its days and counts (it said "1 partition(s) above the
    # dead-letter ratio threshold"), counted here from the landing files.
    for landed, source in ((events, "events"), (payments, "payments")):
        dead_by_day = landed.dead_lettered()
        [first, *_] = dead[f"raw/{source}", "dead_letter_warning"][1]
        day = date.fromisoformat(first)
        records = landed.records[day]
        described = found[f"raw/{source}", "dead_letter_warning"].description
        assert described.startswith(
            f"dead-lettered above {T.dead_letter_warn_ratio:.1%} of a day's records: {first}: "
            f"{dead_by_day[day]:,} of {records:,} records ({dead_by_day[day] / records:.1%})"
        ), described
        assert "; most common reason: " in described
        assert described.endswith(f"raw.dead_letter where source = '{source}'"), described
    reconciliation = found["marts/daily_revenue", "revenue_reconciliation"]
    assert value(reconciliation, "days_checked") == revenue_days
    assert value(reconciliation, "days_out_of_tolerance") == revenue_off


def test_blocking_checks_pass_on_defects_that_raw_must_keep(defects):
    events = read_landed(defects.landing, "events")
    payments = read_landed(defects.landing, "payments")
    for source, landed in (("events", events), ("payments", payments)):
        for check in ("pandera_schema", "pandera_dead_letter", "conservation"):
            assert all(e.passed for e in by_day(defects.result, f"raw/{source}", check).values())

        def total(check: str, name: str, source: str = source) -> int:
            return day_total(defects.result, f"raw/{source}", check, name)

        assert total("pandera_schema", "rows_validated") == len(landed.valid)
        dead_lettered = landed.dead_lettered()
        assert total("pandera_dead_letter", "rows_validated") == sum(dead_lettered.values())
        assert total("conservation", "records_in_files") == sum(landed.records.values())
        assert total("conservation", "rows_loaded") == len(landed.valid)
        assert total("conservation", "files_unbalanced") == 0


def test_row_count_anomaly_flags_the_resent_day(defects):
    anomaly = evaluations(defects.result)["raw/events", "row_count_anomaly"]
    rows = read_landed(defects.landing, "events").per_dt()
    assert value(anomaly, "partitions_flagged") == [str(DAYS[-1])]
    table = md_rows(value(anomaly, "per_dt"))
    assert [(r["dt"], int(r["rows"])) for r in table] == [(str(d), rows[d]) for d in DAYS]
    # The first days have no baseline yet (anomaly_min_history earlier partitions).
    assert [r["robust z"] == "" for r in table] == [True] * T.anomaly_min_history + [False] * 2
    # Its one line names the day and its rows (it said "1 partition(s) far from their usual size").
    assert anomaly.description.startswith(
        f"far from the day's usual size: {DAYS[-1]}: {rows[DAYS[-1]]:,} rows against a median of "
    ), anomaly.description


def test_schema_drift_counts_the_rescued_keys(defects):
    found = evaluations(defects.result)
    for source in ("events", "payments"):
        extra = Counter(
            key for keys in read_landed(defects.landing, source).valid["extra"] for key in keys
        )
        drift = found[f"raw/{source}", "schema_drift"]
        assert value(drift, "records_with_key") == dict(extra)
        assert value(drift, "new_keys") == sorted(extra)
    assert set(value(found["raw/payments", "schema_drift"], "new_keys")) == {"fee"}


class EventsOfKnownTypes(models.RawEvents):
    """Stricter than the real gate (unknown types are raw's to keep): a file can fail it."""

    event_type: Series[models.Text] = models.text(isin=sorted(KNOWN_EVENT_TYPES))


def event_line(event_id: str, event_type: str) -> str:
    return (
        f'{{"event_id": "{event_id}", "user_id": 1, "event_type": "{event_type}", '
        '"occurred_at": "2026-01-05T10:00:00Z"}'
    )


def test_a_failing_gate_blocks_the_downstream_steps_of_its_run(
    settings, resources, tmp_path, monkeypatch
):
    """Blocking reaches the checked asset's direct dependents in the run (staging here) and
    everything after them; a mart selected without the staging between it and the checked
    asset would not wait for the gate (Dagster blocks direct dependents only)."""
    day = "2026-01-05"
    lines = [event_line("e1", "login"), event_line("e2", "teleport"), event_line("e3", "warp")]
    put_lines(resources["landing"], f"events/dt={day}/a.jsonl", lines, tmp_path)
    # Gates name their model in checks/models.py, imported when the gate runs.
    monkeypatch.setattr(models, "EventsOfKnownTypes", EventsOfKnownTypes, raising=False)
    gate = pandera_check(Gate(EVENTS_KEY, "EventsOfKnownTypes", "raw.events", partitioned=True), T)
    result = dg.materialize(
        [*RAW_FILE_ASSETS, DEAD_LETTER_SPEC, *DBT_ASSETS, gate],
        selection=dg.AssetSelection.assets(EVENTS_KEY, STAGING_EVENTS_KEY, FCT_EVENTS_KEY),
        resources=resources,
        partition_key=day,
        raise_on_error=False,
    )
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.asset_key == EVENTS_KEY]
    assert not evaluation.passed and evaluation.severity == ERROR
    assert value(evaluation, "failing_rows") == 2
    assert value(evaluation, "rows_validated") == 3
    assert value(evaluation, "partitions") == day
    [rule] = md_rows(value(evaluation, "failing_checks"))
    assert rule["rule"].startswith("event_type: isin(['add_to_cart'")
    assert (rule["failing_rows"], rule["failure_cases"]) == ("2", "2")
    # Each case names its row by the gate's key, the file and line it was read from.
    cases = {(r["failure_case"], r["row"]) for r in md_rows(value(evaluation, "failure_cases"))}
    source = f"_source_file=events/dt={day}/a.jsonl"
    assert cases == {
        ("teleport", f"{source}, _line_number=2"),
        ("warp", f"{source}, _line_number=3"),
    }
    # The checked asset is stored; no dbt step downstream of it started.
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert EVENTS_KEY in materialized
    assert not materialized & {STAGING_EVENTS_KEY, FCT_EVENTS_KEY}
    started = {
        e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START
    }
    assert not started & {"dbt_core_models", "dbt_partitioned_facts"}
    assert query(settings.warehouse, "SELECT count(*) FROM raw.events") == [(3,)]


def test_a_warn_failure_does_not_block(defects):
    """raw/events fails WARN checks for its last day; the scorecard, downstream of raw/events
    (and the cheapest asset that is), still materializes in the same run."""
    scorecard_key = SCORECARD_ASSETS[0].key
    result = dg.materialize(
        [*ASSETS, *QUALITY_CHECKS],
        selection=dg.AssetSelection.assets(EVENTS_KEY, scorecard_key),
        resources=defects.resources,
        partition_key=str(DAYS[-1]),
        raise_on_error=False,
    )
    found = evaluations(result)
    unknown_types = found["raw/events", "unknown_event_types"]
    assert not unknown_types.passed and unknown_types.severity == WARN
    assert value(unknown_types, "partitions") == str(DAYS[-1])
    # Keys seen in earlier partitions are not new: drift is judged against them.
    assert found["raw/events", "schema_drift"].passed
    assert all(e.passed for e in found.values() if e.severity == ERROR)
    assert scorecard_key in {e.asset_key for e in result.get_asset_materialization_events()}
    assert result.success


def test_scorecard_counts_check_executions_and_dead_letters(defects):
    instance = dg.DagsterInstance.ephemeral()
    runs = [defects.run_checks(instance) for _ in range(2)]
    result = dg.materialize(
        [*ASSETS, *QUALITY_CHECKS],
        selection=dg.AssetSelection.assets(*SCORECARD_ASSETS),
        resources=defects.resources,
        instance=instance,
    )
    outcomes = pd.DataFrame(
        [
            (e.asset_key.to_user_string(), e.passed, e.severity.value)
            for run in runs
            for e in run.get_asset_check_evaluations()
        ],
        columns=["table", "passed", "severity"],
    )
    [materialization] = result.asset_materializations_for_node("analytics__data_quality_scorecard")
    card = {row["table"]: row for row in md_rows(value(materialization, "scorecard"))}
    assert set(card) == set(outcomes["table"])
    for table, rows in outcomes.groupby("table"):
        failed = rows[~rows["passed"]]
        assert int(card[table]["executions"]) == len(rows)
        assert int(card[table]["passed"]) == int(rows["passed"].sum())
        assert int(card[table]["failed_warn"]) == int((failed["severity"] == "WARN").sum())
        assert int(card[table]["failed_error"]) == int((failed["severity"] == "ERROR").sum())
    for source in ("events", "payments"):
        landed = read_landed(defects.landing, source)
        assert int(card[f"raw/{source}"]["dead_letters"]) == sum(landed.dead_lettered().values())
        assert int(card[f"raw/{source}"]["records"]) == sum(landed.records.values())
    stored = query(
        defects.settings.warehouse,
        'SELECT "table", executions, dead_letters FROM analytics.data_quality_scorecard',
    )
    assert {t: (e, d) for t, e, d in stored} == {
        t: (int(r["executions"]), None if r["dead_letters"] == "" else int(r["dead_letters"]))
        for t, r in card.items()
    }
    png = re.search(r"base64,([^)]+)\)", value(materialization, "chart")).group(1)
    assert base64.b64decode(png).startswith(b"\x89PNG")


def test_events_before_the_first_user_extraction_are_orphans_not_a_crash(
    settings, resources, tmp_path
):
    day = date(2026, 1, 5)
    lines = [
        f'{{"event_id": "e{n}", "user_id": {n}, "event_type": "login", "occurred_at": "{day}T10:00:00Z"}}'
        for n in range(4)
    ]
    put_lines(resources["landing"], f"events/dt={day}/a.jsonl", lines, tmp_path)
    [events] = [a for a in RAW_FILE_ASSETS if a.key.path[-1] == "events"]
    [orphans] = [
        c for c in QUALITY_CHECKS if any(k.name == "orphan_user_ids" for k in c.check_keys)
    ]
    result = dg.materialize(
        [events, DEAD_LETTER_SPEC, orphans], resources=resources, partition_key=str(day)
    )
    assert result.success
    [evaluation] = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "orphan_user_ids"
    ]
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["offending"].value == evaluation.metadata["records"].value == 4


def test_a_day_that_failed_the_gate_stays_named_after_runs_of_other_days(
    settings, resources, tmp_path
):
    """The warning check is not partitioned, and the UI shows its latest evaluation: it names
    a day that failed the dead-letter gate until that day passes. The gate judges the run's
    days alone, each under its own partition (test_dead_letter_partitions.py)."""
    from data_platform_tests.test_unreadable_files import ASSETS, check, event_lines

    landing, bad, good = resources["landing"], date(2026, 1, 5), date(2026, 1, 6)
    put_lines(
        landing, f"events/dt={bad}/a.jsonl", event_lines("a", 60) + ["not json"] * 60, tmp_path
    )
    put_lines(landing, f"events/dt={good}/b.jsonl", event_lines("b", 100), tmp_path)

    def run(day: date) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            ASSETS, resources=resources, partition_key=str(day), raise_on_error=False
        )

    assert not check(run(bad), "events", "dead_letter_ratio").passed
    other = run(good)
    assert check(other, "events", "dead_letter_ratio").passed
    warning = check(other, "events", "dead_letter_warning")
    assert (warning.passed, warning.severity) == (False, WARN)
    assert warning.metadata["days_still_over_error_ratio"].value == [str(bad)]
    assert warning.description.startswith(
        f"still above {T.dead_letter_error_ratio:.1%} outside this run, held back until they "
        f"pass: {bad}: 60 of 120 records (50.0%)"
    ), warning.description
    # Landed again, fixed: the day passes, and a run of another day names nothing.
    put_lines(landing, f"events/dt={bad}/a.jsonl", event_lines("a", 120), tmp_path)
    assert check(run(bad), "events", "dead_letter_ratio").passed
    assert check(run(good), "events", "dead_letter_warning").passed
