"""Pandera models as blocking asset checks: validate what the run wrote, report what broke.

The gate reads only the model's columns for only the run's partitions straight from DuckDB,
validates lazily (every failure, not the first) and puts the counts and the first failure
cases in the check's metadata, so the UI shows which rule broke on which rows.

A window of more than BATCH_ROWS rows is read once, as a stream of batches, so memory does not
grow with the day: every rule of the models but uniqueness holds row by row, or within the
rows of one group (`models.ROW_GROUPS`: DimCustomers' one current version per user), which
the stream keeps together in one batch, so Pandera checks each batch alone;
uniqueness, which spans the window, is the same rule rendered as a GROUP BY in DuckDB (rows
whose key repeats, reported under Pandera's rule names). The stream carries a flag on those
rows, so each failing row is counted once whatever rules it breaks.
"""

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import dagster as dg
import duckdb

from data_platform.checks.report import markdown_table
from data_platform.checks.scope import (
    WHOLE_TABLE,
    DayVerdict,
    Window,
    day_verdicts,
    run_days,
    run_start,
    run_window,
)
from data_platform.checks.thresholds import QualityThresholds
from data_platform.partitions import DAILY_PARTITIONS, WAREHOUSE_POOL
from data_platform.resources.warehouse import Warehouse

if TYPE_CHECKING:  # Pandera, pandas and pyarrow load when a gate first runs
    import pandas as pd
    import pandera.pandas as pa
    import pyarrow

PANDERA_CASE_COLUMNS = ["schema_context", "column", "check", "failure_case", "index"]
# A case names its row by the row's key (`row`): the frame's index said nothing to a person
# (a batch's position, and a Spark row has none).
SHOWN_CASE_COLUMNS = ["rule", "column", "failure_case", "row"]


@dataclass(frozen=True)
class Gate:
    """One Pandera model applied to one warehouse table, or to a query that extends it."""

    asset_key: dg.AssetKey
    model: str  # a DataFrameModel of checks/models.py, imported only when a gate runs
    table: str
    query: str | None = None
    partitioned: bool = False
    # A verdict per day of the run (partitioned: the check's spec has daily partitions), each
    # day judged as a run of that day alone would judge it: a bad day of a range stays failed
    # until a run of that day passes. The raw files' gates and the partitioned facts'.
    per_day: bool = False
    where: str = "TRUE"
    name: str = "pandera_schema"
    additional_deps: tuple[dg.AssetKey, ...] = ()

    def __post_init__(self) -> None:
        if self.per_day and not self.partitioned:
            raise ValueError(f"{self.table}: a gate judged per day judges the run's days only")

    @property
    def model_class(self) -> "type[pa.DataFrameModel]":
        from data_platform.checks import models

        return getattr(models, self.model)

    @property
    def relation(self) -> str:
        return f"({self.query}) AS checked" if self.query else self.table


@dataclass(frozen=True)
class Outcome:
    rows: int
    failing_rows: int
    failing_checks: "pd.DataFrame"  # rule, failing_rows, failure_cases
    cases: "pd.DataFrame"

    @property
    def passed(self) -> bool:
        return self.failing_checks.empty


def passing(rows: int) -> Outcome:
    """The outcome of `rows` rows that break no rule (a day without a row passes too: a day
    emptied by a re-run loses its old failure)."""
    import pandas as pd

    return Outcome(
        rows=rows,
        failing_rows=0,
        failing_checks=pd.DataFrame(columns=["rule", "failing_rows", "failure_cases"]),
        cases=pd.DataFrame(columns=SHOWN_CASE_COLUMNS),
    )


def arrow_frame(table: "pyarrow.Table") -> "pd.DataFrame":
    """Arrow rows as pandas with Arrow-backed strings (no Python object per value), which makes
    checking a million rows ~10x faster than `.df()`. DECIMAL becomes float64."""
    import pandas as pd
    import pyarrow
    import pyarrow.compute as pc

    arrow_strings = {
        pyarrow.string(): pd.StringDtype("pyarrow"),
        pyarrow.large_string(): pd.StringDtype("pyarrow"),
        pyarrow.string_view(): pd.StringDtype("pyarrow"),
    }
    for i, field in enumerate(table.schema):
        if pyarrow.types.is_decimal(field.type):
            table = table.set_column(i, field.name, pc.cast(table[i], pyarrow.float64()))
    return table.to_pandas(types_mapper=arrow_strings.get, date_as_object=False)


def fetch_frame(conn: duckdb.DuckDBPyConnection, sql: str, params: list) -> "pd.DataFrame":
    return arrow_frame(conn.sql(sql, params=params).to_arrow_table())


def row_key(model: "type[pa.DataFrameModel] | pa.DataFrameSchema") -> list[str]:
    """The columns that tell a person which row a case is: the model's first uniqueness (a
    file and line, an id and version, a fact's id). A model of the run's versions declares
    none (the whole log's model judges it): its rows are named by their version."""
    rules = uniqueness_rules(model)
    if rules:
        return rules[0][1]
    schema = model.to_schema() if isinstance(model, type) else model
    return [c for c in ("id", "updated_at") if c in schema.columns]


def named_rows(frame: "pd.DataFrame", index: "pd.Series", key: list[str]) -> "pd.Series":
    """`key=value, ...` of the frame's rows at `index` (None where a case has no row)."""
    import pandas as pd

    def named(position: object) -> str | None:
        if not key or pd.isna(position):  # a case without a row (a wrong dtype)
            return None
        row = frame.loc[int(position)]
        return ", ".join(f"{c}={'NULL' if pd.isna(row[c]) else row[c]}" for c in key)

    return index.map(named)


def validate(
    model: "type[pa.DataFrameModel] | pa.DataFrameSchema",
    frame: "pd.DataFrame",
    shown: int,
    flagged: "pd.Series | None" = None,
    key: list[str] | None = None,
) -> Outcome:
    """Every failure of `frame` against `model`, summarised per rule.

    Pandera reports a failed row of a whole-frame rule once per column; a rule is named
    `column: check` for column rules and by its own name for whole-frame rules, and counted
    in distinct failing rows (cases without a row, e.g. a wrong dtype, count as cases only).
    `flagged` marks rows found failing elsewhere (a uniqueness checked over the window), which
    count among the failing rows. A shown case names its row by `key` (the model's `row_key`
    unless given: a model stripped of its uniqueness has none).
    """
    import pandas as pd
    import pandera.pandas as pa

    try:
        model.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
    else:
        cases = pd.DataFrame(columns=PANDERA_CASE_COLUMNS)
    cases = cases.assign(
        rule=(cases["column"].astype(str) + ": " + cases["check"].astype(str)).where(
            cases["schema_context"] == "Column", cases["check"].astype(str)
        )
    )
    rules = cases.groupby("rule").agg(
        failing_rows=("index", "nunique"), failure_cases=("check", "size")
    )
    failing = cases["index"].dropna().astype("int64")
    shown_cases = cases.drop_duplicates(["rule", "index"]).head(shown)
    shown_cases = shown_cases.assign(
        row=named_rows(frame, shown_cases["index"], row_key(model) if key is None else key)
    )
    if flagged is not None:
        failing = pd.concat([failing, pd.Series(frame.index[flagged.to_numpy()], dtype="int64")])
    return Outcome(
        rows=len(frame),
        failing_rows=int(failing.nunique()),
        failing_checks=rules.reset_index(),
        cases=shown_cases[SHOWN_CASE_COLUMNS],
    )


BATCH_ROWS = 200_000
# DuckDB keeps every block a scan reads until its memory_limit is full, so the gate's stream
# held the warehouse's whole limit on top of the batches in Python. A scan gains nothing from
# that cache; only a uniqueness's GROUP BY needs room, and it spills past the limit. Half of
# 512MB: the gate alone on 30M rows peaked at 735 MB, not 983 MB, in the same time (noise).
GATE_MEMORY_SHARE = 0.5
DUPLICATE_COLUMN = "_gate_duplicate"


def gate_query(gate: Gate, window: Window) -> tuple[str, list]:
    """SELECT exactly the model's columns of the window's rows."""
    columns = ", ".join(f'"{name}"' for name in gate.model_class.to_schema().columns)
    predicate, params = window.where("dt")
    return f"SELECT {columns} FROM {gate.relation} WHERE ({gate.where}) AND {predicate}", params


def uniqueness_rules(
    model: "type[pa.DataFrameModel] | pa.DataFrameSchema",
) -> list[tuple[str, list[str]]]:
    """(the rule's name as Pandera reports it, its key) for every uniqueness the model declares."""
    schema = model.to_schema() if isinstance(model, type) else model
    rules = [
        (f"{name}: field_uniqueness", [name])
        for name, column in schema.columns.items()
        if column.unique
    ]
    if schema.unique:
        rules.append(("multiple_fields_uniqueness", list(schema.unique)))
    return rules


def row_rules(model: "type[pa.DataFrameModel]") -> "pa.DataFrameSchema":
    """The model without its uniqueness: what is left holds row by row, batch by batch."""
    schema = model.to_schema()
    unique = {name: {"unique": False} for name, column in schema.columns.items() if column.unique}
    rows = schema.update_columns(unique)  # a copy: the model's own schema is cached
    rows.unique = None
    return rows


def _duplicate_keys_sql(sql: str, key: list[str]) -> str:
    """The keys that repeat in the window. A single column's NULLs repeat nothing (Pandera's
    field_uniqueness skips them); in a key of several columns NULLs are equal, as in pandas."""
    columns = ", ".join(f'"{c}"' for c in key)
    nulls = f'"{key[0]}" IS NOT NULL' if len(key) == 1 else "TRUE"
    return (
        f"SELECT {columns}, count(*) AS _rows FROM ({sql}) WHERE {nulls} "
        f"GROUP BY ALL HAVING count(*) > 1"
    )


def _key_match(key: list[str], alias: str) -> str:
    return " AND ".join(f'checked."{c}" IS NOT DISTINCT FROM {alias}."{c}"' for c in key)


def combine(outcomes: list[Outcome], shown: int) -> Outcome:
    """One outcome of the parts: rows and failing rows add up, rules sum per rule."""
    import pandas as pd

    rules = pd.concat([o.failing_checks for o in outcomes])
    if not rules.empty:
        rules = rules.groupby("rule", as_index=False)[["failing_rows", "failure_cases"]].sum()
    return Outcome(
        rows=sum(o.rows for o in outcomes),
        failing_rows=sum(o.failing_rows for o in outcomes),
        failing_checks=rules,
        cases=pd.concat([o.cases for o in outcomes]).head(shown),
    )


def validate_window(
    conn: duckdb.DuckDBPyConnection, gate: Gate, window: Window, shown: int
) -> Outcome:
    """Validate the window's rows: whole when they fit in a batch, else streamed batch by batch
    with uniqueness in SQL, so that no more than BATCH_ROWS rows are in Python at once."""
    import pandas as pd

    model = gate.model_class
    sql, params = gate_query(gate, window)
    [(rows,)] = conn.execute(f"SELECT count(*) FROM ({sql})", params).fetchall()
    if rows <= BATCH_ROWS:
        return validate(model, fetch_frame(conn, sql, params), shown)
    outcomes, flags = [], []
    for i, (rule, key) in enumerate(uniqueness_rules(model)):
        conn.execute(
            f"CREATE OR REPLACE TEMP TABLE _gate_duplicates_{i} AS {_duplicate_keys_sql(sql, key)}",
            params,
        )
        [(failing, cases)] = conn.execute(
            f'SELECT coalesce(sum(_rows), 0), list("{key[0]}"::VARCHAR)[:{shown}] '
            f"FROM _gate_duplicates_{i}"
        ).fetchall()
        if failing:
            failing_checks = pd.DataFrame(
                {"rule": [rule], "failing_rows": [failing], "failure_cases": [failing * len(key)]}
            )
            shown_cases = pd.DataFrame(
                {"rule": rule, "column": key[0], "failure_case": cases, "row": None}
            )
            outcomes.append(Outcome(0, 0, failing_checks, shown_cases))
        flags.append(f"EXISTS (SELECT 1 FROM _gate_duplicates_{i} d WHERE {_key_match(key, 'd')})")
    flag = " OR ".join(flags) or "FALSE"
    from data_platform.checks.models import ROW_GROUPS

    group_key = ROW_GROUPS.get(gate.model, [])
    order = " ORDER BY " + ", ".join(f'"{c}"' for c in group_key) if group_key else ""
    stream = conn.sql(
        f"SELECT *, {flag} AS {DUPLICATE_COLUMN} FROM ({sql}) AS checked{order}", params=params
    ).to_arrow_reader(BATCH_ROWS)
    schema = row_rules(model)
    with _collect_only_new_objects():
        for batch in whole_groups(stream, group_key):
            outcomes.append(_validate_batch(schema, batch, shown, row_key(model)))
            # pandas caches an accessor on its object (`df.pandera`, `s.str`) that points back
            # to it: each validated batch is a reference cycle, freed only by a full
            # collection, which a process the size of a run seldom makes (a 10M-row window
            # piled up ~600 MB of dead batches). Freed here, one batch at a time.
            gc.collect()
    return combine(outcomes, shown)


def days_where(gate: Gate, window: Window) -> tuple[str, list[date]]:
    """The predicate (and its parameters) of the rows a gate judged per day looks at: the
    window's, of a day. A row without a dt is of no day, and no run's window holds it (the
    ingestion always writes it: it is the partition); only a gate launched alone would see it."""
    predicate, params = window.where("dt")
    return f"({gate.where}) AND {predicate} AND dt IS NOT NULL", params


def validate_days(
    conn: duckdb.DuckDBPyConnection, gate: Gate, window: Window, shown: int
) -> dict[date, Outcome]:
    """Each day of the window that holds rows, with the verdict a run of that day alone gives,
    whatever range the run covers.

    The window is validated whole first, as one verdict was: every rule of the models is a
    row's own or a key's uniqueness, so a window that passes passes on each of its days, which
    then cost one count. Only a window that fails is validated again day by day
    (`validate_window` of each), to tell its bad days: one Pandera call and two queries per day,
    about 30 ms a day (measured: a year of 50,000 events a day, 20 s against 14 s whole; of
    5,000 a day, 12.8-16.7 s against 2.7-4.5 s). A day over BATCH_ROWS is streamed as a window
    is."""
    where, params = days_where(gate, window)
    counts = conn.execute(
        f"SELECT dt, count(*) FROM {gate.relation} WHERE {where} GROUP BY dt ORDER BY dt", params
    ).fetchall()
    if validate_window(conn, gate, window, shown).passed:
        return {day: passing(rows) for day, rows in counts}
    outcomes = {}
    with _collect_only_new_objects():
        for day, _ in counts:
            outcomes[day] = validate_window(conn, gate, Window(day, day), shown)
            gc.collect()  # each day's frames are reference cycles too (see validate_window)
    return outcomes


def whole_groups(
    batches: "Iterator[pyarrow.RecordBatch]", key: list[str]
) -> "Iterator[pyarrow.Table]":
    """The stream's rows again, batch by batch, but a group of rows with one `key` (the stream
    sorted by it) never split between two: the last group of a batch waits for the next."""
    import pyarrow
    import pyarrow.compute as pc

    held = None
    for batch in batches:
        table = pyarrow.Table.from_batches([batch])
        if held is not None:
            table = pyarrow.concat_tables([held, table])
        if not key:
            yield table
            continue
        last = [table[c][-1] for c in key]
        same = [
            pc.is_null(table[c])
            if not value.is_valid
            else pc.fill_null(pc.equal(table[c], value), False)
            for c, value in zip(key, last, strict=True)
        ]
        in_last_group = pc.sum(pc.and_(*same) if len(same) > 1 else same[0]).as_py()
        complete = len(table) - in_last_group
        if complete:
            yield table.slice(0, complete)
        held = table.slice(complete)
    if held is not None and len(held):
        yield held


def _validate_batch(
    schema: "pa.DataFrameSchema", table: "pyarrow.Table", shown: int, key: list[str]
) -> Outcome:
    frame = arrow_frame(table)
    flagged = frame.pop(DUPLICATE_COLUMN)
    return validate(schema, frame, shown, flagged, key)


@contextmanager
def _collect_only_new_objects() -> Iterator[None]:
    """Full collections that skip what the process held before (Dagster's own objects): one
    takes ~2 ms instead of ~200 ms, which after every batch would slow the gate down 3x.
    Within another (a streamed day of `validate_days`) it leaves the outer freeze alone: an
    inner unfreeze would give the outer loop's collections the whole process back."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def extracted_versions_gate(gate: Gate, extracted_since: datetime | None) -> Gate | None:
    """The gate of `gate`'s rules judged on the run's versions only (models.EXTRACTED_VERSION_RULES),
    or None: the versions extracted since `extracted_since` (the start of the run that
    materialized the table: none when its extraction added none), or, without it (a check
    launched alone), those of the latest extraction."""
    from data_platform.checks.models import EXTRACTED_VERSION_RULES

    model = EXTRACTED_VERSION_RULES.get(gate.model)
    if model is None:
        return None
    since = f"(SELECT max(_extracted_at) FROM {gate.table})"
    if extracted_since is not None:
        since = f"TIMESTAMP '{extracted_since:%Y-%m-%d %H:%M:%S.%f}'"
    return replace(gate, model=model, where=f"({gate.where}) AND _extracted_at >= {since}")


def _extracted_in_run(context: dg.AssetCheckExecutionContext, key: dg.AssetKey) -> bool:
    """Whether the check's own run materialized `key` (its extraction ran just before)."""
    latest = context.instance.get_latest_materialization_event(key)
    return latest is not None and latest.run_id == context.run.run_id


def with_extracted(whole: Outcome, extracted: Outcome, shown: int) -> Outcome:
    """The whole table's outcome and that of the run's versions: its rows are among the whole's."""
    return replace(combine([whole, extracted], shown), rows=whole.rows)


def outcome_verdict(
    gate: Gate, outcome: Outcome, scope: str, seconds: float, extra: dict | None = None
) -> DayVerdict:
    """The outcome of `scope` (the run's partitions, or one day) as a verdict: its figures,
    and on failure the broken rules, the first failure cases and one line saying so."""
    metadata = {
        "rows_validated": outcome.rows,
        "failing_rows": outcome.failing_rows,
        "partitions": scope,
        "validation_seconds": round(seconds, 3),
        **(extra or {}),
    }
    if not outcome.passed:
        metadata["failing_checks"] = dg.MetadataValue.md(markdown_table(outcome.failing_checks))
        metadata["failure_cases"] = dg.MetadataValue.md(markdown_table(outcome.cases))
    return DayVerdict(
        passed=outcome.passed,
        metadata=metadata,
        description=None
        if outcome.passed
        else f"{outcome.failing_rows} of {outcome.rows} rows break "
        f"{len(outcome.failing_checks)} rule(s) of {gate.model} ({scope})",
    )


def outcome_result(
    gate: Gate, outcome: Outcome, scope: str, seconds: float, extra: dict | None = None
) -> dg.AssetCheckResult:
    verdict = outcome_verdict(gate, outcome, scope, seconds, extra)
    return dg.AssetCheckResult(
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=dict(verdict.metadata),
        description=verdict.description,
    )


def _validated(
    warehouse: Warehouse, jobs: list[tuple[Gate, Window]], shown: int, per_day: bool = False
) -> list[Any]:
    """Each (gate, window)'s Outcome on the warehouse's engine; `per_day`: its Outcome per day
    holding rows ({day: Outcome})."""
    if warehouse.engine == "spark":
        # Imported here: spark_gate builds on this module's types.
        from data_platform.checks.spark_gate import validate_spark_days, validate_spark_window

        on_spark = validate_spark_days if per_day else validate_spark_window
        with warehouse.spark() as spark:
            return [on_spark(spark, g, w, shown) for g, w in jobs]
    on_duckdb = validate_days if per_day else validate_window
    with warehouse.connect(memory_share=GATE_MEMORY_SHARE) as conn:
        return [on_duckdb(conn, g, w, shown) for g, w in jobs]


def day_outcome_verdicts(
    warehouse: Warehouse, gate: Gate, window: Window, shown: int
) -> dict[date, DayVerdict]:
    """A verdict per day of the run (`run_days`: a day without a row passes). Its
    `validation_seconds` are the run's, all days together: the days are judged in one go."""
    started = time.perf_counter()
    [outcomes] = _validated(warehouse, [(gate, window)], shown, per_day=True)
    seconds = time.perf_counter() - started
    return {
        day: outcome_verdict(gate, outcomes.get(day) or passing(0), day.isoformat(), seconds)
        for day in run_days(window, outcomes)
    }


def pandera_check(gate: Gate, thresholds: QualityThresholds) -> dg.AssetChecksDefinition:
    """A blocking ERROR check: downstream steps of the run do not start when it fails. A gate
    `per_day` records a verdict per day of the run (checks/scope.day_verdicts)."""
    key = dg.AssetCheckKey(gate.asset_key, gate.name)

    @dg.asset_check(
        asset=key.asset_key,
        name=key.name,
        blocking=True,
        pool=WAREHOUSE_POOL,
        additional_deps=list(gate.additional_deps),
        partitions_def=DAILY_PARTITIONS if gate.per_day else None,
        description=f"Pandera {gate.model} on {gate.table}"
        + (" (the run's partitions)" if gate.partitioned else "")
        + (", a verdict per day" if gate.per_day else ""),
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: Warehouse):
        window = run_window(context) if gate.partitioned else WHOLE_TABLE
        shown = thresholds.failure_cases_shown
        if gate.per_day:
            verdicts = day_outcome_verdicts(warehouse, gate, window, shown)
            return day_verdicts(context, key, verdicts)
        started = time.perf_counter()
        in_run = _extracted_in_run(context, gate.asset_key)
        extracted = extracted_versions_gate(gate, run_start(context) if in_run else None)
        gates = [(gate, window)] + ([(extracted, WHOLE_TABLE)] if extracted else [])
        outcomes = _validated(warehouse, gates, shown)
        outcome, extra = outcomes[0], {}
        if extracted:
            outcome = with_extracted(outcome, outcomes[1], shown)
            extra["versions_extracted_checked"] = outcomes[1].rows
        seconds = time.perf_counter() - started
        return outcome_result(gate, outcome, window.describe(), seconds, extra)

    return _check
