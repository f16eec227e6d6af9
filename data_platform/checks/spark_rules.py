"""The rules of a Pandera model rendered as Spark SQL: one renderer, so no rule is written twice.

The Pandera DataFrameModels of checks/models.py are where every rule is stated. The DuckDB gate
runs Pandera itself on the rows; on Spark the rows stay on the cluster, so this module reads the
same schema objects and renders each rule as a SQL predicate that is TRUE on a failing row:
each column's nullable, unique and built-in checks (read from `check.name` and
`check.statistics`), the model's multi-column uniqueness, and its custom checks (`@pa.check`,
`@pa.dataframe_check`), which are *traced*: the check's own pandas function is called once on a
stand-in frame whose columns build SQL instead of computing (`df["a"] >= df["b"]` becomes
`coalesce(a >= b, FALSE)`, keeping pandas' rule that a comparison with a missing value is
False). The spark gate (spark_gate.py) counts the predicates in one aggregate query.

Each rule keeps the name Pandera gives it (`column: check` for column rules, the function's name
for whole-frame rules), and counts failure cases as Pandera does, so the two engines report
the same rules and numbers.

What cannot be rendered fails loudly with UnrenderableRule naming the model, the rule and why:
a check that branches in Python on the data, loops over values, calls numpy, or uses a pandas
method the tracer does not know. A rule that silently passed on Spark would let broken data
downstream.

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

from data_platform.ingestion.spark_formats import spark_string

if TYPE_CHECKING:
    import pandera.pandas as pa


class UnrenderableRule(ValueError):
    """A model states a rule the Spark renderer cannot express as SQL."""

    def __init__(self, model: str, rules: list[str]) -> None:
        self.model = model
        self.rules = rules
        super().__init__(
            f"{model}: cannot render as Spark SQL: {'; '.join(rules)}. State the rule with "
            "Pandera's built-in checks or vectorised pandas the tracer renders (spark_rules.py)"
        )


@dataclass(frozen=True)
class RowRule:
    """A rule judged row by row: `fails` is a SQL predicate TRUE on a row that breaks it."""

    rule: str  # as Pandera names it in its failure cases
    column: str  # the column whose value `value` shows
    fails: str
    value: str  # SQL of the failure case shown for a failing row
    cases: str = "1"  # SQL: how many failure cases Pandera reports for a failing row


@dataclass(frozen=True)
class Rendering:
    """A model as Spark SQL: the columns to select, the per-key row counts the rules read
    (alias, key: `count(*) OVER (PARTITION BY key)`), and every rule but the dtypes (which
    depend on the table's types, see spark_gate.dtype_rules)."""

    model: str
    columns: tuple[str, ...]
    windows: tuple[tuple[str, tuple[str, ...]], ...]
    row_rules: tuple[RowRule, ...]


def quote(name: str) -> str:
    """A Spark SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def sql_literal(value: Any) -> str:
    """A Python value of a check's statistics as a Spark SQL literal. Strings are escaped for
    Spark's default parser, where a backslash escapes (so a regex's `\\d` survives)."""
    if value is None:
        return "NULL"
    if type(value).__module__ == "numpy":  # a numpy scalar, e.g. np.int64 from a vocabulary
        value = value.item()
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
        return spark_string(value)
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
    )


class TraceError(Exception):
    """A custom check did something that has no SQL form."""


def _sql(value: Any) -> str:
    return value.sql if isinstance(value, Traced) else sql_literal(value)


class Traced:
    """A pandas Series inside a traced check: the SQL of its values, with pandas' semantics of
    missing values (a comparison with one is False, `!=` True; NaN is missing)."""

    __hash__ = None  # type: ignore[assignment]  # == builds SQL, as on a Series

    def __init__(self, sql: str, missing: str | None = None) -> None:
        self.sql = sql
        self.missing = missing or f"({sql}) IS NULL"

    def _compare(self, op: str, other: Any, if_missing: str = "FALSE") -> Traced:
        return Traced(f"coalesce(({self.sql}) {op} ({_sql(other)}), {if_missing})")

    def __eq__(self, other: Any) -> Traced:  # type: ignore[override]
        return self._compare("=", other)

    def __ne__(self, other: Any) -> Traced:  # type: ignore[override]
        return self._compare("<>", other, "TRUE")

    def __lt__(self, other: Any) -> Traced:
        return self._compare("<", other)

    def __le__(self, other: Any) -> Traced:
        return self._compare("<=", other)

    def __gt__(self, other: Any) -> Traced:
        return self._compare(">", other)

    def __ge__(self, other: Any) -> Traced:
        return self._compare(">=", other)

    def __and__(self, other: Any) -> Traced:
        return Traced(f"(({self.sql}) AND ({_sql(other)}))")

    def __or__(self, other: Any) -> Traced:
        return Traced(f"(({self.sql}) OR ({_sql(other)}))")

    __rand__, __ror__ = __and__, __or__

    def __invert__(self) -> Traced:
        return Traced(f"(NOT ({self.sql}))")

    def _arithmetic(self, op: str, other: Any, reflected: bool = False) -> Traced:
        left, right = (_sql(other), self.sql) if reflected else (self.sql, _sql(other))
        return Traced(f"(({left}) {op} ({right}))")

    def __add__(self, other: Any) -> Traced:
        return self._arithmetic("+", other)

    def __sub__(self, other: Any) -> Traced:
        return self._arithmetic("-", other)

    def __mul__(self, other: Any) -> Traced:
        return self._arithmetic("*", other)

    def __truediv__(self, other: Any) -> Traced:
        return self._arithmetic("/", other)

    def __radd__(self, other: Any) -> Traced:
        return self._arithmetic("+", other, reflected=True)

    def __rsub__(self, other: Any) -> Traced:
        return self._arithmetic("-", other, reflected=True)

    def __rmul__(self, other: Any) -> Traced:
        return self._arithmetic("*", other, reflected=True)

    def abs(self) -> Traced:
        return Traced(f"abs({self.sql})")

    def isna(self) -> Traced:
        return Traced(f"({self.missing})")

    def notna(self) -> Traced:
        return Traced(f"(NOT {self.missing})")

    isnull, notnull = isna, notna

    def isin(self, values: Iterable) -> Traced:
        return Traced(f"coalesce(({self.sql}) IN ({_values(values)}), FALSE)")

    def between(self, left: Any, right: Any, inclusive: str = "both") -> Traced:
        low = ">=" if inclusive in ("both", "left") else ">"
        high = "<=" if inclusive in ("both", "right") else "<"
        return Traced(
            f"coalesce(({self.sql}) {low} {_sql(left)} AND ({self.sql}) {high} {_sql(right)}, "
            "FALSE)"
        )

    def filed_under(self, sources: Traced | str, days: Traced) -> Traced:
        """The file keys of `self` lie in `<source>/dt=<day>/` (models.in_dt_folder)."""
        folder = f"concat({_sql(sources)}, '/dt=', date_format({days.sql}, 'yyyy-MM-dd'), '/')"
        return Traced(f"coalesce(startswith({self.sql}, {folder}), FALSE)")

    @property
    def dt(self) -> _DatetimeAccessor:
        return _DatetimeAccessor(self)

    def __bool__(self) -> bool:
        raise TraceError("a Python decision on the data (the truth value of a Series)")

    def __iter__(self) -> Any:
        raise TraceError("a loop over the values")

    def __len__(self) -> int:
        raise TraceError("the length of the data")

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise TraceError("a numpy conversion of the values")

    def __getattr__(self, name: str) -> Any:
        raise TraceError(f"pandas `.{name}`, which the tracer does not render")


class _DatetimeAccessor:
    def __init__(self, series: Traced) -> None:
        self.series = series

    def floor(self, freq: str) -> Traced:
        if freq != "D":
            raise TraceError(f"`.dt.floor({freq!r})`")
        return Traced(f"date_trunc('DAY', {self.series.sql})")

    def __getattr__(self, name: str) -> Any:
        raise TraceError(f"pandas `.dt.{name}`, which the tracer does not render")


class TracedFrame:
    """The model's columns as a pandas DataFrame inside a traced check."""

    def __init__(self, columns: dict[str, str], types: dict[str, str]) -> None:
        self.columns = columns  # name -> the SQL of its values
        self.types = types
        self.windows: dict[tuple[str, ...], str] = {}

    def __getitem__(self, name: str) -> Traced:
        if name not in self.columns:
            raise TraceError(f"column {name!r}, which the model does not declare")
        return Traced(self.columns[name], is_missing(name, self.types.get(name, "")))

    def duplicated(self, subset: list[str] | str | None = None, keep: Any = "first") -> Traced:
        """keep=False only: every row of a repeated key, NULLs equal (pandas' rule)."""
        if keep is not False:
            raise TraceError(f"`.duplicated(keep={keep!r})`: only keep=False has an order-free SQL")
        key = tuple([subset] if isinstance(subset, str) else subset or self.columns)
        undeclared = [name for name in key if name not in self.columns]
        if undeclared:
            raise TraceError(f"columns {undeclared}, which the model does not declare")
        alias = self.windows.setdefault(key, f"_gate_rows_per_key_{len(self.windows)}")
        return Traced(f"({alias} > 1)")

    def __getattr__(self, name: str) -> Any:
        raise TraceError(f"pandas `DataFrame.{name}`, which the tracer does not render")


def _column(name: str, spark_type: str) -> str:
    """A column's values as pandas sees them: NaN in a floating column is missing (NULL)."""
    if spark_type in ("double", "float"):
        return f"nanvl({quote(name)}, CAST(NULL AS {spark_type.upper()}))"
    return quote(name)


def _reason(err: Exception) -> str:
    return str(err) if isinstance(err, TraceError) else f"{type(err).__name__}: {err}"


def _trace(check: pa.Check, data: Traced | TracedFrame) -> Traced:
    if check.groupby is not None or check.element_wise:
        raise TraceError("a groupby or element-wise check")
    result = check._check_fn(data, **check._check_kwargs)
    if not isinstance(result, Traced):
        raise TraceError(f"the check returned {type(result).__name__}, not a row-wise Series")
    return result


def render(
    model: type[pa.DataFrameModel] | pa.DataFrameSchema, spark_types: dict[str, str] | None = None
) -> Rendering:
    """Every rule of `model` but its dtypes, as Spark SQL. Raises UnrenderableRule naming every
    rule that cannot be rendered and why (see the module docstring), never a partial rendering.

    `spark_types` (column -> Spark type name) says which columns are floating, where NaN is
    missing as in pandas; without it, only NULL is.
    """
    schema = model if hasattr(model, "columns") else model.to_schema()
    name = schema.name or getattr(model, "__name__", "schema")
    types = spark_types or {}
    frame = TracedFrame({c: _column(c, types.get(c, "")) for c in schema.columns}, types)
    rows: list[RowRule] = []
    refused: list[str] = []
    unique_keys: list[tuple[str, tuple[str, ...]]] = []
    for column_name, column in schema.columns.items():
        if column.regex:
            refused.append(f"{column_name}: a regex of column names")
            continue
        missing = is_missing(column_name, types.get(column_name, ""))
        c = quote(column_name)
        if not column.nullable:
            rows.append(RowRule(f"{column_name}: not_nullable", column_name, missing, "NULL"))
        if column.unique:
            unique_keys.append((f"{column_name}: field_uniqueness", (column_name,)))
        for check in column.checks:
            rule = f"{column_name}: {check_label(check)}"
            if check.raise_warning:  # a warning is not a gate's failure
                refused.append(f"{rule} (raise_warning)")
                continue
            try:
                if _builtin(check):
                    # NaN as pandas has it (missing), not as Spark compares it (equal to
                    # itself, above every number): with ignore_na=False, greater_than(0)
                    # passed a NaN on Spark only.
                    passes = PASSES[check.name](frame[column_name].sql, check.statistics)
                else:
                    passes = _trace(check, frame[column_name]).sql
            except Exception as err:  # whatever stops the rendering, the rule is named
                refused.append(f"{rule} ({_reason(err)})")
                continue
            fails = f"NOT coalesce({passes}, FALSE)"
            if check.ignore_na:  # Pandera checks only the values that are there
                fails = f"(NOT {missing} AND {fails})"
            rows.append(RowRule(rule, column_name, fails, c))
    first = next(iter(schema.columns))
    present = [f"IF({is_missing(n, types.get(n, ''))}, 0, 1)" for n in schema.columns]
    for check in schema.checks:
        rule = check_label(check)
        try:
            passes = _trace(check, frame).sql
        except Exception as err:  # the check's own code met a traced Series it cannot use
            refused.append(f"{rule} ({_reason(err)})")
            continue
        fails = f"NOT coalesce({passes}, FALSE)"
        if check.ignore_na:  # a row missing every value passes
            all_missing = " AND ".join(is_missing(n, types.get(n, "")) for n in schema.columns)
            fails = f"({fails} AND NOT ({all_missing}))"
        # Pandera reports a failing row once per column that holds a value.
        rows.append(RowRule(rule, first, fails, quote(first), " + ".join(present)))
    if schema.unique:
        if getattr(schema, "report_duplicates", "all") != "all":
            refused.append(
                f"multiple_fields_uniqueness (report_duplicates={schema.report_duplicates})"
            )
        key = [schema.unique] if isinstance(schema.unique, str) else list(schema.unique)
        unique_keys.append(("multiple_fields_uniqueness", tuple(key)))
    for rule, key in unique_keys:
        duplicated = frame.duplicated(list(key), keep=False).sql
        if len(key) == 1:  # a single column's NULLs repeat nothing (Pandera skips them)
            rows.append(
                RowRule(
                    rule, key[0], f"(NOT {frame[key[0]].missing} AND {duplicated})", quote(key[0])
                )
            )
        else:  # one case per key column, as Pandera reports it
            parts = ", ".join(f"coalesce(CAST({quote(c)} AS STRING), 'NULL')" for c in key)
            rows.append(
                RowRule(rule, key[0], duplicated, f"concat_ws(', ', {parts})", str(len(key)))
            )
    if refused:
        raise UnrenderableRule(name, refused)
    windows = tuple((alias, key) for key, alias in frame.windows.items())
    return Rendering(name, tuple(schema.columns), windows, tuple(rows))
