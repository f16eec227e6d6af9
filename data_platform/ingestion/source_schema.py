"""An app-database table's columns against its contract: what extraction and drift checks see.

The source's schema can change under the platform (a migration adds `loyalty_tier`, drops a
column, turns a price into text). A column outside the contract is kept in `_rescued`; a
contract column that is gone or has an incompatible declared type would make every version
from then on wrong, so extraction stops with one line naming table, column and fix. A single
row the contract refuses (a value its type cannot hold, a NULL where one is required) is
dead-lettered with that line as its reason, and the rest of the table flows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from data_platform.ingestion.file_lines import sql_string
from data_platform.ingestion.record_rules import (
    DECIMAL_SPELLING,
    SPACES,
    TIMESTAMP_EXAMPLE,
    Dialect,
)
from data_platform.ingestion.tables import Column, RawTable
from data_platform.settings import masked_url

if TYPE_CHECKING:
    import sqlalchemy as sa

# Python types a source column may declare for each contract type. VARCHAR takes anything:
# every value has a text form. SQLite reflects unknown declarations as NullType (no
# python_type); the value check at extraction still catches what cannot be cast.
COMPATIBLE = {
    "BIGINT": (int,),
    "INTEGER": (int,),
    "DECIMAL(10,2)": (Decimal, float, int),
    "TIMESTAMP": (datetime, date),
}


class SourceSchemaError(ValueError):
    """The source broke its contract; the message is one line naming table, column and fix."""


@dataclass(frozen=True)
class EngineSql:
    """How one engine spells the extraction's shared SQL: identifiers, the contract's types, and
    the timestamp rule the landing files use (`record_rules.Dialect`), so that a value means the
    same instant on every engine."""

    quote: Callable[[str], str]
    sql_type: Callable[[Column], str]
    dialect: Dialect
    # The keys of a JSON object (`_rescued`), in order, as an array the engine compares with =.
    json_keys: Callable[[str], str]
    # The text of a JSON object of (key, SQL expression) pairs, null values kept (a refused
    # row's record in raw.dead_letter), and the text one of its keys holds.
    text_object: Callable[[Sequence[tuple[str, str]]], str]
    json_text: Callable[[str, str], str]


@dataclass(frozen=True)
class BatchKinds:
    """Which columns of a fetched batch hold text and which floating-point values: what decides
    how a value is converted, checked and rescued (the same names on every engine)."""

    texts: frozenset[str] = frozenset()
    floats: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SourceColumns:
    contract: list[str]
    extra: list[str]
    missing: list[str]
    # Contract decimals the source declares with more digits (name -> declared type): each
    # such value stops extraction, so the drift check says so before one arrives.
    wider: dict[str, str] = field(default_factory=dict)


def contract_columns(table: RawTable) -> list[str]:
    """The columns the source itself must have (the raw table's minus its own bookkeeping)."""
    return [c for c in table.column_names if not c.startswith("_")]


def quoted(name: str) -> str:
    """A SQL identifier, whatever characters the source's column name has."""
    return '"' + name.replace('"', '""') + '"'


def _declared_type(column: sa.Column) -> type | None:
    try:
        return column.type.python_type
    except NotImplementedError:
        return None


def missing_sqlite_file(url: sa.URL) -> Path | None:
    """The file a SQLite URL names, when it does not exist; None for any other database.

    Connecting would create it: a mistyped path read as an empty database, whose tables then
    "do not exist", which points at the tables rather than at the path. A `file:` URI
    (`?uri=true`) is left to SQLite, whose own `mode=ro` refuses a missing file.
    """
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:") or url.query.get("uri"):
        return None
    path = Path(database).expanduser()
    return None if path.exists() else path.absolute()


def driver_reason(error: sa.exc.DBAPIError) -> str:
    """The database driver's own reason, its first line (it names the host, never the
    password)."""
    lines = str(error.orig or error).strip().splitlines()
    return lines[0] if lines else type(error.orig or error).__name__


def require_source_database(engine: sa.Engine) -> None:
    """Raise SourceSchemaError, before anything connects, when the source is a SQLite file that
    does not exist."""
    if (path := missing_sqlite_file(engine.url)) is not None:
        where = masked_url(engine.url)
        raise SourceSchemaError(
            f"source database file {path} does not exist ({where}): point "
            "DATA_PLATFORM_SOURCE_DB_URL at the app database's file (or create it, e.g. with "
            "data-platform simulate), then re-run the extraction"
        )


def _wider_decimals(source: sa.Table, table: RawTable) -> dict[str, str]:
    """Contract DECIMAL(p,s) columns the source declares as a decimal with more places or more
    integer digits (or unbounded). Floats are left out: they carry no declared digits."""
    import sqlalchemy as sa

    wider = {}
    for column in table.columns:
        contract = re.fullmatch(r"DECIMAL\((\d+),(\d+)\)", column.type)
        declared = source.c[column.name].type if column.name in source.c else None
        if not contract or not isinstance(declared, sa.Numeric) or isinstance(declared, sa.Float):
            continue
        precision, scale = map(int, contract.groups())
        if (
            declared.precision is None
            or (declared.scale or 0) > scale
            or declared.precision - (declared.scale or 0) > precision - scale
        ):
            wider[column.name] = str(declared)
    return wider


def reflect(engine: sa.Engine, table: RawTable) -> tuple[sa.Table, SourceColumns]:
    """The source table as it is now, and how its columns differ from the contract."""
    import sqlalchemy as sa

    require_source_database(engine)
    where = masked_url(engine.url)
    try:
        source = sa.Table(table.name, sa.MetaData(), autoload_with=engine)
    except sa.exc.DBAPIError as error:
        # The first connection of an extraction: a server down, a password refused, a file
        # that is no database were the driver's traceback, naming no setting.
        raise SourceSchemaError(
            f"source database {where} could not be used ({driver_reason(error)}): check that "
            "DATA_PLATFORM_SOURCE_DB_URL names the app database and that it is up and "
            "reachable, then re-run the extraction"
        ) from None
    except sa.exc.NoSuchTableError:
        raise SourceSchemaError(
            f"source table {table.name!r} does not exist in {where}: create it in the app "
            "database (or point DATA_PLATFORM_SOURCE_DB_URL at the right one), then re-run the "
            "extraction"
        ) from None
    contract = contract_columns(table)
    return source, SourceColumns(
        contract=contract,
        extra=[c.name for c in source.columns if c.name not in contract],
        missing=[c for c in contract if c not in source.c],
        wider=_wider_decimals(source, table),
    )


# How a refusal's message ends. A stop is over once the source is fixed and the extraction
# re-run; a dead-lettered row lands as its next version, once the app fixes it and stamps it.
RERUN = "then re-run the extraction"
NEW_VERSION = "then set its updated_at: the next extraction takes the row in"


def keyless_row(table: RawTable, missing: str, row_id: object, then: str = RERUN) -> str:
    """Why a row without `missing` (id or updated_at), its version key, is refused."""
    return (
        f"source table {table.name} has a row without {missing}"
        + (f" (row id {row_id})" if row_id is not None else "")
        + ": every row needs both (together they name its version): fix it in the app "
        f"database, {then}"
    )


def require_unique_versions(
    first_row: Callable[[str], Sequence[object] | None],
    table: RawTable,
    names: list[str],
    sql: EngineSql,
    relation: str = "_source_batch",
) -> None:
    """Raise SourceSchemaError when `relation` (the batch) holds different rows of one (id,
    updated_at): an id that is no primary key in the source. One of them was kept, at random,
    and the others reported as rows changed without a new updated_at, whose advised fix (a new
    updated_at) never brought them in."""
    key = f"{sql.quote('id')}, {sql.quote('updated_at')}"
    differ = " OR ".join(
        f"count(DISTINCT CAST({sql.quote(n)} AS STRING)) > 1"
        for n in names
        if n not in ("id", "updated_at")
    )
    found = first_row(
        f"SELECT CAST({sql.quote('id')} AS STRING), count(*) FROM {relation} "
        f"GROUP BY {key} HAVING count(*) > 1 AND ({differ}) LIMIT 1"
    )
    if found:
        row_id, rows = found
        raise not_a_primary_key(table, row_id, f"{rows} different rows")


def not_a_primary_key(table: RawTable, row_id: object, rows: str) -> SourceSchemaError:
    return SourceSchemaError(
        f"source table {table.name} holds {rows} with id {row_id} and the same updated_at: id "
        "is no primary key there (a migration dropped it?): make the rows' ids unique and "
        "restore the key in the app database, then re-run the extraction"
    )


def require_contract(source: sa.Table, table: RawTable, columns: SourceColumns) -> None:
    """Raise SourceSchemaError when a contract column is missing or declared incompatibly."""
    if columns.missing:
        raise SourceSchemaError(
            f"source table {table.name!r} has no column {', '.join(map(repr, columns.missing))} "
            "of the contract (data_platform/ingestion/tables.py): restore it in the app database "
            "(or point DATA_PLATFORM_SOURCE_DB_URL at the right one), then re-run the extraction"
        )
    types = {c.name: c.type for c in table.columns}
    for name in columns.contract:
        declared, accepted = _declared_type(source.c[name]), COMPATIBLE.get(types[name])
        if declared is not None and accepted and not issubclass(declared, accepted):
            raise SourceSchemaError(
                f"source column {table.name}.{name} is declared {source.c[name].type}, which "
                f"does not hold the contract's {types[name]}: change it back in the app "
                "database, then re-run the extraction"
            )


def contract_value(column: Column, expr: str, kinds: BatchKinds, sql: EngineSql) -> str:
    """`expr` (a source value) as its contract column's type, NULL when it cannot be one.

    The one conversion the cast check and the append share, so that what is checked is what is
    written. A timestamp held as text (SQLite has no other kind) may carry a UTC offset: it is
    normalised to UTC by the landing files' rule; a plain CAST kept its wall time.
    """
    if column.type == "TIMESTAMP" and column.name in kinds.texts:
        return sql.dialect.try_utc_timestamp(expr)
    cast = f"TRY_CAST({expr} AS {sql.sql_type(column)})"
    if column.type not in _INTEGER_TYPES and not column.type.startswith("DECIMAL"):
        return cast
    if column.type in _INTEGER_TYPES and (
        column.name in kinds.texts or column.name in kinds.floats
    ):
        # Rounded half up alike: DuckDB's cast rounds 3.5 to 4, Spark's truncates a float to 3
        # and reads the text '3.5' as no integer, so a refusal named another value (or none).
        cast = (
            f"TRY_CAST(round(TRY_CAST({expr} AS DECIMAL(38,{_INTEGER_SCALE}))) "
            f"AS {sql.sql_type(column)})"
        )
    if column.name in kinds.texts:
        # Only a number's spelling reaches either cast: DuckDB's read '0x10', '1_000' and
        # '0b11', Spark's refused them; Spark's trims control characters ('5\x00'), DuckDB's
        # refused them. The same spaces as the timestamp rule are allowed around it.
        return f"CASE WHEN {sql.dialect.full_match(expr, _NUMBER_TEXT)} THEN {cast} END"
    return cast


_INTEGER_TYPES = ("BIGINT", "INTEGER")
# Digits kept when an integer column's text or float is read as a decimal, then rounded.
_INTEGER_SCALE = 9
# A number as text: the payments files' spelling, spaces around it (as a timestamp's).
_NUMBER_TEXT = f"{SPACES}{DECIMAL_SPELLING}{SPACES}"


def _loses_digits(column: Column, expr: str, kinds: BatchKinds, sql: EngineSql) -> str | None:
    """SQL true when the contract's numeric type holds `expr` only rounded (numeric(12,4) into
    DECIMAL(10,2), 3.7 into an INTEGER): both engines' casts round without a word (and not
    alike: DuckDB rounds 3.7 to 4, Spark truncates it to 3). None for other types.

    Both sides are compared in a decimal wide enough for any value the type holds. A float is
    compared to 7 places: past them its digits are its binary form's (a DECIMAL(10,2) value
    near 10^8 is off by up to 2^-27 as a double), not the source's; text and decimals exactly.
    """
    if not column.type.startswith(("BIGINT", "INTEGER", "DECIMAL")):
        return None
    wide = "DECIMAL(38,7)" if column.name in kinds.floats else "DECIMAL(38,18)"
    typed = contract_value(column, expr, kinds, sql)
    return f"TRY_CAST({typed} AS {wide}) <> TRY_CAST({expr} AS {wide})"


def _refuses(column: Column, kinds: BatchKinds, sql: EngineSql, required: bool) -> str:
    """SQL true when a row of `_source_batch` holds in `column` a value its contract type cannot
    hold or holds only rounded, or (`required`) no value."""
    value = sql.quote(column.name)
    rounded = _loses_digits(column, value, kinds, sql)
    refused = f"{contract_value(column, value, kinds, sql)} IS NULL" + (
        f" OR {rounded}" if rounded else ""
    )
    held = f"{value} IS NOT NULL AND ({refused})"
    return f"{value} IS NULL OR ({held})" if required else held


def require_version_ids(
    first_row: Callable[[str], Sequence[object] | None],
    table: RawTable,
    kinds: BatchKinds,
    sql: EngineSql,
) -> None:
    """Raise SourceSchemaError on a row of `_source_batch` without an id its contract type holds
    (NULL, a text, 7030.5). Such a row cannot be dead-lettered as other refused rows are: its
    id is what ties a dead letter to the fixed version that settles it, and what tells the
    versions of a row apart; a source whose ids are broken has lost its primary key, which
    stops the table as two different rows of one id do."""
    column = next(c for c in table.columns if c.name == "id")
    q = sql.quote("id")
    typed = contract_value(column, q, kinds, sql)
    found = first_row(
        f"SELECT CAST({q} AS STRING), CAST({typed} AS STRING) FROM _source_batch "
        f"WHERE {_refuses(column, kinds, sql, required=True)} LIMIT 1"
    )
    if found:
        row_id, typed_id = found
        raise SourceSchemaError(refusal_reason(table, "id", row_id, row_id, typed_id, RERUN))


def refusal(table: RawTable, names: list[str], kinds: BatchKinds, sql: EngineSql) -> str:
    """SQL naming the first column of `names` that refuses a row of `_source_batch`, NULL for
    a row the contract takes: the one rule of what is dead-lettered, on every engine.

    A row is refused for a value its contract type cannot hold or holds only rounded (both
    engines' casts round without a word, and not alike), and for a NULL in updated_at (with id,
    its version key: such a row never matched its stored version, NULL = NULL being not true)
    or in a column the raw table's blocking gate requires (checks/gates.required_columns):
    written, that version stayed in the log and failed the gate, which judges the whole log,
    on every later run, the row fixed in the app or not. The id is checked before
    (`require_version_ids`)."""
    from data_platform.checks.gates import required_columns

    required = {"updated_at", *required_columns(table.qualified_name)}
    columns = {c.name: c for c in table.columns}
    whens = " ".join(
        f"WHEN {_refuses(columns[n], kinds, sql, n in required)} THEN {sql_string(n)}"
        for n in sorted(names, key=lambda n: n != "updated_at")
        if n != "id"
    )
    return f"CASE {whens} END"


def refused_rows_sql(
    table: RawTable, columns: SourceColumns, kinds: BatchKinds, sql: EngineSql
) -> str:
    """`_source_batch`'s refused rows: the column refusing each, its id, that column's value
    and the value as its contract type would hold it (text), and the whole row (extra columns
    included) as a JSON object of its values as text: the dead letter's record (its reason, not
    the record, keys it: `database.new_dead_letters_sql`)."""
    q, contract = sql.quote, {c.name: c for c in table.columns}
    names = [n for n in columns.contract if n != "id"]
    # The refusing column's name under a name no source column has: a source column named
    # `_refused` made the query ambiguous on both engines (DuckDB's error named none of it).
    taken = {n.lower() for n in [*columns.contract, *columns.extra]}
    refused = q(next(a for k in range(len(taken) + 1) if (a := "_refused" + "_" * k) not in taken))

    def of_refused(value: Callable[[str], str]) -> str:
        whens = " ".join(f"WHEN {sql_string(n)} THEN CAST({value(n)} AS STRING)" for n in names)
        return f"CASE {refused} {whens} END"

    record = sql.text_object(
        [(n, f"CAST({q(n)} AS STRING)") for n in [*columns.contract, *columns.extra]]
    )
    return (
        f"SELECT {refused}, CAST({q('id')} AS STRING), {of_refused(q)}, "
        f"{of_refused(lambda n: contract_value(contract[n], q(n), kinds, sql))}, {record} "
        f"FROM (SELECT *, {refusal(table, columns.contract, kinds, sql)} AS {refused} "
        f"FROM _source_batch) b WHERE {refused} IS NOT NULL"
    )


def refused_rows(
    rows: Callable[[str], Sequence[Sequence[object]]],
    table: RawTable,
    columns: SourceColumns,
    kinds: BatchKinds,
    sql: EngineSql,
) -> list[tuple[str, str]]:
    """The reason and the record of each row of `_source_batch` the contract refuses (its dead
    letter); raises SourceSchemaError when the batch itself breaks the contract (an id that
    is missing, no BIGINT or no primary key).

    One rule and one message for every engine: the engine runs the SQL (`rows` returns a
    query's rows) and spells identifiers, types and timestamps its way (`sql`)."""

    def first_row(query: str) -> Sequence[object] | None:
        return next(iter(rows(query)), None)

    require_version_ids(first_row, table, kinds, sql)
    require_unique_versions(first_row, table, columns.contract, sql)
    return [
        (refusal_reason(table, name, row_id, value, typed, NEW_VERSION), record)
        for name, row_id, value, typed, record in rows(refused_rows_sql(table, columns, kinds, sql))
    ]


def refusal_reason(
    table: RawTable, name: str, row_id: object, value: str | None, typed: str | None, then: str
) -> str:
    """Why the contract refuses a row, in one line naming table, column and row id, ending in
    what to do (`then`): no `value` where `name` requires one, or a value its contract type
    cannot hold (`typed` None) or holds only rounded (as `typed`).

    The line goes to the run's log, to alerts and to raw.dead_letter's error. In a table holding
    personal data any column may hold some (a positional INSERT shifted by a migration): there a
    value is described only."""
    if value is None:
        if name in ("id", "updated_at"):
            return keyless_row(table, name, row_id, then)
        return (
            f"source table {table.name} has a row without {name} (row id {row_id}): raw."
            f"{table.name}'s blocking gate requires it, and written it would fail that gate for "
            f"good: fix it in the app database, {then}"
        )
    contract = next(c for c in table.columns if c.name == name)
    personal = any(c.personal for c in table.columns)
    shown = f"a value of {len(value)} characters" if personal else repr(value)
    # A refused id is the row id itself: described too (a positional INSERT put an e-mail there).
    shown_id = f" (row id {row_id})" if not (personal and name == "id") else ""
    what = f"{table.name}.{name} holds {shown}{shown_id}"
    if typed is None:
        # A timestamp held as text is read by the landing files' grammar: its form is named (a
        # zone name, which both engines' casts read, is not in it).
        form = f" ({TIMESTAMP_EXAMPLE})" if contract.type == "TIMESTAMP" else ""
        return (
            f"source column {what}, not a {contract.type}{form}: fix the value (or the column's "
            f"type) in the app database, {then}"
        )
    as_stored = "" if personal else f", as {typed}"
    return (
        f"source column {what}, which a {contract.type} holds only rounded{as_stored}: round it "
        f"in the app database (or widen the contract's column, ingestion/tables.py), {then}"
    )
