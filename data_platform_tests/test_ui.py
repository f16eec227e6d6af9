"""The Dagster UI in a real browser: what an engineer sees on the running platform.

One module-scoped world: a few simulated days (with defects, so some WARN checks fail) are
materialized whole, as one run on the instance (as `data-platform materialize` does it), while
`dagster dev` (webserver and daemon, 127.0.0.1, a free port, the repo's dagster.yaml) starts
to serve it; Debian's headless chromium reads it. Every expectation comes from elsewhere than
the page: group names, lineage and checks from the Definitions, row counts, columns and
failure cases from the warehouse, check outcomes and run status from the Dagster instance.

The sensors are stored as stopped before the UI starts (see `ui_harness.stop_sensors`) and
the UI is asked to confirm it: the world stays as materialized while the tests read it. Run
alone with `pytest data_platform_tests/test_ui.py`; needs /usr/bin/chromium and
/usr/bin/chromedriver (`make test` installs them from apt).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.tags import MAX_RETRIES_TAG
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from data_platform.partitions import RANGE_TAGS
from data_platform.resources.build import build_resources
from data_platform.settings import Settings, load_settings
from data_platform.simulator import SimulationConfig, simulate
from data_platform_tests.landed_records import KNOWN_EVENT_TYPES
from data_platform_tests.ui_harness import (
    REPO,
    DagsterDev,
    by_text,
    by_text_prefix,
    chromium,
    click,
    dagster_dev,
    evidence_on_failure,
    image_size,
    mark_community_dialog_seen,
    platform_env,
    sensor_statuses,
    stop_sensors,
    table_header,
    table_rows,
    table_with_header,
    wait_for,
)

# Four days: enough orders for several rows of marts.daily_revenue. A defect rate of 10 %
# makes WARN checks fail (unknown event types, schema drift) while dead letters stay under the
# blocking ratio, so every mart is built.
LAST_DAY = date(2026, 1, 6)
SIMULATION = SimulationConfig(
    seed=11, days=4, end_date=LAST_DAY, users=150, events_per_day=500, defect_rate=0.1
)
MART = dg.AssetKey(["marts", "daily_revenue"])
EVENTS = dg.AssetKey(["raw", "events"])
FAILING_CHECK = dg.AssetCheckKey(EVENTS, "unknown_event_types")
REVENUE_CHART = dg.AssetKey(["analytics", "daily_revenue_chart"])
SCORECARD = dg.AssetKey(["analytics", "data_quality_scorecard"])
RUN_TIMEOUT = 240.0
RUN_ID = re.compile(r"/runs/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
# The code location of workspace.yaml, as `dagster dev` names it (after its module).
LOCATION, REPOSITORY = "data_platform.definitions", "__repository__"


@dataclass(frozen=True)
class Warehouse:
    """What the warehouse holds, read once before the UI starts (DuckDB admits no reader while
    a run writes)."""

    mart_rows: int
    mart_columns: list[tuple[str, str]]
    unknown_event_types: list[tuple[str, int]]
    scorecard_tables: list[str]


@dataclass(frozen=True)
class World:
    ui: DagsterDev
    instance: dg.DagsterInstance
    warehouse: Warehouse
    graph: AssetGraph
    browser: WebDriver


def read_warehouse(path: Path) -> Warehouse:
    known = sorted(KNOWN_EVENT_TYPES)
    with duckdb.connect(str(path), read_only=True) as conn:
        table, schema = MART.path[1], MART.path[0]
        return Warehouse(
            mart_rows=conn.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0],
            mart_columns=conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                [schema, table],
            ).fetchall(),
            # The contract's event types (landed_records.KNOWN_EVENT_TYPES), not the check's
            # vocabulary; the check shows its top 10.
            unknown_event_types=conn.execute(
                "SELECT event_type, count(*) AS n FROM raw.events "
                f"WHERE event_type NOT IN ({', '.join('?' for _ in known)}) "
                "GROUP BY ALL ORDER BY n DESC, event_type LIMIT 10",
                known,
            ).fetchall(),
            scorecard_tables=[
                row[0]
                for row in conn.execute(
                    'SELECT "table" FROM analytics.data_quality_scorecard ORDER BY "table"'
                ).fetchall()
            ],
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    """The simulated days materialized whole, served by `dagster dev`, open in chromium.

    `dagster dev` and chromium start first, in their own processes, and the world is built
    here meanwhile, in this process (`build_world`): the other core runs their start-up. The
    tests start once all of it is done.
    """
    logs = tmp_path_factory.mktemp("ui_logs")
    # The platform home lives outside pytest's temp root, which another pytest session on this
    # machine may prune while this module runs; the logs stay in the pytest folder.
    home = Path(tempfile.mkdtemp(prefix="data_platform_ui_"))
    dagster_home = home / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    mark_community_dialog_seen(dagster_home)
    env = platform_env(home, dagster_home)
    settings = load_settings(env)
    # Created here, once, so the processes below share storage instead of racing to make it.
    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home)))
    try:
        # Imported here rather than at collection: ~8 s, only for this module.
        from data_platform.definitions import defs

        stop_sensors(instance, LOCATION, REPOSITORY, list(defs.sensors or []))
        with (
            dagster_dev(env, logs / "dagster_dev.log") as ui,
            chromium(tmp_path_factory.mktemp("chromium_profile")) as driver,
        ):
            build_world(defs, settings, instance)
            ui.wait_until_serving()
            statuses = sensor_statuses(ui.url, LOCATION, REPOSITORY)
            assert {"landing_zone_files", "automation"} <= set(statuses), statuses
            assert set(statuses.values()) == {"STOPPED"}, statuses
            driver.get(ui.url)
            wait_for(driver, lambda d: d.find_elements(*by_text("Overview", "a")), "the UI")
            warehouse = read_warehouse(settings.warehouse)
            yield World(ui, instance, warehouse, defs.resolve_asset_graph(), driver)
    finally:
        instance.dispose()
        shutil.rmtree(home, ignore_errors=True)  # its dbt target folder too, beside the warehouse


def build_world(defs: dg.Definitions, settings: Settings, instance: dg.DagsterInstance) -> None:
    """`SIMULATION` written and every asset and check of the Definitions materialized over its
    days, as one run on `instance` (what `data-platform materialize` does), in this process:
    a second process importing Dagster and loading the Definitions again cost ~10 CPU-s (86
    against 76 for the whole build) on a 2-core machine already busy starting `dagster dev`."""
    resources = build_resources(settings)
    simulate(SIMULATION, resources["landing"], settings.source_db_url)
    days = (SIMULATION.dates[0].isoformat(), LAST_DAY.isoformat())
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        resources=resources,
        instance=instance,
        # No retry of a failed build by the daemon: its code location has no such job.
        tags={**dict(zip(RANGE_TAGS, days, strict=True)), MAX_RETRIES_TAG: "0"},
        raise_on_error=False,
    )
    failures = [
        f"{e.step_key}: {e.step_failure_data.error and e.step_failure_data.error.message}"
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    assert result.success, failures


@pytest.fixture(scope="module")
def browser(world) -> WebDriver:
    return world.browser


def asset_url(world: World, key: dg.AssetKey, query: str = "") -> str:
    return f"{world.ui.url}/assets/{'/'.join(key.path)}{query}"


def linked_assets(browser: WebDriver, heading: str) -> set[str]:
    """The assets linked under a heading of the Lineage section ("Upstream assets", ...)."""
    section = browser.find_element(*by_text(heading)).find_element(By.XPATH, "..")
    return {
        a.get_attribute("href").split("/assets/", 1)[1]
        for a in section.find_elements(By.CSS_SELECTOR, "a[href*='/assets/']")
    }


def latest_outcomes(world: World, key: dg.AssetKey) -> dict[str, str]:
    """Check name -> the word the UI uses for its latest completed execution."""
    outcomes = {}
    storage = world.instance.event_log_storage
    for check in world.graph.get(key).check_keys:
        history = storage.get_asset_check_execution_history(check, limit=1)
        evaluation = history[0].evaluation if history else None
        assert evaluation is not None, f"{check.to_user_string()} never ran"
        outcomes[check.name] = "Succeeded" if evaluation.passed else "Failed"
    return outcomes


def metadata_row(browser: WebDriver, label: str):
    """The row of an asset's or a check's metadata table whose key is `label`."""
    rows = browser.find_elements(By.XPATH, f"//tr[td[1][normalize-space(.)='{label}']]")
    return rows[0] if rows and rows[0].is_displayed() else None


def show_markdown(browser: WebDriver, label: str):
    """Open the markdown of metadata entry `label` (the UI shows it behind [Show Markdown])
    and return the dialog it renders in."""
    wait_for(browser, lambda d: metadata_row(d, label), f"the metadata entry {label!r}")
    link = f"//tr[td[1][normalize-space(.)='{label}']]//a[normalize-space(.)='[Show Markdown]']"
    click(browser, (By.XPATH, link), f"[Show Markdown] of {label!r}")
    return wait_for(
        browser,
        lambda d: [x for x in d.find_elements(By.CSS_SELECTOR, "[role=dialog]") if label in x.text],
        f"the markdown of {label!r}",
    )[0]


def close_dialog(browser: WebDriver) -> None:
    browser.find_element(
        By.XPATH, "//div[@role='dialog']//button[normalize-space()='Close']"
    ).click()
    wait_for(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, "[role=dialog]"), "no dialog")


def test_the_asset_graph_shows_every_group(world, browser, tmp_path):
    graph = world.graph
    groups = {graph.get(key).group_name for key in graph.get_all_asset_keys()}
    materializable = len(graph.materializable_asset_keys)
    assert {"raw", "staging", "snapshots", "marts", "analytics"} <= groups
    with evidence_on_failure(browser, tmp_path, "asset_graph"):
        browser.get(f"{world.ui.url}/asset-groups")

        # The global lineage draws each group as one node: an SVG foreignObject named after it.
        def group_nodes(d: WebDriver) -> set[str]:
            return {e.text.strip() for e in d.find_elements(By.CSS_SELECTOR, "svg foreignObject")}

        wait_for(
            browser, lambda d: group_nodes(d) >= groups, f"a node for each of {sorted(groups)}"
        )
        assert group_nodes(browser) == groups
        button = wait_for(
            browser,
            lambda d: d.find_element(
                By.XPATH, "//button[starts-with(normalize-space(), 'Materialize all')]"
            ),
            "the Materialize all button",
        )
        assert re.search(r"\((\d+)\)", button.text).group(1) == str(materializable)


def test_a_mart_page_shows_columns_lineage_row_count_and_checks(world, browser, tmp_path):
    node = world.graph.get(MART)
    with evidence_on_failure(browser, tmp_path, "mart_page"):
        browser.get(asset_url(world, MART))
        row_count = wait_for(
            browser,
            lambda d: d.find_element(*by_text("Row count")).find_element(By.XPATH, "..").text,
            "the row count",
        )
        assert row_count.split("\n")[-1].replace(",", "") == str(world.warehouse.mart_rows)
        assert world.warehouse.mart_rows > 1  # several days: a count that could be wrong

        columns = wait_for(browser, lambda d: table_with_header(d, "Column name"), "the columns")
        shown = [(row[0], row[1]) for row in table_rows(columns)]
        assert shown == world.warehouse.mart_columns

        expected_up = {"/".join(k.path) for k in node.parent_keys}
        expected_down = {"/".join(k.path) for k in node.child_keys}
        assert (
            wait_for(browser, lambda d: linked_assets(d, "Upstream assets"), "upstream")
            == expected_up
        )
        assert linked_assets(browser, "Downstream assets") == expected_down

        outcomes = latest_outcomes(world, MART)
        assert outcomes, "the mart has checks in the Definitions"
        # Within the page, as a person does: no reload of the whole UI.
        click(browser, (By.CSS_SELECTOR, "a[href*='view=checks']"), "the Checks tab")
        wait_for(
            browser,
            lambda d: d.find_elements(*by_text(f"Checks ({len(outcomes)})")),
            "checks count",
        )
        for name, outcome in outcomes.items():
            entry = wait_for(
                browser,
                lambda d, name=name: d.find_element(
                    By.XPATH,
                    # Long names are cut in the middle on screen; the title holds the name.
                    f"//*[@title='{name}']/ancestor::*"
                    "[contains(., 'Succeeded') or contains(., 'Failed')][1]",
                ),
                f"the check {name}",
            )
            assert entry.text.split("\n")[-1] == outcome, (name, entry.text)


def test_a_failed_check_shows_its_failure_cases(world, browser, tmp_path):
    assert latest_outcomes(world, EVENTS)[FAILING_CHECK.name] == "Failed"
    expected = [[event_type, str(n)] for event_type, n in world.warehouse.unknown_event_types]
    assert expected, "the simulation landed events of unknown types"
    with evidence_on_failure(browser, tmp_path, "failed_check"):
        browser.get(asset_url(world, EVENTS, f"?view=checks&checkDetail={FAILING_CHECK.name}"))
        result = wait_for(
            browser,
            lambda d: (
                d.find_element(*by_text("Evaluation result")).find_element(By.XPATH, "..").text
            ),
            "the evaluation result",
        )
        assert result.split("\n")[-1] == "Failed"
        dialog = show_markdown(browser, "top_offenders")
        table = dialog.find_element(By.TAG_NAME, "table")
        assert table_header(table) == ["value", "records"]
        assert table_rows(table) == expected
        close_dialog(browser)


@pytest.mark.parametrize("key", [REVENUE_CHART, SCORECARD], ids=lambda k: k.path[-1])
def test_the_charts_are_rendered(world, browser, tmp_path, key):
    with evidence_on_failure(browser, tmp_path, f"chart_{key.path[-1]}"):
        browser.get(asset_url(world, key))
        dialog = show_markdown(browser, "chart")
        image = wait_for(browser, lambda d: dialog.find_element(By.TAG_NAME, "img"), "the chart")
        assert image.get_attribute("src").startswith("data:image/png;base64,")
        width, height = wait_for(
            browser,
            lambda d: all(image_size(d, image)) and image_size(d, image),
            "the decoded chart",
        )
        assert width > 100 and height > 100
        close_dialog(browser)
        if key == REVENUE_CHART:
            days = metadata_row(browser, "days").find_elements(By.TAG_NAME, "td")[-1].text
            assert days == str(world.warehouse.mart_rows)
        else:
            # A short markdown table is rendered in place, a long one behind [Show Markdown].
            row = metadata_row(browser, "scorecard")
            inline = row.find_elements(By.TAG_NAME, "table")
            if inline:
                table = inline[0]
            else:  # the dialog holds the table (since every layer's tables are in it: 24 rows)
                dialog = show_markdown(browser, "scorecard")
                table = wait_for(
                    browser, lambda d: dialog.find_element(By.TAG_NAME, "table"), "table"
                )
            shown = [cells[0] for cells in table_rows(table)]
            assert shown == world.warehouse.scorecard_tables
            assert shown, "the scorecard has rows"


def test_a_run_started_from_the_ui_succeeds(world, browser, tmp_path):
    before = {run.run_id for run in world.instance.get_runs()}
    with evidence_on_failure(browser, tmp_path, "run_from_ui"):
        browser.get(asset_url(world, REVENUE_CHART))
        # Clicked once the page has loaded the asset (its latest materialization shows).
        wait_for(browser, lambda d: d.find_elements(*by_text("Latest materialization")), "status")
        materialize = (By.XPATH, "//button[normalize-space()='Materialize']")
        click(browser, materialize, "the Materialize button")

        # The toast "Launched run 1a2b3c4d" links the new run (other links on the page lead
        # to the runs that built the asset before).
        def launched(d: WebDriver) -> tuple[str, str] | None:
            for label in d.find_elements(*by_text_prefix("Launched run")):
                # In the DOM before it shows (its text reads empty while it fades in).
                if not label.is_displayed():
                    continue
                toast = label.find_element(By.XPATH, "ancestor-or-self::*[.//a][1]")
                for a in toast.find_elements(By.CSS_SELECTOR, "a[href*='/runs/']"):
                    found = RUN_ID.search(a.get_attribute("href"))
                    if found and found.group(1) not in before:
                        return found.group(1), label.text
            return None

        run_id, toast = wait_for(browser, launched, "the toast of the launched run")
        assert f"Launched run {run_id[:8]}" in toast
        deadline = time.monotonic() + RUN_TIMEOUT
        while (run := world.instance.get_run_by_id(run_id)) is None or not run.is_finished:
            assert time.monotonic() < deadline, f"run {run_id} still {run and run.status}"
            time.sleep(0.25)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.asset_selection == {REVENUE_CHART}
        materialization = world.instance.get_latest_materialization_event(REVENUE_CHART)
        assert materialization.run_id == run_id

        browser.get(f"{world.ui.url}/runs/{run_id}")
        wait_for(
            browser, lambda d: d.find_elements(*by_text("Success")), "the run shown as Success"
        )
