"""The whole graph on simulated data: marts checked against figures computed here from raw."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import string
import subprocess
import sys
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import sqlalchemy as sa
import yaml

from data_platform.assets import dbt as dbt_assets_module
from data_platform.assets.dbt_project import DBT_PROJECT_DIR
from data_platform.definitions import defs
from data_platform.ingestion.tables import SOURCE_DB_TABLES, ensure_raw_tables
from data_platform.resources.build import build_resources
from data_platform.settings import load_settings
from data_platform.simulator import SimulationConfig, simulate
from data_platform_tests.helpers import environ_without_settings, materialize_days, put_lines, query
from data_platform_tests.landed_records import KNOWN_EVENT_TYPES

DAYS = [date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)]
ALL_ASSETS = list(defs.assets)


class Platform:
    def __init__(self, settings, resources, result=None, dbt_calls=()):
        self.settings = settings
        self.resources = resources
        self.result = result
        self.dbt_calls = list(dbt_calls)

    def sql(self, text: str, params: list | None = None) -> list[tuple]:
        return query(self.settings.warehouse, text, params)


def platform_at(home: Path) -> tuple:
    """(settings, resources) of the platform home `home`."""
    settings = load_settings({"DATA_PLATFORM_HOME": str(home)})
    return settings, build_resources(settings)


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Platform:
    """The simulated days, every asset built in one range run; the dbt builds of that run
    (name, window) are kept, since later runs in this module would add their own."""
    settings, resources = platform_at(tmp_path_factory.mktemp("platform"))
    config = SimulationConfig(
        seed=7, days=len(DAYS), end_date=DAYS[-1], users=80, events_per_day=800, defect_rate=0.02
    )
    simulate(config, resources["landing"], settings.source_db_url)
    calls: list[tuple[str, dict[str, str]]] = []
    original = dbt_assets_module.build

    def counting_build(context, dbt, warehouse):
        window = {name: os.environ[name] for name in dbt_assets_module.WINDOW_VARIABLES}
        calls.append((context.op.name, window))
        yield from original(context, dbt, warehouse)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dbt_assets_module, "build", counting_build)
        result = materialize_days(ALL_ASSETS, resources, DAYS, raise_on_error=False)
    failures = [
        e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    assert result.success, failures
    return Platform(settings, resources, result, calls)


@pytest.fixture
def own_platform(platform, tmp_path) -> Platform:
    """A copy of the built platform's home, for a test that lands files and rebuilds: the
    other tests read the shared one and must not see its changes, in whatever order."""
    home = tmp_path / "home"
    shutil.copytree(platform.settings.home, home)
    return Platform(*platform_at(home))


def latest_versions(rows: list[tuple]) -> dict:
    """id -> the row with the greatest updated_at (rows are (id, updated_at, ...))."""
    latest: dict = {}
    for row in rows:
        if row[0] not in latest or row[1] > latest[row[0]][1]:
            latest[row[0]] = row
    return latest


def test_a_range_run_invokes_dbt_once_per_layer(platform):
    dbt_calls = platform.dbt_calls
    partitioned = [c for c in dbt_calls if c[0] == "dbt_partitioned_facts"]
    assert len(partitioned) == 1
    assert partitioned[0][1] == {
        "DATA_PLATFORM_MIN_DT": str(DAYS[0]), "DATA_PLATFORM_MAX_DT": str(DAYS[-1]),
    }  # fmt: skip
    others = [window for name, window in dbt_calls if name != "dbt_partitioned_facts"]
    assert others == [dbt_assets_module.NO_WINDOW] * 2
    assert sorted(c[0] for c in dbt_calls) == [
        "dbt_core_models", "dbt_fact_aggregates", "dbt_partitioned_facts",
    ]  # fmt: skip


# The singular tests (dbt/tests/) and the model each guards, with whether it blocks (severity
# error). The review found none of them a check: each reads several models.
SINGULAR_TESTS = {
    "assert_no_pii_columns_in_marts_or_analytics": ("marts/daily_active_users", True),
    "assert_arrival_counts_add_up_to_raw": ("staging/stg_events__events", True),
    "assert_partitioned_facts_match_staging": ("marts/fct_events", False),
    "assert_daily_revenue_reconciles_with_staging": ("marts/daily_revenue", False),
    "assert_daily_active_users_reconciles_with_staging": ("marts/daily_active_users", False),
}


def test_the_sources_have_no_dbt_tests():
    """The raw tables' rules are their assets' Pandera gates, blocking. A dbt test of a source
    (22 not_null, the gates' rules again) runs in a step that does not own the raw table: an
    observation with a warning in the UI, every run; as a check it would free the dbt step from
    waiting on the raw gates (assets/dbt.py, TRANSLATOR)."""
    sources = yaml.safe_load((DBT_PROJECT_DIR / "models" / "staging" / "sources.yml").read_text())
    tested = [
        f"{source['name']}.{table['name']}.{column['name']}"
        for source in sources["sources"]
        for table in source["tables"]
        for column in table.get("columns", [])
        if column.get("data_tests") or column.get("tests")
    ]
    tested += [
        f"{source['name']}.{table['name']}"
        for source in sources["sources"]
        for table in source["tables"]
        if table.get("data_tests") or table.get("tests")
    ]
    assert tested == []


def layer_runs(warehouse: Path, target: Path) -> dict[str, set[str]]:
    """dbt test -> the dbt steps whose `dbt build` runs it when the step runs all its checks:
    the layer's selection, the singular tests build() names, dbt_environment's indirect
    selection; by `dbt ls`, i.e. by dbt itself."""
    runs: dict[str, set[str]] = defaultdict(set)
    for layer in dbt_assets_module.DBT_ASSETS:
        guarding = sorted(
            key.name for key in layer.check_keys if key.name in dbt_assets_module.GUARDING_TESTS
        )
        select = " ".join([layer.op.tags["dagster_dbt/select"], *guarding])
        exclude = layer.op.tags.get("dagster_dbt/exclude")
        listed = dbt_cli(
            ["ls", "-q", "--resource-type", "test", "--output", "name", "--select", select,
             *(["--exclude", exclude] if exclude else []),
             "--indirect-selection", dbt_assets_module.INDIRECT_SELECTION],
            warehouse, target,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stdout[-3000:]
        for name in listed.stdout.split():
            runs[name].add(layer.node_def.name)
    return runs


def test_every_dbt_test_of_a_model_is_the_check_of_the_one_step_that_runs_it(tmp_path):
    """dagster-dbt assigns a test to a layer by dbt's eager selection, `dbt build` runs it by the
    buildable one: the 5 singular tests, reading models of several layers, were no check and
    ran in steps that did not own them, logged as observations. No dbt step may hold a check
    of an asset it does not build, or Dagster stops making it wait for that asset's blocking
    checks (the raw gates; assets/dbt.py, TRANSLATOR)."""
    runs = layer_runs(tmp_path / "warehouse.duckdb", tmp_path / "target")
    owners: dict[str, set[str]] = defaultdict(set)
    for layer in dbt_assets_module.DBT_ASSETS:
        assert {key.asset_key for key in layer.check_keys} <= set(layer.keys)
        for key in layer.check_keys:
            owners[key.name].add(layer.node_def.name)
    assert len(runs) == 112
    assert {t: r for t, r in runs.items() if owners.get(t, set()) != r} == {}
    graph = defs.resolve_asset_graph()
    checks = {key.name: key for key in graph.asset_check_keys}
    for name, (table, blocking) in SINGULAR_TESTS.items():
        assert checks[name].asset_key.to_user_string() == table, name
        assert graph.get_check_spec(checks[name]).blocking is blocking, name


def test_singular_tests_are_judged_as_checks_in_the_run(platform):
    """Each one an evaluation that passed; no test left as an observation (with dagster-dbt's
    warning)."""
    evaluations = {
        (e.asset_key.to_user_string(), e.check_name): e.passed
        for e in platform.result.get_asset_check_evaluations()
    }
    expected = {(table, name) for name, (table, _) in SINGULAR_TESTS.items()}
    assert {check: evaluations.get(check) for check in expected} == dict.fromkeys(expected, True)
    observed = [
        event.event_specific_data.asset_observation
        for event in platform.result.all_events
        if event.event_type == dg.DagsterEventType.ASSET_OBSERVATION
    ]
    logged = {
        obs.metadata["unique_id"].value.split(".")[2]
        for obs in observed
        if "instead of an `AssetCheckResult`" in (obs.description or "")
    }
    assert logged == set()


def test_a_pii_column_fails_the_pii_guard_and_its_step(own_platform):
    """The PII guard is a blocking check of the mart built last. An analytics table with a
    column named like a full name fails it at ERROR in a run of the facts and the aggregates
    (dbt's indirect selection alone does not run it there: it reads core marts too), and its
    step fails; with no such column the same run passes it."""
    [facts] = [
        a for a in dbt_assets_module.DBT_ASSETS if a.node_def.name == "dbt_partitioned_facts"
    ]
    daily_active_users = dg.AssetKey(["marts", "daily_active_users"])
    selection = dg.AssetSelection.assets(*facts.keys, daily_active_users)

    def pii_guard() -> tuple[bool, tuple | None]:
        result = materialize_days(
            ALL_ASSETS, own_platform.resources, DAYS[-1:], selection=selection, raise_on_error=False
        )
        evaluations = {
            (e.asset_key.to_user_string(), e.check_name): (e.passed, e.severity)
            for e in result.get_asset_check_evaluations()
        }
        return result.success, evaluations.get(("marts/daily_active_users", PII_TEST))

    assert pii_guard() == (True, (True, dg.AssetCheckSeverity.ERROR))
    with duckdb.connect(str(own_platform.settings.warehouse)) as conn:
        conn.execute("CREATE TABLE analytics.contacts AS SELECT 1 AS user_id, 'x' AS full_name")
    assert pii_guard() == (False, (False, dg.AssetCheckSeverity.ERROR))


def test_dbt_tables_carry_row_counts_and_column_lineage(platform):
    metadata = {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in platform.result.get_asset_materialization_events()
    }
    for table in ("marts/fct_orders", "marts/daily_revenue", "snapshots/users_history"):
        schema, name = table.split("/")
        [(rows,)] = platform.sql(f"SELECT count(*) FROM {schema}.{name}")
        assert metadata[table]["dagster/row_count"].value == rows, table
    lineage = metadata["marts/daily_revenue"]["dagster/column_lineage"].value
    revenue_deps = {d.asset_key.to_user_string() for d in lineage.deps_by_column["revenue"]}
    assert revenue_deps & {"marts/fct_orders", "marts/fct_order_items"}
    schema = metadata["marts/daily_revenue"]["dagster/column_schema"].value
    assert {c.name for c in schema.columns} == {"revenue_date", "completed_orders", "revenue"}


def test_dbt_writes_its_target_and_log_beside_the_warehouse_not_in_the_project(platform):
    """The dbt steps' folder (partial parse, compiled SQL, run results, dbt.log) is the
    warehouse's: it goes with a test's temp warehouse, instead of staying in the checkout."""
    warehouse = Path(platform.resources["warehouse"].path)
    target = dbt_assets_module.target_path(platform.resources["warehouse"])
    assert target == warehouse.with_name(warehouse.name + ".dbt-target")
    # The last of the run's dbt invocations; the log holds every one's (the core models' too).
    assert json.loads((target / "run_results.json").read_text())["results"]
    assert "model.data_platform.fct_orders" in (target / "dbt.log").read_text()
    assert DBT_PROJECT_DIR.resolve() not in target.resolve().parents


def test_dbt_log_is_dbts_debug_text_not_json_lines(platform):
    """dagster-dbt's DBT_LOG_FORMAT=json, for the stdout it parses, also made dbt.log JSON
    lines, which cost dbt's process ~0.19 CPU-s a core layer's build: the file is dbt's own
    debug text, as a plain `dbt build` writes it, every event's message still in it."""
    log = (dbt_assets_module.target_path(platform.resources["warehouse"]) / "dbt.log").read_text()

    def is_json_event(line: str) -> bool:
        try:
            return isinstance(json.loads(line), dict)
        except ValueError:
            return False

    assert not [line for line in log.splitlines() if is_json_event(line)]
    began = r"^\S*\d\d:\d\d:\d\d\.\d+ \[debug\] \[[^]]*\]: Began running node "
    assert re.search(began + r"model\.data_platform\.fct_orders$", log, re.MULTILINE)


def test_column_lineage_is_reused_until_its_inputs_change(platform, monkeypatch):
    """Derived once and then read from the cache, equal both times; a changed compiled SQL
    derives that model's lineage again."""
    from data_platform.assets import dbt_metadata

    target = dbt_assets_module.target_path(platform.resources["warehouse"])
    manifest = json.loads((target / "manifest.json").read_text())
    reader = dbt_metadata.BuiltModelMetadata(manifest, dbt_assets_module.TRANSLATOR, None, target)
    models = ["model.data_platform.fct_orders", "model.data_platform.daily_revenue"]
    derived = []
    real_build = dbt_metadata._build_column_lineage_metadata

    def counting_build(**kwargs):
        derived.append(kwargs["dbt_resource_props"]["unique_id"])
        return real_build(**kwargs)

    monkeypatch.setattr(dbt_metadata, "_build_column_lineage_metadata", counting_build)

    def read() -> dict:
        with platform.resources["warehouse"].reader() as warehouse:
            return reader.for_models(warehouse, models)

    (target / dbt_metadata.LINEAGE_CACHE_FILE).unlink()
    first = read()
    assert derived == models
    assert read() == first
    assert derived == models  # the second read derived nothing
    assert first[models[1]]["dagster/column_lineage"].deps_by_column["revenue"]

    compiled = dbt_metadata.compiled_sql_path(target, manifest["nodes"][models[0]])
    original = compiled.read_text()
    try:
        compiled.write_text(original + "\n-- edited")
        read()
    finally:
        compiled.write_text(original)
    assert derived == [*models, models[0]]


def test_daily_revenue_matches_raw(platform):
    orders = latest_versions(
        platform.sql("SELECT id, updated_at, status, ordered_at FROM raw.orders")
    )
    items = latest_versions(
        platform.sql("SELECT id, updated_at, order_id, quantity, unit_price FROM raw.order_items")
    )
    revenue: dict[date, Decimal] = defaultdict(Decimal)
    completed: dict[date, int] = defaultdict(int)
    for _, _, status, ordered_at in orders.values():
        if status == "completed":
            completed[ordered_at.date()] += 1
    for _, _, order_id, quantity, unit_price in items.values():
        order = orders.get(order_id)
        if order and order[2] == "completed":
            revenue[order[3].date()] += quantity * unit_price
    expected = {day: (completed[day], revenue[day]) for day in completed}
    actual = {
        day: (n, Decimal(r))
        for day, n, r in platform.sql(
            "SELECT revenue_date, completed_orders, revenue FROM marts.daily_revenue"
        )
    }
    assert actual == expected
    assert sum(n for n, _ in expected.values()) > 10


def test_daily_active_users_matches_raw(platform):
    rows = platform.sql(
        "SELECT event_id, user_id, event_type, occurred_at FROM raw.events "
        "ORDER BY dt, _source_file, _line_number"
    )
    first_arrival = {}
    for event_id, user_id, event_type, occurred_at in rows:
        first_arrival.setdefault(event_id, (user_id, event_type, occurred_at))
    users_by_day: dict[date, set] = defaultdict(set)
    for user_id, event_type, occurred_at in first_arrival.values():
        if event_type in KNOWN_EVENT_TYPES:
            users_by_day[occurred_at.date()].add(user_id)
    expected = {day: len(users) for day, users in users_by_day.items()}
    actual = dict(platform.sql("SELECT activity_date, active_users FROM marts.daily_active_users"))
    assert actual == expected
    # The simulator's late file: events of the first day arrived, and are partitioned, on the
    # third; the mart counts them on the first (a count by dt would put them on the third).
    [(late,)] = platform.sql(
        "SELECT count(*) FROM raw.events WHERE dt = ? AND occurred_at::DATE = ? "
        "AND _source_file LIKE '%/late-%'",
        [DAYS[2], DAYS[0]],
    )
    assert late > 0


def test_order_totals_match_raw(platform):
    items = latest_versions(
        platform.sql("SELECT id, updated_at, order_id, quantity, unit_price FROM raw.order_items")
    )
    totals: dict[int, Decimal] = defaultdict(Decimal)
    for _, _, order_id, quantity, unit_price in items.values():
        totals[order_id] += quantity * unit_price
    actual = dict(platform.sql("SELECT order_id, order_total FROM marts.fct_orders"))
    orders = {i for (i,) in platform.sql("SELECT DISTINCT id FROM raw.orders")}
    # Every order, one without lines at 0 (a line's order missing from raw.orders has no row).
    assert {k: Decimal(v) for k, v in actual.items()} == {o: totals.get(o, 0) for o in orders}


def test_no_personal_data_in_marts_or_analytics(platform):
    secrets = {
        value.lower()
        for email, name in platform.sql("SELECT email, full_name FROM raw.users")
        for value in (email, name)
        if value
    }
    assert len(secrets) > 100
    columns = platform.sql(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns "
        "WHERE table_schema IN ('marts', 'analytics')"
    )
    assert {t for _, t, _ in columns} >= {"dim_customers", "customer_segments"}
    for schema, table, column in columns:
        values = platform.sql(
            f'SELECT DISTINCT lower(CAST("{column}" AS VARCHAR)) FROM {schema}.{table}'
        )
        leaked = secrets & {v for (v,) in values}
        assert not leaked, f"{schema}.{table}.{column} holds personal data: {sorted(leaked)[:3]}"
    assert email_like_values(platform.settings.warehouse, ("marts", "analytics")) == []


# Something that looks like an e-mail address anywhere in a text or inside a JSON document.
EMAIL_LIKE = r"[^@\s\"]+@[^@\s\"]+\.[^@\s\"]+"


def email_like_values(warehouse: Path, schemas: tuple[str, ...]) -> list[tuple]:
    """(schema, table, column, value) of every text or JSON value of `schemas` holding
    something like an e-mail address, a key or a value of a nested document included."""
    placeholders = ", ".join("?" * len(schemas))
    columns = query(
        warehouse,
        "SELECT table_schema, table_name, column_name FROM information_schema.columns "
        f"WHERE table_schema IN ({placeholders}) AND data_type IN ('VARCHAR', 'JSON')",
        list(schemas),
    )
    assert columns
    return [
        (schema, table, column, value)
        for schema, table, column in columns
        for (value,) in query(
            warehouse,
            f'SELECT DISTINCT CAST("{column}" AS VARCHAR) FROM {schema}.{table} '
            f'WHERE regexp_matches(CAST("{column}" AS VARCHAR), ?)',
            [EMAIL_LIKE],
        )
    ]


def test_email_hashes_are_the_salted_hash_of_each_versions_address(platform):
    """sha256(salt || ascii_lower(trim(email))), computed here from raw.users: a hash without
    the salt could be reversed with a dictionary of addresses."""
    salt = platform.resources["privacy"].salt()
    emails = {
        (i, at): e for i, at, e in platform.sql("SELECT id, updated_at, email FROM raw.users")
    }

    def salted_hash(email: str | None) -> str | None:
        address = ascii_lower((email or "").strip(" "))
        return hashlib.sha256((salt + address).encode()).hexdigest() if address else None

    versions = platform.sql("SELECT user_id, valid_from, email_hash FROM marts.dim_customers")
    assert len(versions) > 80
    assert {(i, at): h for i, at, h in versions} == {
        (i, at): salted_hash(emails[i, at]) for i, at, _ in versions
    }


def rebuild_events(platform: Platform, day: date) -> None:
    """raw/events, then marts/fct_events, for one day: two runs, since the staging view between
    them is not re-run, so one run holding both would not order them."""
    for key in (["raw", "events"], ["marts", "fct_events"]):
        result = dg.materialize(
            ALL_ASSETS,
            selection=dg.AssetSelection.keys(key),
            resources=platform.resources,
            partition_key=str(day),
        )
        assert result.success


def test_late_events_update_only_their_day(own_platform, tmp_path):
    day = DAYS[0]
    before = dict(own_platform.sql("SELECT dt, count(*) FROM marts.fct_events GROUP BY dt"))
    other_days = own_platform.sql(
        "SELECT * EXCLUDE (dt) FROM marts.fct_events WHERE dt <> ? ORDER BY ALL", [day]
    )
    late_at = f"{day - timedelta(days=1)}T23:00:00Z"
    late = [
        json.dumps(
            {"event_id": f"late-{n}", "user_id": 1, "event_type": "login", "occurred_at": late_at}
        )
        for n in range(5)
    ]
    put_lines(
        own_platform.resources["landing"], f"events/dt={day}/late-arrival.jsonl", late, tmp_path
    )
    rebuild_events(own_platform, day)
    after = dict(own_platform.sql("SELECT dt, count(*) FROM marts.fct_events GROUP BY dt"))
    assert after[day] == before[day] + 5
    assert {d: n for d, n in after.items() if d != day} == {
        d: n for d, n in before.items() if d != day
    }
    assert (
        own_platform.sql(
            "SELECT * EXCLUDE (dt) FROM marts.fct_events WHERE dt <> ? ORDER BY ALL", [day]
        )
        == other_days
    )


def test_an_event_whose_first_copy_is_gone_moves_to_its_next_arrival(own_platform, tmp_path):
    """An event landed on two days is kept once, at its first arrival. When that copy goes
    (its file replaced without it, the day re-ingested) and only that day's fact is rebuilt,
    the event moves to its other day's partition: rebuilding a day deleted it, and nothing put
    it back until the other day was rebuilt too."""
    first, second = DAYS[0], DAYS[-1]
    moving = json.dumps(
        {"event_id": "moving-1", "user_id": 1, "event_type": "login",
         "occurred_at": f"{first}T08:00:00Z"}
    )  # fmt: skip
    landing = own_platform.resources["landing"]
    put_lines(landing, f"events/dt={first}/resent.jsonl", [moving], tmp_path)
    put_lines(landing, f"events/dt={second}/resent.jsonl", [moving], tmp_path)
    for day in (first, second):
        rebuild_events(own_platform, day)
    where = "SELECT dt FROM marts.fct_events WHERE event_id = 'moving-1'"
    assert own_platform.sql(where) == [(first,)]
    others = "SELECT count(*) FROM marts.fct_events WHERE event_id <> 'moving-1'"
    count_before = own_platform.sql(others)

    put_lines(landing, f"events/dt={first}/resent.jsonl", [], tmp_path)
    rebuild_events(own_platform, first)
    assert own_platform.sql(where) == [(second,)]
    assert own_platform.sql(others) == count_before


def test_an_event_whose_first_arrival_is_of_an_unknown_type_leaves_its_later_day(
    own_platform, tmp_path
):
    """An event kept at a later day (its only arrival then) whose copy of an unknown type lands
    in an earlier day: its first arrival is now that copy, which fct_events leaves out, so the
    rebuild of the earlier day takes it out of the later day too. It stayed there (and in
    daily_active_users) until the later day was rebuilt as well."""
    first, second = DAYS[0], DAYS[-1]

    def event(event_type: str) -> str:
        return json.dumps(
            {"event_id": "retyped-1", "user_id": 1, "event_type": event_type,
             "occurred_at": f"{first}T08:00:00Z"}
        )  # fmt: skip

    landing = own_platform.resources["landing"]
    put_lines(landing, f"events/dt={second}/resent.jsonl", [event("login")], tmp_path)
    rebuild_events(own_platform, second)
    where = "SELECT dt FROM marts.fct_events WHERE event_id = 'retyped-1'"
    assert own_platform.sql(where) == [(second,)]
    others = "SELECT count(*) FROM marts.fct_events WHERE event_id <> 'retyped-1'"
    count_before = own_platform.sql(others)

    put_lines(landing, f"events/dt={first}/resent.jsonl", [event("not_a_known_type")], tmp_path)
    rebuild_events(own_platform, first)
    assert own_platform.sql(where) == []
    assert own_platform.sql(others) == count_before


def test_two_email_changes_between_runs_give_three_contiguous_versions(settings, resources):
    simulate(
        SimulationConfig(seed=5, days=1, end_date=DAYS[0], users=20, events_per_day=50),
        resources["landing"],
        settings.source_db_url,
    )
    users_only = dg.AssetSelection.keys(["raw", "users"])
    history = dg.AssetSelection.keys(
        ["staging", "stg_app__users"], ["snapshots", "users_history"], ["marts", "dim_customers"]
    )
    assert dg.materialize(ALL_ASSETS, selection=users_only, resources=resources).success
    engine = sa.create_engine(settings.source_db_url)
    users = sa.Table("users", sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        user_id, updated_at = conn.execute(
            sa.select(users.c.id, users.c.updated_at).order_by(users.c.updated_at.desc()).limit(1)
        ).one()
    for minutes, email in ((5, "first.change@example.test"), (10, "second.change@example.test")):
        with engine.begin() as conn:
            conn.execute(
                users.update()
                .where(users.c.id == user_id)
                .values(email=email, updated_at=updated_at + timedelta(minutes=minutes))
            )
        assert dg.materialize(ALL_ASSETS, selection=users_only, resources=resources).success
    assert dg.materialize(ALL_ASSETS, selection=history, resources=resources).success

    versions = query(
        settings.warehouse,
        "SELECT email_hash, valid_from, valid_to, is_current FROM marts.dim_customers "
        "WHERE user_id = ? ORDER BY valid_from",
        [user_id],
    )
    assert len(versions) == 3
    assert len({v[0] for v in versions}) == 3  # each version has its own e-mail hash
    assert [v[1] for v in versions[1:]] == [v[2] for v in versions[:-1]]  # contiguous
    assert [v[3] for v in versions] == [False, False, True]
    assert versions[-1][2] is None


def test_a_failing_error_test_stops_everything_downstream_in_its_run(settings, resources):
    """An order line without a quantity reaches the marts (raw's gates are not in this run):
    fct_order_items' not_null test fails at ERROR. dbt skips the models built on that table,
    and the run's later steps (partitioned facts, aggregates, analytics) do not start; models
    that do not read it are still built."""
    simulate(
        SimulationConfig(seed=3, days=1, end_date=DAYS[0], users=20, events_per_day=50),
        resources["landing"],
        settings.source_db_url,
    )
    raw_only = dg.AssetSelection.groups("raw")
    assert materialize_days(ALL_ASSETS, resources, DAYS[:1], selection=raw_only).success
    with duckdb.connect(str(settings.warehouse)) as conn:
        conn.execute("UPDATE raw.order_items SET quantity = NULL WHERE id = 1")

    below_raw = dg.AssetSelection.all() - raw_only
    result = materialize_days(
        ALL_ASSETS, resources, DAYS[:1], selection=below_raw, raise_on_error=False
    )
    assert not result.success
    failed = [
        (e.asset_key.to_user_string(), e.check_name, e.severity)
        for e in result.get_asset_check_evaluations()
        if not e.passed
    ]
    assert (
        "marts/fct_order_items",
        "not_null_fct_order_items_quantity",
        dg.AssetCheckSeverity.ERROR,
    ) in failed, failed
    built = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"marts/dim_date", "marts/dim_customers", "marts/fct_order_items"} <= built
    assert not built & {
        "marts/fct_orders",  # built on the failed table: dbt skipped it
        "marts/fct_events",  # later steps of the run
        "marts/daily_active_users",
        "analytics/customer_segments",
    }


# A raw world small enough to reason about by hand, built by dbt alone (no ingestion):
# figures the simulated one does not reach (a half cent, PII in properties, non-ASCII
# e-mails, versions that change nothing published).
SMALL_RAW = """
CREATE SCHEMA raw;
CREATE TABLE raw.users (id BIGINT, email VARCHAR, full_name VARCHAR, country VARCHAR,
    created_at TIMESTAMP, updated_at TIMESTAMP, deleted_at TIMESTAMP, _extracted_at TIMESTAMP);
INSERT INTO raw.users VALUES
    (1, 'a@example.com', 'A B', 'DE', '2026-01-01', '2026-01-01', NULL, '2026-01-02'),
    -- only the full name changes (not published), then only the e-mail's case
    (1, 'a@example.com', 'A C', 'DE', '2026-01-01', '2026-01-02', NULL, '2026-01-03'),
    (1, 'A@Example.com', 'A C', 'DE', '2026-01-01', '2026-01-03', NULL, '2026-01-04'),
    (1, 'a@example.com', 'A C', 'FR', '2026-01-01', '2026-01-04', NULL, '2026-01-05'),
    -- a dotted capital I, a final sigma: lower() differs by engine, ASCII lowering does not
    (2, ' İNCİ.Σ@EXAMPLE.COM ', 'C D', 'TR', '2026-01-01', '2026-01-01', NULL, '2026-01-02');
CREATE TABLE raw.products (id BIGINT, sku VARCHAR, name VARCHAR, category VARCHAR,
    unit_price DECIMAL(10,2), updated_at TIMESTAMP, _extracted_at TIMESTAMP);
INSERT INTO raw.products VALUES
    (10, 'S10', 'P', 'c', 1.00, '2026-01-01', '2026-01-02'),
    (10, 'S10', 'P', 'c', 1.00, '2026-01-02', '2026-01-03'),  -- nothing changed
    (10, 'S10', 'P', 'c', 2.00, '2026-01-03', '2026-01-04');
CREATE TABLE raw.orders (id BIGINT, user_id BIGINT, status VARCHAR, ordered_at TIMESTAMP,
    updated_at TIMESTAMP, _extracted_at TIMESTAMP);
INSERT INTO raw.orders VALUES
    (100, 1, 'completed', '2026-01-05 10:00', '2026-01-05 10:00', '2026-01-06'),
    (101, 1, 'completed', '2026-01-06 10:00', '2026-01-06 10:00', '2026-01-07'),
    (102, 2, 'completed', '2026-01-06 11:00', '2026-01-06 11:00', '2026-01-07'),
    (103, 2, 'completed', '2026-01-06 12:00', '2026-01-06 12:00', '2026-01-07'),
    -- placed before user 1's first version, under it, and by a user the source never had
    (104, 1, 'cancelled', '2025-12-31 10:00', '2025-12-31 10:00', '2026-01-02'),
    (105, 1, 'pending', '2026-01-02 10:00', '2026-01-02 10:00', '2026-01-03'),
    (106, 9, 'pending', '2026-01-06 13:00', '2026-01-06 13:00', '2026-01-07');
CREATE TABLE raw.order_items (id BIGINT, order_id BIGINT, product_id BIGINT,
    quantity INTEGER, unit_price DECIMAL(10,2), updated_at TIMESTAMP, _extracted_at TIMESTAMP);
INSERT INTO raw.order_items VALUES
    (1000, 100, 10, 1, 0.50, '2026-01-05 10:00', '2026-01-06'),
    (1001, 101, 10, 1, 0.65, '2026-01-06 10:00', '2026-01-07'),
    (1002, 102, 10, 1, 2.01, '2026-01-06 11:00', '2026-01-07');
CREATE TABLE raw.events (event_id VARCHAR, user_id BIGINT, event_type VARCHAR,
    occurred_at TIMESTAMP, session_id VARCHAR, properties JSON, _rescued JSON,
    _source_file VARCHAR, _line_number BIGINT, _loaded_at TIMESTAMP, dt DATE);
INSERT INTO raw.events VALUES
    ('e1', 1, 'signup', '2026-01-05 09:00', 's1',
     '{"email": "a@example.com", "page": "/signup?name=A+B#form", "contact": {"mail": "a@example.com"}}',
     NULL, 'events/dt=2026-01-05/a.jsonl', 1, '2026-01-06', '2026-01-05'),
    ('e2', 1, 'purchase', '2026-01-05 10:00', 's1',
     '{"order_id": 100, "amount": 0.5, "currency": "EUR", "note": "b@example.com"}',
     NULL, 'events/dt=2026-01-05/a.jsonl', 2, '2026-01-06', '2026-01-05'),
    ('e3', 2, 'login', '2026-01-06 09:00', NULL, NULL,
     NULL, 'events/dt=2026-01-06/a.jsonl', 1, '2026-01-07', '2026-01-06');
CREATE TABLE raw.payments (payment_id VARCHAR, order_id BIGINT, amount DECIMAL(18,4),
    currency VARCHAR, status VARCHAR, created_at TIMESTAMP, _rescued JSON,
    _source_file VARCHAR, _line_number BIGINT, _loaded_at TIMESTAMP, dt DATE);
INSERT INTO raw.payments VALUES ('p1', 100, 0.50, 'EUR', 'succeeded', '2026-01-05 10:01',
    NULL, 'payments/dt=2026-01-05/p.csv', 2, '2026-01-06', '2026-01-05');
CREATE TABLE raw.dead_letter (source VARCHAR, dt DATE, source_file VARCHAR,
    line_number BIGINT, raw_record VARCHAR, error VARCHAR, rejected_at TIMESTAMP);
"""
SMALL_SALT = "a salt for the small world"


def dbt_cli(args: list[str], warehouse: Path, target: Path) -> subprocess.CompletedProcess:
    """`dbt <args>` on a DuckDB warehouse file, as its own process (as the platform runs it),
    its target and logs in `target` (never the project's own folder)."""
    env = {
        **environ_without_settings(),
        "DBT_TARGET": "dev",
        "DATA_PLATFORM_WAREHOUSE": str(warehouse),
        "DATA_PLATFORM_PII_SALT": SMALL_SALT,
    }
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("dbt")), *args,
            "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
            "--target-path", str(target), "--log-path", str(target / "logs"),
        ],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def small_world(tmp_path_factory) -> tuple[Path, Path]:
    """(warehouse, dbt target folder) of SMALL_RAW, every model built."""
    root = tmp_path_factory.mktemp("small")
    warehouse, target = root / "warehouse.duckdb", root / "target"
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute(SMALL_RAW)
        # Built by hand as an older platform would have: brought up to the contract, as a run does.
        ensure_raw_tables(conn, SOURCE_DB_TABLES)
    built = dbt_cli(["run"], warehouse, target)
    assert built.returncode == 0, built.stdout[-5000:]
    return warehouse, target


def test_average_order_value_is_rounded_half_up_exactly(small_world):
    """1.15 / 2 = 0.575 -> 0.58 and 2.01 / 2 = 1.005 -> 1.01, as Spark's decimal arithmetic
    gives; DuckDB divided a decimal by a count in binary floating point (0.57, 1.00)."""
    rows = query(
        small_world[0],
        "SELECT user_id, lifetime_revenue, average_order_value "
        "FROM marts.customer_lifetime_value ORDER BY user_id",
    )
    assert rows == [(1, Decimal("1.15"), Decimal("0.58")), (2, Decimal("2.01"), Decimal("1.01"))]


def test_the_current_order_is_the_version_extracted_last_not_the_latest_stamp(tmp_path):
    """A source clock ahead stamps one version of order 105 in the future (completed, 2027);
    the clock fixed, the order is cancelled (a real, earlier stamp), which the extraction
    appends after it (the high-water mark is capped at extraction time). The order is
    cancelled now: the greatest updated_at kept it completed, and in daily_revenue. The
    future stamp is a warning on staging (the history still orders versions by updated_at)."""
    warehouse, target = tmp_path / "warehouse.duckdb", tmp_path / "target"
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute(SMALL_RAW)
        ensure_raw_tables(conn, SOURCE_DB_TABLES)
        conn.execute(
            "INSERT INTO raw.orders (id, user_id, status, ordered_at, updated_at, _extracted_at) "
            "VALUES (105, 1, 'completed', '2026-01-02 10:00', '2027-06-01', '2026-01-04'), "
            "(105, 1, 'cancelled', '2026-01-02 10:00', '2026-01-05 09:00', '2026-01-06')"
        )
    built = dbt_cli(["run", "--select", "+daily_revenue"], warehouse, target)
    assert built.returncode == 0, built.stdout[-5000:]
    assert query(warehouse, "SELECT status FROM marts.fct_orders WHERE order_id = 105") == [
        ("cancelled",)
    ]
    assert (
        query(
            warehouse,
            "SELECT * FROM marts.daily_revenue WHERE revenue_date = ?",
            [date(2026, 1, 2)],
        )
        == []
    )
    tested = dbt_cli(["test", "--select", "stg_app__orders"], warehouse, target)
    assert tested.returncode == 0, tested.stdout[-5000:]  # a warning stops nothing
    results = json.loads((target / "run_results.json").read_text())["results"]
    stamped = [
        r for r in results if "expression_is_true_stg_app__orders_updated_at" in r["unique_id"]
    ]
    assert [(r["status"], r["failures"]) for r in stamped] == [("warn", 1)]


PII_TEST = "assert_no_pii_columns_in_marts_or_analytics"


def test_event_properties_in_marts_keep_only_published_keys(small_world):
    """A signup form's e-mail in `properties` (a key of its own, a nested one, a note) reached
    marts.fct_events in clear; the marts keep only the published keys, typed, and a page's path
    without the query string where the form put the visitor's name."""
    warehouse, _ = small_world
    assert query(warehouse, "SELECT count(*) FROM staging.stg_events__events") == [(3,)]
    assert email_like_values(warehouse, ("staging",))  # the world does hold some
    assert email_like_values(warehouse, ("marts",)) == []
    properties = dict(
        query(warehouse, "SELECT event_id, CAST(properties AS VARCHAR) FROM marts.fct_events")
    )
    assert {k: v and json.loads(v) for k, v in properties.items()} == {
        "e1": {"page": "/signup"},
        "e2": {"order_id": 100, "amount": 0.5, "currency": "EUR"},
        "e3": None,
    }
    # dbt's own test looks inside the document too.
    tested = dbt_cli(["test", "--select", PII_TEST], *small_world)
    assert tested.returncode == 0, tested.stdout[-3000:]


def test_a_column_named_like_pii_in_analytics_fails_the_pii_test(small_world, tmp_path):
    """The contract keeps e-mails and names out of analytics as well as marts (dbt/README.md,
    "PII"): a Python asset writing a column named like one is caught, as a mart's would be."""
    warehouse, _ = small_world
    leaked = tmp_path / "leaked.duckdb"
    shutil.copy(warehouse, leaked)
    with duckdb.connect(str(leaked)) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS analytics")
        conn.execute("CREATE TABLE analytics.contacts AS SELECT 1 AS user_id, 'x' AS full_name")
    tested = dbt_cli(["test", "--select", PII_TEST], leaked, tmp_path / "target")
    assert tested.returncode == 1, tested.stdout[-3000:]
    results = json.loads((tmp_path / "target" / "run_results.json").read_text())["results"]
    assert [(r["status"], r["failures"]) for r in results] == [("fail", 1)]


RECONCILIATIONS = {
    # test -> a corruption of the copy of the small world it must report
    "assert_daily_revenue_reconciles_with_staging": "UPDATE marts.daily_revenue "
    "SET revenue = revenue + 0.01 WHERE revenue_date = DATE '2026-01-06'",
    "assert_daily_active_users_reconciles_with_staging": "DELETE FROM marts.daily_active_users "
    "WHERE activity_date = DATE '2026-01-06'",
    "assert_arrival_counts_add_up_to_raw": "CREATE TABLE staging.counted AS "
    "SELECT * REPLACE (arrival_count + 1 AS arrival_count) FROM staging.stg_payments__payments; "
    "DROP VIEW staging.stg_payments__payments; "
    "ALTER TABLE staging.counted RENAME TO stg_payments__payments",
    # a dt of staging that the fact lacks: the test compared only the fact's own dts
    "assert_partitioned_facts_match_staging": "DELETE FROM marts.fct_events "
    "WHERE dt = DATE '2026-01-06'",
}


def test_reconciliation_tests_pass_and_report_what_they_guard(small_world, tmp_path):
    """Each singular test that reconciles a model with another path passes on the small
    world and fails on a copy of it where that model (or staging) was corrupted by hand: none
    is true by construction."""
    warehouse, target = small_world

    def outcomes(path: Path) -> dict[str, tuple[str, int]]:
        done = dbt_cli(["test", "--select", *RECONCILIATIONS], path, target)
        results = json.loads((target / "run_results.json").read_text())["results"]
        found = {r["unique_id"].split(".")[2]: (r["status"], r["failures"]) for r in results}
        assert found.keys() == RECONCILIATIONS.keys(), done.stdout[-3000:]
        return found

    assert outcomes(warehouse) == {name: ("pass", 0) for name in RECONCILIATIONS}
    corrupted = tmp_path / "corrupted.duckdb"
    shutil.copy(warehouse, corrupted)
    with duckdb.connect(str(corrupted)) as conn:
        for statement in RECONCILIATIONS.values():
            conn.execute(statement)
    found = outcomes(corrupted)
    assert all(status in ("fail", "warn") and failures > 0 for status, failures in found.values())


def ascii_lower(text: str) -> str:
    """A-Z to a-z and nothing else, as macro hash_email lowers on both engines (str.lower,
    DuckDB's and Spark's lower() each map other letters their own way: İ, final Σ)."""
    return text.translate(str.maketrans(string.ascii_uppercase, string.ascii_lowercase))


def test_email_hashes_lower_only_ascii_letters(small_world):
    """' İNCİ.Σ@EXAMPLE.COM ': lower() maps İ and a final Σ each engine its own way
    (DuckDB's and Spark's), so the same address hashed differently on each. Only A-Z is
    lowered now, on both."""
    hashes = dict(query(small_world[0], "SELECT user_id, email_hash FROM snapshots.users_history"))
    address = "İncİ.Σ@example.com"
    assert ascii_lower(" İNCİ.Σ@EXAMPLE.COM ".strip(" ")) == address
    assert hashes[2] == hashlib.sha256((SMALL_SALT + address).encode()).hexdigest()


def test_orders_carry_the_customer_version_they_were_placed_under(small_world):
    """fct_orders.customer_key: the dim_customers version valid at ordered_at (user 1 moved
    from DE to FR on 2026-01-04), the first version for an order older than any, none for an
    orphan: a join on it gives each order one customer row, as the customer was."""
    warehouse, _ = small_world
    versions = query(
        warehouse, "SELECT user_id, valid_from, valid_to, customer_key FROM marts.dim_customers"
    )

    def version_at(user_id: int, at: datetime) -> str | None:
        mine = sorted(v for v in versions if v[0] == user_id)
        valid = [v for v in mine if v[1] <= at and (v[2] is None or at < v[2])]
        return (valid or mine[:1] or [(None, None, None, None)])[0][3]

    orders = query(warehouse, "SELECT order_id, user_id, ordered_at FROM marts.fct_orders")
    expected = {order_id: version_at(user_id, at) for order_id, user_id, at in orders}
    assert dict(query(warehouse, "SELECT order_id, customer_key FROM marts.fct_orders")) == expected
    countries = dict(
        query(
            warehouse,
            "SELECT order_id, country FROM marts.fct_orders "
            "LEFT JOIN marts.dim_customers USING (customer_key)",
        )
    )
    assert countries == {
        100: "FR",
        101: "FR",
        102: "TR",
        103: "TR",
        104: "DE",
        105: "DE",
        106: None,
    }


def test_history_tables_keep_one_row_per_distinct_version(small_world):
    """A version that changes nothing the history publishes (the full name, the case of the
    e-mail: same hash; a product written again unchanged) is no version of its own: it
    extends the one before, and valid_to is the next real change."""
    warehouse, _ = small_world
    users = query(
        warehouse,
        "SELECT country, valid_from, valid_to, is_current FROM snapshots.users_history "
        "WHERE user_id = 1 ORDER BY valid_from",
    )
    day = [datetime(2026, 1, d) for d in range(1, 5)]
    assert users == [("DE", day[0], day[3], False), ("FR", day[3], None, True)]
    products = query(
        warehouse,
        "SELECT unit_price, valid_from, valid_to FROM snapshots.products_history "
        "WHERE product_id = 10 ORDER BY valid_from",
    )
    assert products == [(Decimal("1.00"), day[0], day[2]), (Decimal("2.00"), day[2], None)]
    assert query(warehouse, "SELECT version_count FROM marts.dim_products") == [(2,)]


def test_a_dbt_killed_by_sigkill_is_retried_in_its_step(own_platform, tmp_path):
    """The OOM killer (or kill -9) taking dbt alone failed its step, which no run retry takes
    (only crashed runs are retried) and the automation counted as handled: the marts stayed
    behind their inputs until the next change upstream. Here a real dbt process is killed at
    its start (a wrapper that SIGKILLs itself once): the step is retried in its run and builds
    the same marts."""
    from data_platform.assets.dbt_project import DBT_PROJECT
    from data_platform.resources.dbt_cli import LocalDbtCliResource

    marker, wrapper = tmp_path / "killed-once", tmp_path / "dbt-killed-once"
    real = Path(sys.executable).with_name("data-platform-dbt")
    wrapper.write_text(
        f'#!/bin/sh\nif [ ! -e "{marker}" ]; then touch "{marker}"; kill -9 $$; fi\n'
        f'exec "{real}" "$@"\n'
    )
    wrapper.chmod(0o755)
    dbt = LocalDbtCliResource(
        project_dir=DBT_PROJECT,
        profiles_dir=str(DBT_PROJECT.profiles_dir),
        dbt_executable=str(wrapper),
    )
    before = own_platform.sql("SELECT count(*), sum(revenue) FROM marts.daily_revenue")
    core = [dbt_assets_module.DBT_ASSETS[0]]  # dbt_core_models
    result = materialize_days(
        core, {**own_platform.resources, "dbt": dbt}, DAYS, raise_on_error=False
    )
    assert result.success and marker.exists()
    retried = [
        e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
    ]
    assert [e.step_key for e in retried] == ["dbt_core_models"]
    assert own_platform.sql("SELECT count(*), sum(revenue) FROM marts.daily_revenue") == before
    # A model's own failure is not retried: dbt exits 1, the step fails once.
    wrapper.write_text("#!/bin/sh\nexit 1\n")
    failed = materialize_days(
        core, {**own_platform.resources, "dbt": dbt}, DAYS, raise_on_error=False
    )
    kinds = [e.event_type for e in failed.all_events]
    assert not failed.success and dg.DagsterEventType.STEP_UP_FOR_RETRY not in kinds


def test_a_day_whose_completed_orders_total_below_zero_passes_the_revenue_gate(tmp_path):
    """A credit note (a completed order whose one line has a negative price) is a legal order:
    fct_order_items' and daily_revenue's `accepted_range` tests only WARN about it. Its day's
    revenue is negative and right; the blocking DailyRevenue gate failed on it (revenue >= 0),
    holding back everything built on daily_revenue for a number computed correctly."""
    from data_platform.checks.gates import GATES
    from data_platform.checks.pandera_gate import validate_window
    from data_platform.checks.scope import WHOLE_TABLE

    warehouse, target = tmp_path / "warehouse.duckdb", tmp_path / "target"
    lines = [  # (order_id, ordered_at, quantity, unit_price); every order completed
        (1, datetime(2026, 1, 5, 10), 2, Decimal("5.00")),
        (2, datetime(2026, 1, 6, 10), 1, Decimal("-7.50")),  # the credit note
    ]
    with duckdb.connect(str(warehouse)) as conn:
        ensure_raw_tables(conn, SOURCE_DB_TABLES)
        conn.execute(
            "INSERT INTO raw.users (id, email, full_name, country, created_at, updated_at, "
            "_extracted_at) VALUES (1, 'a@example.com', 'A', 'DE', '2026-01-01', '2026-01-01', "
            "'2026-01-02')"
        )
        for order_id, ordered_at, quantity, unit_price in lines:
            extracted_at = ordered_at + timedelta(hours=1)
            conn.execute(
                "INSERT INTO raw.orders (id, user_id, status, ordered_at, updated_at, "
                "_extracted_at) VALUES (?, 1, 'completed', ?, ?, ?)",
                [order_id, ordered_at, ordered_at, extracted_at],
            )
            conn.execute(
                "INSERT INTO raw.order_items (id, order_id, product_id, quantity, unit_price, "
                "updated_at, _extracted_at) VALUES (?, ?, 10, ?, ?, ?, ?)",
                [order_id, order_id, quantity, unit_price, ordered_at, extracted_at],
            )
    built = dbt_cli(["run", "--select", "+daily_revenue"], warehouse, target)
    assert built.returncode == 0, built.stdout[-5000:]

    expected = defaultdict(Decimal)
    for _, ordered_at, quantity, unit_price in lines:
        expected[ordered_at.date()] += quantity * unit_price
    revenue = query(warehouse, "SELECT revenue_date, revenue FROM marts.daily_revenue")
    assert dict(revenue) == {date(2026, 1, 5): Decimal("10.00"), date(2026, 1, 6): Decimal("-7.50")}
    assert dict(revenue) == expected

    [gate] = [g for g in GATES if g.table == "marts.daily_revenue"]
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        outcome = validate_window(conn, gate, WHOLE_TABLE, 10)
    assert outcome.passed, outcome.failing_checks
