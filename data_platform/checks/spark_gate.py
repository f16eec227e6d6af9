"""The Pandera gates on Spark: the model's rules pushed down as SQL, only counts come back.

On DuckDB the gate (pandera_gate.py) streams the window's rows through Pandera in this process.
On Spark the rows may not fit one machine, so they stay on the cluster: spark_rules.py renders
the model's rules as SQL predicates, and one aggregate query counts, per rule, the rows that
break it and the rows that break any; a second query, only when something failed, brings back
at most `shown` failure cases per rule. What reaches Python is a few numbers and a sample, in
the DuckDB gate's own Outcome, so `pandera_gate.outcome_result` reports both engines alike.

Why not Pandera's PySpark backend (pandera.pyspark): it validates a `pandera.pyspark` model
with Spark types, so every model would be written a second time; it runs one Spark job per
check (`filter(~check).limit(1).count()`) and reports pass or fail only, without failure
counts or cases (its `failure_cases` is None), so the gate could not say how many rows broke
what; and a custom check there is PySpark code, a second copy of the pandas one.

Dtypes follow the DuckDB gate exactly: the column's Spark type is mapped to the Arrow type
DuckDB would hand over, and Pandera itself judges a two-row stand-in of that type (with and
without a missing value) through the DuckDB gate's own Arrow->pandas conversion. So a NULL in a
non-nullable BIGINT column is what Pandera says of it there (pandas holds it as float64:
`dtype('int64')` fails on the null rows), not a rule of this module's own.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from data_platform.checks.pandera_gate import (
    SHOWN_CASE_COLUMNS,
    Gate,
    Outcome,
    arrow_frame,
    days_where,
    row_key,
)
from data_platform.checks.scope import Window
from data_platform.checks.spark_rules import (
    RowRule,
    UnrenderableRule,
    is_missing,
    quote,
    render,
    sql_literal,
)

if TYPE_CHECKING:
    import pandas as pd
    import pandera.pandas as pa
    import pyarrow
    from pyspark.sql import SparkSession
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    AnySparkSession = SparkSession | ConnectSession


@dataclass(frozen=True)
class ScalarRule:
    """A rule Pandera reports as one case without a row (a wrong dtype): it fails always
    (`when` None) or when the aggregate `when` holds (e.g. the column holds a NULL)."""

    rule: str
    column: str
    failure_case: str
    when: str | None = None


def arrow_type(spark_type: str) -> pyarrow.DataType:
    """The Arrow type DuckDB hands the DuckDB gate for a column of this Spark type."""
    import pyarrow

    simple = {
        "bigint": pyarrow.int64(),
        "int": pyarrow.int32(),
        "smallint": pyarrow.int16(),
        "tinyint": pyarrow.int8(),
        "double": pyarrow.float64(),
        "float": pyarrow.float32(),
        "string": pyarrow.string(),
        "boolean": pyarrow.bool_(),
        "timestamp": pyarrow.timestamp("us"),
        "timestamp_ntz": pyarrow.timestamp("us"),
        "date": pyarrow.date32(),
    }
    if spark_type in simple:
        return simple[spark_type]
    if decimal := re.fullmatch(r"decimal\((\d+),(\d+)\)", spark_type):
        return pyarrow.decimal128(int(decimal[1]), int(decimal[2]))
    if re.fullmatch(r"(var)?char\(\d+\)", spark_type):
        return pyarrow.string()
    raise ValueError(f"no DuckDB-gate equivalent of the Spark type {spark_type}")


def _sample_value(kind: pyarrow.DataType) -> Any:
    import pyarrow

    if pyarrow.types.is_integer(kind):
        return 0
    if pyarrow.types.is_floating(kind):
        return 0.0
    if pyarrow.types.is_decimal(kind):
        return Decimal(0)
    if pyarrow.types.is_boolean(kind):
        return True
    if pyarrow.types.is_timestamp(kind):
        return dt.datetime(2026, 1, 1)
    if pyarrow.types.is_date(kind):
        return dt.date(2026, 1, 1)
    return "x"


def dtype_rules(
    schema: pa.DataFrameSchema, spark_types: dict[str, str]
) -> tuple[list[RowRule], list[ScalarRule]]:
    """The dtype rules Pandera would break on the DuckDB gate's frame of these columns.

    Two stand-in rows per column (a value twice; a value and a missing one) go through the
    DuckDB gate's Arrow->pandas path and Pandera's dtype check (nullable, no other check): a
    case on the missing row means "fails on the missing rows", a case without a row a scalar
    failure, unconditional if the plain stand-in breaks it, else only when a value is missing.
    """
    import pandas as pd
    import pandera.pandas as pa
    import pyarrow

    types = {name: arrow_type(spark_types[name]) for name in schema.columns}
    only_dtypes = pa.DataFrameSchema(
        {
            name: pa.Column(column.dtype, nullable=True, coerce=column.coerce)
            for name, column in schema.columns.items()
        }
    )

    def cases(missing: bool) -> pd.DataFrame:
        columns = {
            name: pyarrow.array([_sample_value(t), None if missing else _sample_value(t)], t)
            for name, t in types.items()
        }
        try:
            only_dtypes.validate(arrow_frame(pyarrow.table(columns)), lazy=True)
        except pa.errors.SchemaErrors as err:
            return err.failure_cases
        return pd.DataFrame(columns=["column", "check", "failure_case", "index"])

    plain, with_missing = cases(missing=False), cases(missing=True)
    rows: list[RowRule] = []
    scalars: list[ScalarRule] = []
    for name in schema.columns:
        missing = is_missing(name, spark_types[name])
        always = plain[plain["column"] == name]
        sometimes = with_missing[with_missing["column"] == name]
        for found, when in ((always, None), (sometimes, f"count_if({missing}) > 0")):
            if found.empty:
                continue
            check = str(found["check"].iloc[0])
            on_rows = set(found["index"].dropna().astype(int))
            if not on_rows:
                failure = str(found["failure_case"].iloc[0])
                scalars.append(ScalarRule(f"{name}: {check}", name, failure, when))
            elif when is not None and on_rows == {1}:
                rows.append(RowRule(f"{name}: {check}", name, missing, "NULL"))
            else:
                raise UnrenderableRule(
                    schema.name or "schema", [f"{name}: {check} on a {spark_types[name]} column"]
                )
            break
    return rows, scalars


def _row_sql(key: list[str]) -> str:
    """`key=value, ...` naming a row, as the DuckDB gate's `named_rows` writes it."""
    if not key:
        return "CAST(NULL AS STRING)"
    named = (f"'{c}=', coalesce(CAST({quote(c)} AS STRING), 'NULL')" for c in key)
    return "concat(" + ", ', ', ".join(named) + ")"


def _samples_sql(failing: list[RowRule], shown: int, key: list[str], group: str) -> str:
    """At most `shown` failure cases of each failing rule in each group (`group`, a STRING
    expression), in one pass over the judged rows: the failing rows' cases exploded, numbered
    per group and rule, cut at `shown` (Spark limits each rule's rows before the shuffle, so a
    table of failures never crosses the network)."""
    cases = ", ".join(
        f"named_struct('rule', {sql_literal(r.rule)}, 'column', {sql_literal(r.column)}, "
        f"'failure_case', CAST({r.value} AS STRING), 'row', {_row_sql(key)}, "
        f"'fails', coalesce({r.fails}, FALSE))"
        for r in failing
    )
    any_fails = " OR ".join(f"({r.fails})" for r in failing)
    return (
        f"SELECT g AS _gate_group, c.rule, c.column, c.failure_case, c.row FROM ("
        f"SELECT g, c, row_number() OVER (PARTITION BY g, c.rule ORDER BY c.rule) AS n FROM ("
        f"SELECT {group} AS g, explode(filter(array({cases}), x -> x.fails)) "
        f"AS c FROM _gate_judged WHERE {any_fails})) WHERE n <= {shown}"
    )


def spark_outcomes(
    spark: AnySparkSession,
    model: type[pa.DataFrameModel] | pa.DataFrameSchema,
    relation: str,
    where: str = "TRUE",
    params: list | None = None,
    shown: int = 10,
    by: str | None = None,
) -> dict[str, Outcome]:
    """Every failure of `relation`'s rows (those `where` selects; `?` markers bound to
    `params`) against `model`, counted on the cluster, as the DuckDB gate's Outcome: one per
    value of the model's column `by` ({value as a string: Outcome}, values that hold rows only),
    or without `by` one, keyed "all".

    Rules and failing rows are counted as the DuckDB gate counts them: per rule the rows that
    break it and its failure cases (a duplicated row of a two-column key is two cases, a wrong
    dtype one case without a row), and in `failing_rows` each row once whatever it breaks.
    A failure case names its row by the model's `row_key`, as the DuckDB gate does. Each group
    is judged as if alone: uniqueness within it, a dtype broken by a missing value only where
    it holds one, `shown` cases each. The same two queries as one outcome, grouped: a year of
    days costs no more Spark jobs than a day. Raises UnrenderableRule when the model has a rule
    SQL cannot state."""
    import pandas as pd

    schema = model if hasattr(model, "columns") else model.to_schema()
    columns = ", ".join(quote(name) for name in schema.columns)
    checked = f"SELECT {columns} FROM {relation} WHERE {where}"
    args = params or None
    spark_types = {
        field.name: field.dataType.simpleString()
        for field in spark.sql(checked, args=args).schema.fields
    }
    rendering = render(schema, spark_types)
    dtype_rows, scalars = dtype_rules(schema, spark_types)
    grouping = [quote(by)] if by else []
    windows = "".join(
        f", count(*) OVER (PARTITION BY {', '.join([*grouping, *(quote(c) for c in key)])}) "
        f"AS {alias}"
        for alias, key in rendering.windows
    )
    row_rules = [*dtype_rows, *rendering.row_rules]
    conditional = [s for s in scalars if s.when is not None]
    any_rule = " OR ".join(f"({r.fails})" for r in row_rules) or "FALSE"
    with_ctes = (
        f"WITH _gate_checked AS ({checked}), "
        f"_gate_judged AS (SELECT *{windows} FROM _gate_checked) "
    )
    group = f"CAST({quote(by)} AS STRING)" if by else "'all'"
    aggregate = ", ".join(
        [
            group,
            "count(*)",
            f"count_if({any_rule})",
            *(
                f"count_if({r.fails}), coalesce(sum(IF({r.fails}, {r.cases}, 0)), 0)"
                for r in row_rules
            ),
            *(s.when for s in conditional),
        ]
    )
    group_by = f" GROUP BY {group}" if by else ""
    results = spark.sql(
        f"{with_ctes}SELECT {aggregate} FROM _gate_judged{group_by}", args=args
    ).collect()
    failing = {rule.rule for result in results for rule in _failing(result, row_rules)}
    samples = pd.DataFrame(columns=["_gate_group", *SHOWN_CASE_COLUMNS])
    if failing and shown > 0:
        sampled = [rule for rule in row_rules if rule.rule in failing]
        cases_sql = _samples_sql(sampled, shown, row_key(schema), group)
        samples = spark.sql(f"{with_ctes}{cases_sql}", args=args).toPandas()
    return {
        result[0]: _group_outcome(
            result, row_rules, scalars, samples[samples["_gate_group"] == result[0]], shown
        )
        for result in results
    }


# An aggregate row: the group, its rows, its failing rows, then per row rule its failing rows
# and failure cases, then per conditional scalar rule whether it holds.
_FIRST_RULE = 3


def _failing(result: Any, row_rules: list[RowRule]) -> list[RowRule]:
    """The row rules a group's aggregate row says some row breaks."""
    counts = result[_FIRST_RULE : _FIRST_RULE + 2 * len(row_rules) : 2]
    return [rule for rule, count in zip(row_rules, counts, strict=True) if count]


def _group_outcome(
    result: Any,
    row_rules: list[RowRule],
    scalars: list[ScalarRule],
    samples: pd.DataFrame,
    shown: int,
) -> Outcome:
    """One group's Outcome from its aggregate row and its failure cases."""
    import pandas as pd

    rows, failing_rows = result[_FIRST_RULE - 2 : _FIRST_RULE]
    found = result[_FIRST_RULE:]
    counts, held = found[: 2 * len(row_rules)], found[2 * len(row_rules) :]
    failing = [
        (rule, int(count), int(cases))
        for rule, count, cases in zip(row_rules, counts[::2], counts[1::2], strict=True)
        if count
    ]
    conditional = [s for s in scalars if s.when is not None]
    failed_scalars = [s for s in scalars if s.when is None] + [
        s for s, holds in zip(conditional, held, strict=True) if holds
    ]
    scalar_cases = pd.DataFrame(
        {
            "rule": [s.rule for s in failed_scalars],
            "column": [s.column for s in failed_scalars],
            "failure_case": [s.failure_case for s in failed_scalars],
            "row": None,
        }
    )
    cases = pd.concat([samples[SHOWN_CASE_COLUMNS], scalar_cases], ignore_index=True)
    failing_checks = pd.DataFrame(
        [(rule.rule, count, cases_) for rule, count, cases_ in failing]
        + [(s.rule, 0, 1) for s in failed_scalars],
        columns=["rule", "failing_rows", "failure_cases"],
    )
    return Outcome(
        rows=int(rows),
        failing_rows=int(failing_rows),
        failing_checks=failing_checks.sort_values("rule", ignore_index=True),
        cases=cases[SHOWN_CASE_COLUMNS].head(shown),
    )


def validate_spark_window(
    spark: AnySparkSession, gate: Gate, window: Window, shown: int
) -> Outcome:
    """The Spark twin of `pandera_gate.validate_window`: `gate`'s model on the window's rows of
    its table (or query) in the Spark catalog the session sees, counted on the cluster."""
    predicate, params = window.where("dt")
    where = f"({gate.where}) AND {predicate}"
    return spark_outcomes(spark, gate.model_class, gate.relation, where, params, shown)["all"]


def validate_spark_days(
    spark: AnySparkSession, gate: Gate, window: Window, shown: int
) -> dict[dt.date, Outcome]:
    """The Spark twin of `pandera_gate.validate_days`: each day of the window holding rows,
    judged alone, all days in the one aggregate query (and one samples query) grouped by dt."""
    where, params = days_where(gate, window)
    outcomes = spark_outcomes(spark, gate.model_class, gate.relation, where, params, shown, "dt")
    # A DATE as a string is the day; a TIMESTAMP's (a table written otherwise) begins with it.
    return {dt.date.fromisoformat(day[:10]): outcome for day, outcome in outcomes.items()}
