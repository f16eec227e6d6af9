"""dbt models as assets: staging, snapshots (SCD2 history) and marts; dbt tests become checks.

The incremental facts tagged `partitioned` get the run's partition window (a backfill of N days
is one dbt invocation), and the staging views they read are tagged with them (re-created as
they are: a view holds no rows); every other model is rebuilt whole.

Every test of a model is an asset check, run by the step that owns it: the generic tests of a
model, and the singular tests (dbt/tests/) on the model their `meta.dagster.ref` names (a test
run by another step is only logged, as an observation, with a warning). The sources (the raw
tables) have no dbt tests: their rules are their assets' Pandera gates (see TRANSLATOR).
"""

import os
import re
import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliInvocation,
    DbtCliResource,
    dbt_assets,
)
from dagster_dbt.asset_utils import DAGSTER_DBT_UNIQUE_ID_METADATA_KEY as DBT_UNIQUE_ID
from dagster_dbt.asset_utils import default_description_fn
from dagster_dbt.dbt_manifest import validate_manifest
from dagster_dbt.utils import select_unique_ids

from data_platform.assets.dbt_metadata import BuiltModelMetadata
from data_platform.assets.dbt_project import DBT_PROJECT, dbt_vars
from data_platform.automation.conditions import dbt_model_condition
from data_platform.partitions import DAILY_PARTITIONS, OWNERS, SINGLE_RUN_BACKFILL, WAREHOUSE_POOL
from data_platform.resources.privacy import Privacy, dbt_secret_variables
from data_platform.resources.warehouse import Warehouse
from data_platform.settings import SPARK_RETRY_SECONDS_VARIABLE

PARTITIONED_MODELS = "tag:partitioned"
# A dbt process killed by SIGKILL (the OOM killer, kill -9) while its step's process lives on is
# a crash, not a model's failure: the step is retried in its run, this many times at most (as
# the run retries a crashed run process: dagster.yaml `run_retries.max_retries`). A run that
# failed on it was never retried (`retry_on_asset_or_op_failure: false`), and the automation
# had already counted the request as handled: the models' new inputs stayed out of them until
# the next change upstream (the 2026-12-07 chaos review: marts.fct_order_items 407 rows behind).
DBT_CRASH_RETRIES = 2


def model_schema(props: Mapping[str, Any]) -> str:
    return props["config"].get("schema") or props["schema"]


class DataPlatformTranslator(DagsterDbtTranslator):
    """Asset key = [warehouse schema, table], so dbt sources (one per source system, all in
    the raw schema) meet the raw assets by key."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])
        return dg.AssetKey([model_schema(dbt_resource_props), dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str:
        return model_schema(dbt_resource_props)

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        return OWNERS

    def get_automation_condition(self, dbt_resource_props: Mapping[str, Any]):
        return dbt_model_condition(dbt_resource_props)

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        # dagster-dbt appends the model's SQL, which the catalog then shows as its description;
        # the SQL stays on the asset's definition tab (the code reference).
        return default_description_fn(dbt_resource_props, display_raw_sql=False)

    def get_asset_check_spec(
        self,
        asset_spec: dg.AssetSpec,
        manifest: Mapping[str, Any],
        unique_id: str,
        project: Any,
    ) -> dg.AssetCheckSpec | None:
        """dagster-dbt describes a test only by its `meta.description`: 103 of the checks read
        "No description provided" in the UI. A test without one is described by what it tests."""
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or spec.description:
            return spec
        return spec._replace(description=dbt_test_description(manifest["nodes"][unique_id]))


def dbt_test_description(test: Mapping[str, Any]) -> str:
    """What a dbt test asserts, from its own description or its name and arguments, and what
    its failure does: `not_null` of `revenue`, or `accepted_range` of `revenue` (min_value 0)."""
    blocking = (test.get("config", {}).get("severity") or "error").lower() == "error"
    effect = (
        "severity error: a failure stops what reads the model"
        if blocking
        else "severity warn: a failure is reported, nothing stops"
    )
    if test.get("description"):
        return f"{test['description']} ({effect})"
    generic = test.get("test_metadata") or {}
    if not generic:  # a singular test: a query whose rows are the failures
        return f"dbt test `{test['name']}`: no row of its query may exist; {effect}"
    kwargs = dict(generic.get("kwargs", {}))
    column = kwargs.pop("column_name", None)
    kwargs.pop("model", None)
    arguments = ", ".join(
        f"{name} {readable_argument(value)}" for name, value in sorted(kwargs.items())
    )
    name = ".".join(filter(None, (generic.get("namespace"), generic["name"])))
    subject = f" of `{column}`" if column else ""
    return f"dbt test `{name}`{subject}{f' ({arguments})' if arguments else ''}; {effect}"


JINJA_EXPRESSION = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.DOTALL)
DBT_VAR = re.compile(r"""var\(\s*['"](\w+)['"]\s*\)""")


def readable_argument(value: Any) -> str:
    """A test's argument as the test sees it: the manifest keeps the YAML's Jinja unrendered
    (`{{ var('known_event_types') }}`), which the UI showed verbatim. A var becomes its value
    from dbt_project.yml; any other expression (a macro call) is shown without its braces."""
    if isinstance(value, list):
        return "[" + ", ".join(readable_argument(item) for item in value) + "]"

    def rendered(match: re.Match) -> str:
        var = DBT_VAR.fullmatch(match.group(1))
        return readable_argument(dbt_vars()[var.group(1)]) if var else match.group(1)

    return JINJA_EXPRESSION.sub(rendered, str(value))


# Views are virtual assets: automation looks through them to the tables they read.
# Not `enable_source_tests_as_checks` (should a source get dbt tests): they would become checks
# of its raw table owned by the dbt step reading it, and Dagster exempts a step holding checks of an input from
# waiting on that input's blocking checks: the dbt steps no longer waited for the raw gates
# (Pandera, conservation, dead letters), and ran on a raw table they had failed
# (test_quality_checks' test_a_failing_gate_blocks_the_downstream_steps_of_its_run).
TRANSLATOR = DataPlatformTranslator(
    settings=DagsterDbtTranslatorSettings(enable_dbt_views_as_virtual_assets=True)
)


# dbt's choice of the tests to run with the models selected (see dbt_environment).
INDIRECT_SELECTION = "buildable"
# dbt.log in dbt's own debug text, as a plain `dbt build` writes it. dagster-dbt's
# DBT_LOG_FORMAT=json (it parses dbt's stdout) also made the file JSON lines: 2.2 MB a core
# layer's build for 0.4 MB of text, and formatting its ~2,000 debug events as JSON cost dbt's
# process ~0.19 CPU-s more (0.36 s against 0.17 s), within the ~1.15 s a step spends beyond
# a plain dbt build. The file keeps every event's message, the one dagster-dbt's errors point to.
FILE_LOG_ARGS = ["--log-format-file", "debug"]
WINDOW_VARIABLES = ("DATA_PLATFORM_MIN_DT", "DATA_PLATFORM_MAX_DT")
# Empty bounds: the partitioned models (when selected) are built whole.
NO_WINDOW = dict.fromkeys(WINDOW_VARIABLES, "")


def partition_window_env(context: dg.AssetExecutionContext) -> dict[str, str]:
    """The run's window for macros/partition_window.sql. Environment variables, not dbt vars:
    a change of vars makes dbt re-parse the whole project (13 CPU-s here, and twice a daily
    run, since the layers around the facts run without them); these are read at execution."""
    keys = context.partition_key_range
    return dict(zip(WINDOW_VARIABLES, (keys.start, keys.end), strict=True))


def engine_variables(warehouse: Warehouse) -> dict[str, str]:
    """What profiles.yml's target for the warehouse's engine reads (see dbt/profiles.yml): the
    run's warehouse (`require_run_pin`), which dbt then writes through its own adapter."""
    warehouse.require_run_pin()
    if warehouse.engine != "spark":
        return {"DBT_TARGET": "dev", "DATA_PLATFORM_WAREHOUSE": warehouse.path}
    # The cluster's endpoint keeps its own warehouse folder and metastore; the profile's
    # folders (required, for a local session) are never used beside SPARK_REMOTE.
    unused = str(Path(warehouse.path).parent / "spark-session-unused")
    return {
        "DBT_TARGET": "spark",
        "DATA_PLATFORM_DBT_SPARK_METHOD": "session",
        "SPARK_REMOTE": warehouse.session_remote(),
        SPARK_RETRY_SECONDS_VARIABLE: str(warehouse.spark_retry_seconds),
        "DATA_PLATFORM_SPARK_WAREHOUSE_DIR": unused,
        "DATA_PLATFORM_SPARK_METASTORE_DIR": unused,
    }


@contextmanager
def dbt_environment(
    warehouse: Warehouse, privacy: Privacy, window: Mapping[str, str] = NO_WINDOW
) -> Iterator[None]:
    """The variables profiles.yml and the models read, set for one dbt invocation only; the
    salt's spellings as dbt secrets too, which dbt shows as "*****" in what it logs and keeps."""
    salt = privacy.salt()
    values = {
        **window,
        **engine_variables(warehouse),
        "DATA_PLATFORM_PII_SALT": salt,
        **dbt_secret_variables(salt),
        # dbt's default (eager) also runs tests of models that are not selected, e.g. the
        # relationship test of fct_events when only dim_customers is built, and fails when the
        # fact does not exist yet: run a test only once all its parents are built or selected.
        "DBT_INDIRECT_SELECTION": INDIRECT_SELECTION,
    }
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def target_path(warehouse: Warehouse) -> Path:
    """One dbt target folder per warehouse, beside its file and kept between runs, so dbt
    parses incrementally.

    dagster-dbt's default, a new folder per invocation, made dbt re-parse the whole project
    every step ("profile has changed"): ~3 s of each run. Beside the warehouse, not in the
    project's own `target/` (as it was, named by a hash of the warehouse's path): there every
    warehouse a test made left a folder of 3-7 MB in the checkout for good (19 folders, 112 MB
    in one). Steps that run dbt are serialised by the `duckdb` pool, so two invocations never
    share a folder at once.
    """
    path = Path(warehouse.path).absolute()
    return path.with_name(f"{path.name}.dbt-target")


def build(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse
) -> Iterator[Any]:
    """`dbt build`, its results as Dagster events with column metadata and row counts.

    With DuckDB, metadata can only be read once dbt has exited (it holds the file's lock), so
    the events are gathered first; a failure is raised after every event is reported.
    """
    invocation = dbt.cli(
        ["build", *FILE_LOG_ARGS, *guarding_tests_args(context)],
        context=context,
        target_path=target_path(warehouse),
    )
    events, failure = [], None
    try:
        for event in invocation.stream():
            events.append(event)
    except Exception as error:
        failure = error
    if failure is not None and killed_by_sigkill(invocation):
        context.log.warning(
            f"dbt (pid {invocation.process.pid}) was killed by SIGKILL (out of memory?): "
            f"the step is retried (attempt {context.retry_number + 1} of {DBT_CRASH_RETRIES})"
        )
        raise dg.RetryRequested(max_retries=DBT_CRASH_RETRIES, seconds_to_wait=1) from failure
    metadata = built_model_metadata(context, invocation, warehouse, events)
    for event in events:
        if isinstance(event, dg.Output) and event_unique_id(event) in metadata:
            event = event.with_metadata({**event.metadata, **metadata[event_unique_id(event)]})
        yield event
    if failure is not None:
        lost = warehouse.endpoint_lost_error(failure)
        if lost:  # dbt's output holds the rest; the step's error says what to do
            raise lost from None
        raise failure


def guarding_tests_args(context: dg.AssetExecutionContext) -> list[str]:
    """`--select` of the singular tests whose checks the step runs, by name (dagster-dbt adds
    it to its own selection), unless one reads a model of this step that the run leaves out.

    When a run selects part of a layer, dagster-dbt selects the models and leaves their tests to
    dbt's indirect selection, which skips a test reading a model of another step (the PII
    guard reads dim_customers, customer_lifetime_value, fct_orders): its check was planned and
    never judged (and the default selection of a whole layer does not hold it either). A test
    reading a model of this step that the run does not build is left to dbt: with only the
    events selected, the arrival counts would read payments that may not exist yet."""
    unique_ids = {spec.key: spec.metadata[DBT_UNIQUE_ID] for spec in context.assets_def.specs}
    left_out = set(unique_ids.values()) - {unique_ids[key] for key in context.selected_asset_keys}
    names = sorted(
        key.name
        for key in context.selected_asset_check_keys
        if key.name in GUARDING_TESTS and not GUARDING_TESTS[key.name] & left_out
    )
    return ["--select", " ".join(names)] if names else []


def killed_by_sigkill(invocation: DbtCliInvocation) -> bool:
    """dbt's process ended by SIGKILL: not by its own error, nor by the SIGINT dagster-dbt sends
    a step being canceled."""
    return invocation.process.poll() == -signal.SIGKILL


def event_unique_id(event: dg.Output) -> str:
    return event.metadata["unique_id"].value


def built_model_metadata(
    context: dg.AssetExecutionContext,
    invocation: DbtCliInvocation,
    warehouse: Warehouse,
    events: list[Any],
) -> dict[str, dict[str, Any]]:
    """Metadata of the models the run built; reading it never fails a step or hides dbt's error."""
    built = [event_unique_id(e) for e in events if isinstance(e, dg.Output)]
    if not built:
        return {}
    try:
        # The run's own manifest names relations in the database the compiled SQL uses.
        manifest = invocation.get_artifact("manifest.json")
        with warehouse.reader() as reader:
            return BuiltModelMetadata(
                manifest, TRANSLATOR, invocation.project, invocation.target_path
            ).for_models(reader, built)
    except Exception as error:
        context.log.warning(f"Column metadata and row counts not read: {error!r}")
        return {}


def guarded_model(test: Mapping[str, Any]) -> str | None:
    """The model a singular test is a check of: its `meta.dagster.ref`, as dagster-dbt reads it."""
    meta = test.get("config", {}).get("meta") or test.get("meta") or {}
    return meta.get("dagster", {}).get("ref", {}).get("name")


# The singular tests that are checks (of the model their meta names): name -> what they read.
GUARDING_TESTS = {
    test["name"]: frozenset(test["depends_on"]["nodes"])
    for test in validate_manifest(DBT_PROJECT.manifest_path)["nodes"].values()
    if test["resource_type"] == "test" and guarded_model(test)
}


def models_reading_facts() -> str:
    """The models built on the partitioned facts (and not partitioned), by name. Not as the facts'
    descendants minus the facts: a dbt exclusion takes with a model every test that reads it
    (eagerly, as dagster-dbt selects), so the reconciliation of daily_active_users with staging
    was nobody's check."""
    manifest = validate_manifest(DBT_PROJECT.manifest_path)
    selected = select_unique_ids(
        f"{PARTITIONED_MODELS}+", PARTITIONED_MODELS, "", DBT_PROJECT, manifest
    )
    return " ".join(
        sorted(manifest["nodes"][u]["name"] for u in selected if u.startswith("model."))
    )


def dbt_layer(name: str, select: str, exclude: str, partitioned: bool) -> dg.AssetsDefinition:
    """One dbt invocation per run for the models selected; partitioned ones get the window."""
    partitioning = (
        {"partitions_def": DAILY_PARTITIONS, "backfill_policy": SINGLE_RUN_BACKFILL}
        if partitioned
        else {}
    )

    @dbt_assets(
        manifest=DBT_PROJECT.manifest_path,
        project=DBT_PROJECT,
        select=select,
        exclude=exclude,
        dagster_dbt_translator=TRANSLATOR,
        pool=WAREHOUSE_POOL,
        name=name,
        **partitioning,
    )
    def models(
        context: dg.AssetExecutionContext,
        dbt: DbtCliResource,
        warehouse: Warehouse,
        privacy: Privacy,
    ):
        window = partition_window_env(context) if partitioned else NO_WINDOW
        with dbt_environment(warehouse, privacy, window):
            yield from build(context, dbt, warehouse)

    return models


# Three layers, because the partitioned facts sit between unpartitioned models (they flag
# orphans against dimensions; aggregates read them): one multi-asset on both sides of them
# would be a cycle between steps. The staging views between the raw tables and the facts are
# in the partitioned layer: Dagster's backfills drop an asset whose only path to the others
# goes through an unpartitioned one, and a backfill of the whole graph skipped the facts.
DBT_ASSETS = [
    dbt_layer("dbt_core_models", "fqn:*", f"{PARTITIONED_MODELS}+", partitioned=False),
    dbt_layer("dbt_partitioned_facts", PARTITIONED_MODELS, "", partitioned=True),
    dbt_layer("dbt_fact_aggregates", models_reading_facts(), "", partitioned=False),
]
