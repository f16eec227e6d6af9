"""The Definitions load, describe every table, and the web UI serves the asset graph."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
import yaml

from data_platform.definitions import defs
from data_platform.settings import SettingsError, load_settings
from data_platform_tests.helpers import free_port
from data_platform_tests.landed_records import KNOWN_EVENT_TYPES

REPO = Path(__file__).resolve().parents[1]
RAW_KEYS = {
    ("raw", name)
    for name in ("users", "products", "orders", "order_items", "events", "payments", "dead_letter")
}


def test_definitions_load_and_hold_every_raw_table():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {tuple(key.path) for key in graph.get_all_asset_keys()}
    assert keys >= RAW_KEYS


def test_every_raw_asset_is_described_for_the_ui():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        if key.path[0] != "raw":
            continue
        node = graph.get(key)
        assert node.description, key
        assert node.owners == ["team:data-platform"], key
        assert node.kinds >= {"duckdb"}, key
        schema = node.metadata["dagster/column_schema"]
        assert [c.name for c in schema.columns], key
        assert all(c.description for c in schema.columns), key


def test_every_check_sensor_and_schedule_says_what_it_does_and_no_sql_is_a_description():
    """The UI audit: 103 checks (the dbt tests) read "No description provided", the automation
    sensor and the backup schedule had none, and the catalog showed each dbt model's SQL as
    part of its description."""
    graph = defs.resolve_asset_graph()
    undescribed = [
        key for key in graph.asset_check_keys if not graph.get_check_spec(key).description
    ]
    assert not undescribed
    spec = graph.get_check_spec(
        dg.AssetCheckKey(
            dg.AssetKey(["marts", "daily_revenue"]), "accepted_range_daily_revenue_revenue__0"
        )
    )
    assert spec.description == (
        "dbt test `accepted_range` of `revenue` (min_value 0); severity warn: a failure is "
        "reported, nothing stops"
    )
    for sensor in defs.sensors:
        assert sensor.description, sensor.name
    for schedule in defs.schedules:
        assert schedule.description, schedule.name
    for key in graph.get_all_asset_keys():
        assert "Raw SQL" not in (graph.get(key).description or ""), key


def test_check_descriptions_show_dbt_vars_by_value_and_no_jinja():
    """The review: `values {{ var('known_event_types') }}`, `max_value {{ var(...) }}`: the UI
    showed the YAML's Jinja, not what the test accepts."""
    graph = defs.resolve_asset_graph()
    descriptions = {
        key: graph.get_check_spec(key).description or "" for key in graph.asset_check_keys
    }
    assert [k for k, d in descriptions.items() if "{{" in d or "{%" in d] == []
    variables = yaml.safe_load((REPO / "dbt" / "dbt_project.yml").read_text())["vars"]

    def description(table: str, check: str) -> str:
        return descriptions[dg.AssetCheckKey(dg.AssetKey(table.split("/")), check)]

    event_types = description(
        "marts/fct_events", "accepted_values_fct_events_event_type___var_known_event_types_"
    )
    listed = event_types.removeprefix("dbt test `accepted_values` of `event_type` (values [")
    assert set(listed.split("]")[0].split(", ")) == KNOWN_EVENT_TYPES, event_types
    amount = description(
        "marts/fct_payments",
        "accepted_range_fct_payments_amount___var_payment_amount_max____var_payment_amount_min_",
    )
    assert (
        f"(max_value {variables['payment_amount_max']}, "
        f"min_value {variables['payment_amount_min']})" in amount
    )
    email_hash = description(
        "marts/dim_customers",
        "expression_is_true_dim_customers_email_hash__is_null_or_regexp_full_match_email_hash_0_9a_f_64_",
    )
    assert "(expression is null or regexp_full_match('email_hash', '[0-9a-f]{64}'))" in email_hash


def test_partitioned_raw_assets_backfill_in_a_single_run():
    graph = defs.resolve_asset_graph()
    for name in ("events", "payments"):
        node = graph.get(dg.AssetKey(["raw", name]))
        assert node.partitions_def is not None
        assert node.backfill_policy == dg.BackfillPolicy.single_run()


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("DATA_PLATFORM_START_DATE", "01/01/2026", "DATA_PLATFORM_START_DATE"),
        ("DATA_PLATFORM_LANDING", "ftp://host/x", "DATA_PLATFORM_LANDING"),
        ("DATA_PLATFORM_LANDING", "s3://", "names no bucket"),
        ("DATA_PLATFORM_SOURCE_DB_URL", "/tmp/app.db", "SQLAlchemy URL"),
        ("DATA_PLATFORM_ALERT_WEBHOOK", "hooks.example", "DATA_PLATFORM_ALERT_WEBHOOK"),
        ("DATA_PLATFORM_DUCKDB_MEMORY_LIMIT", "lots", "like 1GB"),
    ],
)
def test_a_wrong_setting_is_one_clear_line(variable, value, fragment):
    with pytest.raises(SettingsError) as err:
        load_settings({variable: value})
    message = str(err.value)
    assert fragment in message and "\n" not in message


def test_defaults_follow_data_platform_home(tmp_path):
    settings = load_settings({"DATA_PLATFORM_HOME": str(tmp_path)})
    assert settings.warehouse == tmp_path / "warehouse.duckdb"
    assert settings.landing == str(tmp_path / "landing")
    assert settings.source_db_url == f"sqlite:///{tmp_path / 'source.db'}"
    assert settings.dagster_home == tmp_path / "dagster_home"
    assert str(settings.start_date) == "2026-01-01"
    assert settings.duckdb_memory_limit == "512MB"


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_loading_the_definitions_runs_no_dbt_and_defers_the_dataframe_stack(tmp_path):
    """Every sensor tick, UI reload and run process loads the Definitions: pandas, Pandera and
    pyarrow (0.35 s) load when an asset or check first needs them, and dbt is never run."""
    probe = (
        "import subprocess, sys\n"
        "class NoDbt(subprocess.Popen):\n"
        "    def __init__(self, args, *rest, **options):\n"
        "        if 'dbt' in str(args):\n"
        "            sys.exit(f'ran {args}')\n"
        "        super().__init__(args, *rest, **options)\n"
        "subprocess.Popen = NoDbt\n"
        "from data_platform.definitions import defs\n"
        "import dagster as dg\n"
        "dg.Definitions.validate_loadable(defs)\n"
        "print(sorted(m for m in ('pandas', 'pandera', 'pyarrow', 'numpy') if m in sys.modules))"
    )
    env = {**os.environ, "DATA_PLATFORM_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_on_spark_every_table_shows_spark_and_spark_column_types(tmp_path):
    """The asset graph of a platform on Spark showed DuckDB's kind on every table and DuckDB's
    column types (VARCHAR, JSON) on the raw tables and the analytics."""
    probe = (
        "import json\n"
        "from data_platform.definitions import defs\n"
        "graph = defs.resolve_asset_graph()\n"
        "def shown(node):\n"
        "    schema = node.metadata.get('dagster/column_schema')\n"
        "    columns = [(c.name, c.type) for c in schema.columns] if schema else None\n"
        "    return sorted(node.kinds), columns\n"
        "print(json.dumps({key.to_user_string(): shown(graph.get(key))\n"
        "    for key in graph.get_all_asset_keys()}))"
    )
    env = {
        **os.environ,
        "DATA_PLATFORM_HOME": str(tmp_path),
        "DATA_PLATFORM_ENGINE": "spark",
        "DATA_PLATFORM_SPARK_REMOTE": "sc://127.0.0.1:15002",
    }
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assets = json.loads(done.stdout.splitlines()[-1])
    default_graph = defs.resolve_asset_graph()
    on_duckdb = [k.to_user_string() for k in default_graph.get_all_asset_keys()]
    held = [
        k for k in on_duckdb if "duckdb" in default_graph.get(dg.AssetKey.from_user_string(k)).kinds
    ]
    assert len(held) >= 25  # every raw table, dbt model and analytics table
    for key in held:
        kinds, _ = assets[key]
        assert "spark" in kinds and "duckdb" not in kinds, key
    kinds, columns = assets["raw/dead_letter"]
    assert kinds == ["spark"]
    # Spark's table: partition columns last, no VARCHAR or JSON type.
    assert [name for name, _ in columns][-2:] == ["source", "dt"]
    assert dict(columns)["raw_record"] == "STRING"
    assert dict(assets["raw/users"][1])["_rescued"] == "STRING"
    assert dict(assets["analytics/customer_segments"][1])["segment"] == "STRING"
    assert assets["raw/events"][0] == ["python", "spark"]


def test_webserver_serves_the_asset_graph(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "DATA_PLATFORM_HOME": str(tmp_path),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    (tmp_path / "dagster_home").mkdir()
    webserver = Path(sys.executable).with_name("dagster-webserver")
    process = subprocess.Popen(
        [str(webserver), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        keys = None
        while time.monotonic() < deadline and keys is None:
            try:
                answer = graphql(port, "{ assetNodes { assetKey { path } } }")
                nodes = answer.get("data", {}).get("assetNodes") or []
                keys = {tuple(n["assetKey"]["path"]) for n in nodes} or None
            except OSError:
                pass
            if keys is None:
                assert process.poll() is None, "dagster-webserver exited"
                time.sleep(1)
        assert keys is not None, "the webserver did not serve the asset graph in time"
        assert keys >= RAW_KEYS
    finally:
        process.terminate()
        process.wait(timeout=30)
