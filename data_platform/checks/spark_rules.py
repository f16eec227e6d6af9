"""The rules of a Pandera model rendered as Spark SQL: one renderer, so no rule is written twice.

The Pandera DataFrameModels of checks/models.py are where every rule is stated. The DuckDB gate
runs Pandera itself on the rows; on Spark the rows stay on the cluster, so this module reads the
same schema objects (each column's dtype, nullable, unique and built-in checks, the model's
multi-column uniqueness) and renders each rule as a SQL predicate that is TRUE on a failing
row. The gate (spark_gate.py) counts those predicates in one aggregate query.

Each rule keeps the name Pandera gives it (`column: check` for column rules, e.g.
`_line_number: greater_than_or_equal_to(1)`), so the two engines report the same rules.

What cannot be rendered fails loudly with UnrenderableRule naming the model and the rule: a
custom check (`@pa.check`, `@pa.dataframe_check`) is arbitrary pandas code, which no SQL can be
derived from, and a rule that silently passed on Spark would let broken data downstream.

Pure Python: no Spark session is needed to render, so a test can render every gate's model.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandera.pandas as pa


class UnrenderableRule(ValueError):
    """A model states a rule the Spark renderer cannot express as SQL."""

    def __init__(self, model: str, rules: list[str]) -> None:
        self.model = model
        self.rules = rules
        super().__init__(
            f"{model}: cannot render as Spark SQL: {', '.join(rules)}. A custom check is pandas "
            "code; state the rule with Pandera's built-in checks, or keep this model off Spark"
        )


@dataclass(frozen=True)
class RowRule:
    """A rule judged row by row: `fails` is a SQL predicate TRUE on a row that breaks it."""

    rule: str  # as Pandera names it in its failure cases
    column: str
    fails: str
    value: str  # SQL of the failure case shown for a failing row


@dataclass(frozen=True)
class UniqueRule:
    """Rows whose key repeats. A single column's NULLs repeat nothing (Pandera skips them);
    in a key of several columns NULLs are equal, as in pandas' `duplicated`."""

    rule: str
    key: tuple[str, ...]

    def fails(self, window_count: str) -> str:
        """TRUE on a duplicated row, given `window_count` = count(*) OVER (PARTITION BY key)."""
        duplicated = f"{window_count} > 1"
        if len(self.key) == 1:
            return f"({quote(self.key[0])} IS NOT NULL AND {duplicated})"
        return f"({duplicated})"

    @property
    def cases_per_row(self) -> int:
        """Pandera reports one failure case per key column of a duplicated row."""
        return len(self.key)

    @property
    def value(self) -> str:
        if len(self.key) == 1:
            return f"CAST({quote(self.key[0])} AS STRING)"
        parts = ", ".join(f"coalesce(CAST({quote(c)} AS STRING), 'NULL')" for c in self.key)
        return f"concat_ws(', ', {parts})"


@dataclass(frozen=True)
class Rendering:
    """A model as Spark SQL: the columns to select and every rule but the dtypes (which depend on
    the table's types, see spark_gate.dtype_rules)."""

    model: str
    columns: tuple[str, ...]
    row_rules: tuple[RowRule, ...]
    unique_rules: tuple[UniqueRule, ...]


def quote(name: str) -> str:
    """A Spark SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def sql_literal(value: Any) -> str:
    """A Python value of a check's statistics as a Spark SQL literal. Strings are escaped for
    Spark's default parser, where a backslash escapes (so a regex's `\\d` survives)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"no Spark SQL literal for {value!r}")
        return repr(value)
    if isinstance(value, Decimal):
        return f"{value}BD"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, dt.datetime):  # pd.Timestamp too; naive, as the warehouse's are
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    raise ValueError(f"no Spark SQL literal for {value!r} ({type(value).__name__})")


def _values(values: Iterable) -> str:
    return ", ".join(sql_literal(v) for v in values)


def _pattern(pattern: str | re.Pattern) -> str:
    """The regex text, refusing flags Java's regex would not see."""
    if isinstance(pattern, re.Pattern):
        if pattern.flags & ~re.UNICODE:
            raise ValueError(f"regex flags of {pattern!r}")
        pattern = pattern.pattern
    return pattern


def _in_range(c: str, s: dict) -> str:
    low = ">=" if s.get("include_min", True) else ">"
    high = "<=" if s.get("include_max", True) else "<"
    return f"{c} {low} {sql_literal(s['min_value'])} AND {c} {high} {sql_literal(s['max_value'])}"


def _str_length(c: str, s: dict) -> str:
    length = f"char_length({c})"
    if s.get("exact_value") is not None:
        return f"{length} = {sql_literal(s['exact_value'])}"
    bounds = (
        [f"{length} >= {sql_literal(s['min_value'])}"] if s.get("min_value") is not None else []
    )
    if s.get("max_value") is not None:
        bounds.append(f"{length} <= {sql_literal(s['max_value'])}")
    return " AND ".join(bounds)


# Pandera's built-in checks (name -> what holds on a passing value), as Pandera's pandas backend
# evaluates them: str_matches is re.match (anchored at the start), str_contains re.search.
PASSES: dict[str, Callable[[str, dict], str]] = {
    "equal_to": lambda c, s: f"{c} = {sql_literal(s['value'])}",
    "not_equal_to": lambda c, s: f"{c} <> {sql_literal(s['value'])}",
    "greater_than": lambda c, s: f"{c} > {sql_literal(s['min_value'])}",
    "greater_than_or_equal_to": lambda c, s: f"{c} >= {sql_literal(s['min_value'])}",
    "less_than": lambda c, s: f"{c} < {sql_literal(s['max_value'])}",
    "less_than_or_equal_to": lambda c, s: f"{c} <= {sql_literal(s['max_value'])}",
    "in_range": _in_range,
    "isin": lambda c, s: f"{c} IN ({_values(s['allowed_values'])})",
    "notin": lambda c, s: f"{c} NOT IN ({_values(s['forbidden_values'])})",
    "str_matches": lambda c, s: f"{c} RLIKE {sql_literal('^(?:' + _pattern(s['pattern']) + ')')}",
    "str_contains": lambda c, s: f"{c} RLIKE {sql_literal(_pattern(s['pattern']))}",
    "str_startswith": lambda c, s: f"startswith({c}, {sql_literal(s['string'])})",
    "str_endswith": lambda c, s: f"endswith({c}, {sql_literal(s['string'])})",
    "str_length": _str_length,
}


def is_missing(column: str, spark_type: str) -> str:
    """What pandas (hence Pandera) sees as missing: NULL, and NaN in a floating column (the
    DuckDB gate hands NaN to pandas, which counts it as null)."""
    c = quote(column)
    if spark_type in ("double", "float"):
        return f"({c} IS NULL OR isnan({c}))"
    return f"{c} IS NULL"


def check_label(check: pa.Check) -> str:
    """The check's name in Pandera's failure cases (pandas backend's error formatter)."""
    return check.error if check.error is not None else check.name


def _builtin(check: pa.Check) -> bool:
    from pandera.api.checks import Check
    from pandera.api.function_dispatch import Dispatcher

    return (
        check.name in PASSES
        and Check.is_builtin_check(check.name)
        # Pandera's own dispatcher of that name (a schema's copy holds a copy of it, and
        # backends register more functions on it later, so neither identity nor code compare);
        # a custom check, even named like a built-in, holds a plain function.
        and isinstance(check._check_fn, Dispatcher)
        and str(check._check_fn) == check.name
        and check.groupby is None
        and not check.element_wise
        and not check.raise_warning  # a warning rule is not a gate's failure
    )


def render(
    model: type[pa.DataFrameModel] | pa.DataFrameSchema, spark_types: dict[str, str] | None = None
) -> Rendering:
    """Every rule of `model` but its dtypes, as Spark SQL. Raises UnrenderableRule naming every
    rule that cannot be rendered (custom checks, groupby or element-wise checks, a regex of
    column names, duplicates reported other than "all"), never a partial rendering.

    `spark_types` (column -> Spark type name) refines what "missing" means (NaN in floating
    columns); without it, only NULL is.
    """
    schema = model if hasattr(model, "columns") else model.to_schema()
    name = schema.name or getattr(model, "__name__", "schema")
    types = spark_types or {}
    rows: list[RowRule] = []
    unique: list[UniqueRule] = []
    refused: list[str] = []
    for column_name, column in schema.columns.items():
        if column.regex:
            refused.append(f"{column_name}: a regex of column names")
            continue
        c = quote(column_name)
        missing = is_missing(column_name, types.get(column_name, ""))
        if not column.nullable:
            rows.append(RowRule(f"{column_name}: not_nullable", column_name, missing, "NULL"))
        if column.unique:
            unique.append(UniqueRule(f"{column_name}: field_uniqueness", (column_name,)))
        for check in column.checks:
            if not _builtin(check):
                refused.append(f"{column_name}: {check.name}")
                continue
            passes = PASSES[check.name](c, check.statistics)
            fails = f"NOT coalesce({passes}, FALSE)"
            if check.ignore_na:
                fails = f"(NOT {missing} AND {fails})"
            rows.append(RowRule(f"{column_name}: {check_label(check)}", column_name, fails, c))
    refused.extend(check.name for check in schema.checks)  # whole-frame checks are custom code
    if schema.unique:
        if getattr(schema, "report_duplicates", "all") != "all":
            refused.append(
                f"multiple_fields_uniqueness (report_duplicates={schema.report_duplicates})"
            )
        key = [schema.unique] if isinstance(schema.unique, str) else list(schema.unique)
        unique.append(UniqueRule("multiple_fields_uniqueness", tuple(key)))
    if refused:
        raise UnrenderableRule(name, refused)
    return Rendering(name, tuple(schema.columns), tuple(rows), tuple(unique))
