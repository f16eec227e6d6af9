"""Source-database tables -> raw version logs: the one extraction path every app table shares.

Incremental on `updated_at`: a run reads the rows changed since the raw table's high-water mark
minus a look-back window (clock skew, late commits) and appends only the (id, updated_at)
versions not seen before. The high-water mark is derived from the data itself, so a re-run adds
nothing, and an interrupted run (one transaction) leaves no gap.

A version, once extracted, is never rewritten. A source row changed again without a new
`updated_at` (an app that forgets to bump it, two changes within its resolution) therefore has
content the log cannot take under its key: each run counts the rows it re-read in that state and
names their ids (`UnversionedChanges`), for the asset to report.

Schema changes are never lost silently (`source_schema.py`): the source's columns outside the
contract land in `_rescued`, and a contract column gone stops the extraction before anything is
written. A row the contract refuses (a value its type cannot hold, a NULL where one is
required) goes to raw.dead_letter with the reason, once, and the rest of the table is appended;
the table's dead letters stay reported (`DeadLetters`) until a later version of their row is
extracted, or the app deletes the row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import duckdb

from data_platform.ingestion.file_formats import DUCKDB
from data_platform.ingestion.file_lines import sql_string
from data_platform.ingestion.source_schema import (
    BatchKinds,
    EngineSql,
    SourceColumns,
    SourceSchemaError,
    contract_columns,
    contract_value,
    driver_reason,
    not_a_primary_key,
    quoted,
    reflect,
    refusal,
    refused_rows,
    require_contract,
)
from data_platform.ingestion.tables import DEAD_LETTER, RawTable, ensure_raw_tables, one_transaction

if TYPE_CHECKING:
    import pyarrow as pa
    import sqlalchemy as sa

SOURCE_BATCH_ROWS = 50_000
DUCKDB_SQL = EngineSql(
    quote=quoted,
    sql_type=lambda column: column.type,
    dialect=DUCKDB,
    json_keys=lambda expr: f"json_keys({expr})",
    text_object=lambda pairs: (
        "CAST(json_object(" + ", ".join(f"{sql_string(k)}, {v}" for k, v in pairs) + ") AS VARCHAR)"
    ),
    json_text=lambda expr, key: f"json_extract_string({expr}, {sql_string('$.' + key)})",
)
# No UTC offset in use is wider than this (-12:00 to +14:00).
_WIDEST_OFFSET = timedelta(hours=14)


# Ids named in a report of unversioned changes: enough to find the pattern in the app, few
# enough for a log line (the count is always the full one).
SHOWN_IDS = 20
# Ids asked of the source in one query: well within every driver's limit on bound parameters.
_ID_CHUNK = 500


@dataclass(frozen=True)
class UnversionedChanges:
    """Source rows whose (id, updated_at) is in the version log with other content: changed
    since that version was extracted, without a new updated_at. Their new content is in no
    version; only ids are kept, never values (a users row is personal data)."""

    rows: int = 0
    ids: tuple[int, ...] = ()  # the SHOWN_IDS smallest

    def __add__(self, other: UnversionedChanges) -> UnversionedChanges:
        return UnversionedChanges(
            self.rows + other.rows, tuple(sorted({*self.ids, *other.ids}))[:SHOWN_IDS]
        )


@dataclass(frozen=True)
class DeadLetters:
    """A table's refused rows: how many dead letters a run wrote (`added`), and how many of the
    table's rows are open: dead-lettered, with no version of the row extracted after. The ids
    (as text) of the newest SHOWN_IDS open rows and the newest reason; never values (a users
    row is personal data, and the reasons describe its values only)."""

    added: int = 0
    open: int = 0
    ids: tuple[str, ...] = ()
    reason: str | None = None


@dataclass(frozen=True)
class ExtractionStats:
    table: str
    high_water_mark_before: datetime | None
    high_water_mark_after: datetime | None
    rows_fetched: int
    versions_added: int
    unversioned: UnversionedChanges = field(default_factory=UnversionedChanges)
    dead_letters: DeadLetters = field(default_factory=DeadLetters)


# The log's high-water mark: each version counts up to when it was extracted, at most. One row
# stamped in the future (a source clock ahead) carried a plain max(updated_at) past every real
# change to come, none of which was read until the clock caught up with it. Capped, it counts
# as seen when its run started; it is read again by later runs and added once (its version is
# in the log). The same SQL on DuckDB and Spark.
HIGH_WATER_MARK = "max(least(updated_at, _extracted_at))"


def utc_stamp(sql: EngineSql, extracted_at: datetime) -> str:
    """`extracted_at` as the engine's UTC TIMESTAMP literal: the run's stamp, which the rules
    compare with `_extracted_at`. Written as ISO 8601 with `Z`, which is the instant only when
    the value is naive UTC (as `utc_now()` gives): an aware one is converted first, as its
    `+00:00` and a `Z` after it would be no timestamp at all (NULL, matching nothing)."""
    if extracted_at.tzinfo is not None:
        extracted_at = extracted_at.astimezone(UTC).replace(tzinfo=None)
    return sql.dialect.try_utc_timestamp(f"'{extracted_at.isoformat()}Z'")


def unversioned_changes_sql(
    table: RawTable, versions: str, sql: EngineSql, extracted_at: datetime
) -> str:
    """The ids of `versions` (the run's rows, typed as the log's) whose (id, updated_at) the
    log holds with other content, with their count and whether any of those versions was
    stored by this run (`extracted_at`), on each row (smallest SHOWN_IDS ids, those stored by
    this run first).

    One rule for DuckDB and Spark, which both run it after appending: a version the run added
    is its own stored self, so only keys stored by an earlier run (or twice in one run) can
    differ. `_rescued` is compared only when both sides hold the same columns: a migration
    adding or dropping a source column changes it on every row without any row changing, and
    the schema_drift check reports that. Nor is a contract column that a stored version holds
    NULL while its `_rescued` has the key: the contract grew by a column the source had, whose
    value that version keeps in `_rescued` (every row re-read was "changed" otherwise).
    """
    q = sql.quote
    compared = [n for n in contract_columns(table) if n not in ("id", "updated_at")]
    rescued_keys = sql.json_keys("r._rescued")
    differs = [
        f"(v.{q(n)} IS DISTINCT FROM r.{q(n)} AND NOT (r.{q(n)} IS NULL "
        f"AND coalesce(array_contains({rescued_keys}, '{n}'), false)))"
        for n in compared
    ]
    differs.append(
        f"(v._rescued IS NOT NULL AND r._rescued IS NOT NULL AND "
        f"{sql.json_keys('v._rescued')} = {sql.json_keys('r._rescued')} AND "
        "CAST(v._rescued AS STRING) <> CAST(r._rescued AS STRING))"
    )
    stamp = utc_stamp(sql, extracted_at)
    return (
        "SELECT id, count(*) OVER () AS n, max(this_run) OVER () AS this_run FROM ("
        f"SELECT v.id, max(CASE WHEN r._extracted_at = {stamp} THEN 1 ELSE 0 END) AS this_run "
        f"FROM {versions} v JOIN {table.qualified_name} r "
        "ON r.id = v.id AND r.updated_at = v.updated_at "
        f"WHERE {' OR '.join(differs)} GROUP BY v.id) c "
        f"ORDER BY this_run DESC, id LIMIT {SHOWN_IDS}"
    )


def find_unversioned_changes(
    rows: Callable[[str], Sequence[Sequence[object]]],
    table: RawTable,
    versions: str,
    sql: EngineSql,
    extracted_at: datetime,
) -> UnversionedChanges:
    """`unversioned_changes_sql` run by an engine (`rows` returns a query's rows). A key the
    run itself stored with other content is two different rows of one (id, updated_at) read
    in different batches: a stop, as `source_schema` makes for two in one batch."""
    found = rows(unversioned_changes_sql(table, versions, sql, extracted_at))
    if not found:
        return UnversionedChanges()
    if found[0][2]:
        raise not_a_primary_key(table, found[0][0], "different rows")
    return UnversionedChanges(int(found[0][1]), tuple(int(i) for i, _, _ in found))


def unversioned_changes_warning(table: RawTable, found: UnversionedChanges) -> str:
    """What a person reads in the run's log: which rows, why their content is missing, and what
    to do. Ids only: the values may be personal data."""
    ids = ", ".join(map(str, found.ids)) + (", ..." if found.rows > len(found.ids) else "")
    return (
        f"{found.rows} row(s) of source table {table.name!r} changed without a new updated_at "
        f"since their version was extracted (ids {ids}): that content is in no version of "
        f"{table.qualified_name}, which keeps the version first extracted under each "
        "(id, updated_at). Make the app set updated_at on every change (its ORM's onupdate, or "
        "a trigger), then bring these rows' current content in by touching them in the app "
        f"(UPDATE {table.name} SET updated_at = <now, UTC> WHERE id IN (...)) and re-running "
        "the extraction"
    )


def refused_records(refused: list[tuple[str, str]]) -> pa.Table:
    """`source_schema.refused_rows`' (reason, record) pairs as a relation the engines stage."""
    import pyarrow as pa

    return pa.table(
        {"error": [r for r, _ in refused], "raw_record": [r for _, r in refused]},
        pa.schema([("error", pa.string()), ("raw_record", pa.string())]),
    )


def new_dead_letters_sql(
    table: RawTable, staged: str, sql: EngineSql, extracted_at: datetime, order: list[str]
) -> str:
    """`staged`'s refused rows (error, raw_record) as rows of raw.dead_letter (its columns in
    `order`, the engine's layout) that it does not hold yet, once each.

    A refused row is read again by the look-back, by a whole-table run, and (one without
    updated_at) by every run, and its dead letter is written. The key is its reason, which
    names the table, the column, the row's id and the value refused, not (id, updated_at): a
    row without updated_at has no version key. Not the whole record either: a column the
    source gained made the same refused row a second dead letter. A new bad value in the row
    is a new dead letter. There is no file and no line: `dt` is the day it was refused,
    `source` the app table's name, as a file's dead letters name their raw table. The key also
    holds the refused version's updated_at: a later version refused for the same value is a
    new dead letter."""
    stamp = utc_stamp(sql, extracted_at)
    values = {
        "source": sql_string(table.name),
        "dt": f"CAST({stamp} AS DATE)",
        "source_file": "CAST(NULL AS STRING)",
        "line_number": "CAST(NULL AS BIGINT)",
        "raw_record": "n.raw_record",
        "error": "n.error",
        "rejected_at": stamp,
    }

    # The refused version's updated_at (as the record holds its text) is part of the key: the
    # same bad value in a later version of the row (fixed, then broken the same way again) is
    # a new refusal. Keyed on the reason alone it was taken for the first one, which the fixed
    # version had settled: that version was in neither raw nor an open dead letter, and
    # nothing warned. A row without updated_at keeps one dead letter (NULL matches NULL).
    def stamp_of(record: str) -> str:
        return sql.json_text(record, "updated_at")

    return (
        f"SELECT DISTINCT {', '.join(f'{values[c]} AS {c}' for c in order)} FROM {staged} n "
        f"WHERE NOT EXISTS (SELECT 1 FROM {DEAD_LETTER.qualified_name} d "
        f"WHERE d.source = {values['source']} AND d.error = n.error "
        f"AND coalesce({stamp_of('d.raw_record')}, '') = coalesce({stamp_of('n.raw_record')}, ''))"
    )


def open_dead_letters_sql(table: RawTable, sql: EngineSql) -> str:
    """The rows of `table` with dead letters that no version of the row extracted after them
    settles: each id (as text) with its newest reason, newest first. Rows, not letters: a row
    refused again for another value is still one row waiting. Once the app fixes a row, its
    next version lands and its dead letters close; they stay in raw.dead_letter."""
    row_id = sql.json_text("d.raw_record", "id")
    waiting = (
        f"SELECT {row_id} AS id, d.error, d.rejected_at "
        f"FROM {DEAD_LETTER.qualified_name} d WHERE d.source = {sql_string(table.name)} "
        f"AND NOT EXISTS (SELECT 1 FROM {table.qualified_name} r "
        f"WHERE CAST(r.id AS STRING) = {row_id} AND r._extracted_at > d.rejected_at)"
    )
    return (
        "SELECT id, max_by(error, rejected_at) AS error, max(rejected_at) AS newest "
        f"FROM ({waiting}) w GROUP BY id ORDER BY newest DESC, id"
    )


def ids_in_source(engine: sa.Engine, table: RawTable, ids: Sequence[str]) -> set[str]:
    """Which of `ids` (the text of BIGINT ids, as dead letters hold them) the source table
    still holds, asked by primary key a chunk at a time. A text that is no integer cannot be
    asked for and counts as held."""
    import sqlalchemy as sa

    texts: dict[int, set[str]] = {}
    held = set()
    for text in ids:
        if text.lstrip("-").isdigit():
            texts.setdefault(int(text), set()).add(text)
        else:
            held.add(text)
    source_ids = sa.table(table.name, sa.column("id")).c.id
    numbers = sorted(texts)
    with engine.connect() as source:
        for start in range(0, len(numbers), _ID_CHUNK):
            chunk = numbers[start : start + _ID_CHUNK]
            for (found,) in source.execute(sa.select(source_ids).where(source_ids.in_(chunk))):
                held |= texts[int(found)]
    return held


def find_dead_letters(
    rows: Callable[[str], Sequence[Sequence[object]]],
    table: RawTable,
    sql: EngineSql,
    added: int,
    held: Callable[[Sequence[str]], set[str]],
) -> DeadLetters:
    """The table's open rows after a run that wrote `added` dead letters: `open_dead_letters_sql`
    run by an engine (`rows` returns a query's rows), less the rows the app has deleted since
    (`held` tells which ids the source still holds: `ids_in_source`). A deleted row will never
    have a later version, so nothing waits for it: its dead letters, kept, no longer warn."""
    found = rows(open_dead_letters_sql(table, sql))
    present = held([str(i) for i, *_ in found]) if found else set()
    waiting = [(str(i), error) for i, error, _ in found if str(i) in present]
    if not waiting:
        return DeadLetters(added)
    return DeadLetters(added, len(waiting), tuple(i for i, _ in waiting[:SHOWN_IDS]), waiting[0][1])


def dead_letters_warning(table: RawTable, found: DeadLetters) -> str:
    """What a person reads in the run's log and the check: which rows wait, why, and where."""
    ids = ", ".join(found.ids) + (", ..." if found.open > len(found.ids) else "")
    return (
        f"{found.open} refused row(s) of source table {table.name!r} are in no version of "
        f"{table.qualified_name} (ids {ids}; {found.added} dead-lettered by this run); newest "
        f"reason: {found.reason}; each row and its reason: {DEAD_LETTER.qualified_name} where "
        f"source = '{table.name}'"
    )


def read_since(high_water_mark: datetime | None, lookback: timedelta | None) -> datetime | None:
    """Where an extraction starts reading: the mark less the look-back, or None (every row)
    before the first run and for a whole-table run (no look-back, `lookback` None). A look-back
    reaching before year 1 reads every row too: the subtraction would raise OverflowError."""
    if high_water_mark is None or lookback is None or lookback > high_water_mark - datetime.min:
        return None
    return high_water_mark - lookback


def changed_since(
    engine: sa.Engine, updated_at: sa.ColumnElement, since: datetime
) -> sa.ColumnElement:
    """The source's rows changed at or after `since` (naive UTC).

    SQLite keeps timestamps as text and compares them as text, so a value written with a
    negative offset ('05:00-05:00', 10:00 UTC) sorted before a UTC bound it is after, and was
    never extracted. There the comparison is also made on SQLite's own UTC reading (strftime
    applies the offset), kept next to the plain one: a text that is no timestamp at all has no
    reading, and must still reach the cast check. The wide bound lets an index on updated_at
    still narrow the scan.
    """
    import sqlalchemy as sa

    if engine.dialect.name != "sqlite":
        return updated_at >= since
    # Within 14 h of year 1 the subtraction raised OverflowError: the bound stops at year 1.
    floor = since - min(_WIDEST_OFFSET, since - datetime.min)
    reading = sqlite_utc(updated_at)
    return sa.and_(
        updated_at >= floor,
        # No reading: a zone SQLite does not know (' America/New_York', whose row is then a
        # dead letter: TIMESTAMP_GRAMMAR), or no timestamp at all; within the floor, such rows
        # are read again each run.
        sa.or_(updated_at >= since, reading >= sqlite_utc_text(since), reading.is_(None)),
    )


def sqlite_utc(updated_at: sa.ColumnElement) -> sa.ColumnElement:
    """SQLite's own UTC reading of a timestamp held as text ('08:20:00-05:00' reads
    '13:20:00.000'), NULL for a text that is no timestamp to it (or past year 9999 in UTC).
    Text of this one shape compares as the instants do; the stored text does not when offsets
    differ.

    SQLite reads an offset only as ±HH:MM; one written ±HHMM (Python's `%z`) or ±HH, which
    DuckDB's cast reads, is read with the colon put in: with no reading, such a change
    behind UTC sorted before the mark as text and was never extracted."""
    import sqlalchemy as sa

    def read(text: sa.ColumnElement) -> sa.ColumnElement:
        return sa.func.strftime("%Y-%m-%d %H:%M:%f", text)

    text = sa.type_coerce(updated_at, sa.String())  # `+` is then SQLite's `||`

    def sign_at(position: int) -> sa.ColumnElement:
        return sa.func.substr(text, position, 1).in_(["+", "-"])

    head = sa.func.substr(text, 1, sa.func.length(text) - 2)
    with_colon = sa.case(
        (sign_at(-5), head + ":" + sa.func.substr(text, -2)),
        (sign_at(-3), text + ":00"),
    )
    return sa.func.coalesce(read(updated_at), read(with_colon))


def sqlite_utc_text(instant: datetime) -> str:
    """A naive UTC instant as `sqlite_utc` writes it: strftime's %f has milliseconds, so it is
    truncated to them, only ever earlier."""
    return f"{instant:%Y-%m-%d %H:%M:%S}.{instant.microsecond // 1000:03d}"


def source_query(
    engine: sa.Engine, table: RawTable, since: datetime | None
) -> tuple[sa.Select, SourceColumns]:
    """The query of the versions changed since `since` (all when None), and the source's columns
    against the contract; raises SourceSchemaError before anything is read when they break it.

    Rows without updated_at are read by every run: they match no `updated_at >= mark`, so no
    incremental run saw them, until the weekly whole-table run. Read, they are dead-lettered
    once (`new_dead_letters_sql`), and land when the app gives them an updated_at."""
    import sqlalchemy as sa

    source, columns = reflect(engine, table)
    require_contract(source, table, columns)
    # Values as the driver returns them, not through SQLAlchemy's result processing: a text in
    # a DATETIME column must reach the cast check below rather than fail in a parser there.
    selected = [
        sa.type_coerce(source.c[n], sa.types.NullType()).label(n)
        for n in [*columns.contract, *columns.extra]
    ]
    query = sa.select(*selected)
    if since is not None:
        query = query.where(
            sa.or_(changed_since(engine, source.c.updated_at, since), source.c.updated_at.is_(None))
        )
    return query.order_by(source.c.updated_at, source.c.id), columns


def _as_text(value: object) -> str:
    """A source value as text. A float to its 15 significant digits, all a double carries
    (DBL_DIG): past them are its binary form's (15.99 + 1 is 16.990000000000002), which the
    cast check, judging text exactly, would refuse as digits a DECIMAL(10,2) loses; a typed
    float column is compared to 7 places, the same 15 digits at the contract's magnitudes."""
    return format(value, ".15g") if isinstance(value, float) else str(value)


def _arrow_column(values: tuple, text: bool = False) -> pa.Array:
    """`values` as an Arrow column; `text`: a contract text column's, bytes as text."""
    import pyarrow as pa

    as_text = as_contract_text if text else lambda v: v
    try:
        column = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Mixed kinds of values (a text among numbers): as text, for the cast check to judge.
        return pa.array([None if v is None else _as_text(as_text(v)) for v in values], pa.string())
    if text and pa.types.is_binary(column.type):
        return pa.array(list(map(as_contract_text, values)), pa.string())
    return column


def batch_kinds(batch: pa.Table) -> BatchKinds:
    """The batch's columns of text (timestamps that may carry an offset) and of floats (that may
    hold NaN or infinities, and digits only to a float's precision)."""
    import pyarrow as pa

    def of(kind: Callable[[pa.DataType], bool]) -> frozenset[str]:
        return frozenset(f.name for f in batch.schema if kind(f.type))

    return BatchKinds(
        texts=of(lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)),
        floats=of(pa.types.is_floating),
    )


def rescued_value(expr: str, is_float: bool) -> str:
    """`expr` as a value of the `_rescued` object, in DuckDB's SQL.

    JSON has no NaN or infinity, and DuckDB's json_object writes them bare (`{"x":NaN}`), which
    no JSON reader accepts. They become the strings Spark's JSON writer gives them ("NaN",
    "Infinity", "-Infinity"): both engines write the same document, and unlike null (what a
    NULL is) the string still says what the source held.
    """
    if not is_float:
        return expr
    return (
        f"CASE WHEN isnan({expr}) THEN to_json('NaN') WHEN isinf({expr}) THEN "
        f"to_json(CASE WHEN {expr} > 0 THEN 'Infinity' ELSE '-Infinity' END) "
        f"ELSE to_json({expr}) END"
    )


def json_ready(value: object) -> object:
    """An extra column's value as `_rescued` holds it on every engine: JSON's own kinds as they
    are, any other as one spelling of text. Left to the engines, a timestamp was
    `"2026-01-05 10:00:00+00"` on DuckDB and `"2026-01-05T10:00:00.000Z"` on Spark, a numeric
    12.50 was 12.5 and 12.50, and a uuid failed Spark's Arrow conversion."""
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        return value
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    isoformat = getattr(value, "isoformat", None)  # date, time, naive datetime
    return isoformat() if isoformat else str(value)  # Decimal keeps its digits, UUID its form


def source_batches(
    engine: sa.Engine, table: RawTable, query: sa.Select, columns: SourceColumns
) -> Iterator[pa.Table]:
    """The query's rows (`columns.contract`, then `columns.extra`) as Arrow tables of
    SOURCE_BATCH_ROWS rows, streamed: every engine loads the same values, and never the whole
    source table at once."""
    import pyarrow as pa

    names, extra = [*columns.contract, *columns.extra], set(columns.extra)
    texts = {c.name for c in table.columns if c.type == "VARCHAR"}
    with engine.connect() as source, _read_errors(table):
        for rows in _row_pages(source, query):
            values = list(zip(*rows, strict=True))
            yield pa.table(
                {
                    n: _arrow_column(tuple(map(json_ready, col)))
                    if n in extra
                    else _arrow_column(col, text=n in texts)
                    for n, col in zip(names, values, strict=True)
                }
            )


def as_contract_text(value: object) -> object:
    """A contract text column's value, bytes (a blob in SQLite's any-type column) as text:
    UTF-8 decoded, other bytes as `\\xff` escapes. Left to the engines, DuckDB stored a binary
    column's escapes (`SKU\\xFF`, `\\xE2\\x82\\xAC` for a euro sign) and Spark decoded it (`SKU`
    and U+FFFD, `€`); a blob among texts was stored as Python's `b'...'`."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="backslashreplace")
    return value


def _row_pages(source: sa.Connection, query: sa.Select) -> Iterator[Sequence[sa.Row]]:
    """The query's rows, SOURCE_BATCH_ROWS at a time.

    On SQLite each page is a read of its own, by rowid: one streamed SELECT held SQLite's read
    lock while the warehouse took in every batch, and an app's write waited that long (a
    300k-row whole-table run: 7.8 s; the app's commit failed after its 5 s busy timeout). A
    row the app changes between pages keeps its rowid: read before the change or after it,
    and a change after its page is past the high-water mark, read by the next run. A table
    without a rowid is streamed as elsewhere."""
    rowid = _rowid(source, query)
    if rowid is None:
        result = source.execution_options(stream_results=True).execute(query)
        while rows := result.fetchmany(SOURCE_BATCH_ROWS):
            yield rows
        return
    page = query.add_columns(rowid).order_by(None).order_by(rowid).limit(SOURCE_BATCH_ROWS)
    last = None
    while True:
        rows = source.execute(page if last is None else page.where(rowid > last)).fetchall()
        if not rows:
            return
        last = rows[-1][-1]
        yield [row[:-1] for row in rows]


def _rowid(source: sa.Connection, query: sa.Select) -> sa.ColumnElement | None:
    """The rowid of the query's SQLite table, under a name no column of it takes; None on
    another database or for a table WITHOUT ROWID."""
    import sqlalchemy as sa

    if source.dialect.name != "sqlite":
        return None
    [table] = query.get_final_froms()
    declared = source.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"),
        {"name": table.name},
    ).scalar()
    if declared is None or "WITHOUT ROWID" in " ".join(declared.upper().split()):
        return None
    names = {c.name.lower() for c in table.columns}
    alias = next((a for a in ("rowid", "_rowid_", "oid") if a not in names), None)
    return None if alias is None else sa.literal_column(f"{quoted(table.name)}.{alias}")


@contextmanager
def _read_errors(table: RawTable) -> Iterator[None]:
    """A value the driver cannot read (text that is not UTF-8 in SQLite, PostgreSQL's
    'infinity' timestamp) was its traceback, naming no table, and SQLite's quoting the value:
    a person's name in the log and the alert. One line instead, the driver's reason only for a
    table without personal data."""
    import sqlalchemy as sa

    try:
        yield
    except sa.exc.DBAPIError as error:
        personal = any(c.personal for c in table.columns)
        reason = type(error.orig or error).__name__ if personal else driver_reason(error)
        raise SourceSchemaError(
            f"source table {table.name} holds a value its database driver cannot read "
            f"({reason}): find and fix it in the app database, then re-run the extraction"
        ) from None


def _append_new_versions(
    conn: duckdb.DuckDBPyConnection,
    table: RawTable,
    columns: SourceColumns,
    kinds: BatchKinds,
    extracted_at: datetime,
) -> tuple[int, UnversionedChanges]:
    """Append the batch's unseen (id, updated_at) versions; their number, and the batch's rows
    whose key is stored with other content."""
    contract = {c.name: c for c in table.columns}
    names = columns.contract
    typed = ", ".join(
        f"{contract_value(contract[n], f'b.{quoted(n)}', kinds, DUCKDB_SQL)} AS {quoted(n)}"
        for n in names
    )
    pairs = ", ".join(
        f"{sql_string(n)}, {rescued_value(f'b.{quoted(n)}', n in kinds.floats)}"
        for n in columns.extra
    )
    rescued = f"json_object({pairs})" if columns.extra else "NULL"
    # Typed once, as Spark stages them: the append and the comparison read the same versions.
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _source_versions AS "
        f"SELECT {typed}, CAST({rescued} AS JSON) AS _rescued FROM _source_batch b"
    )
    target = ", ".join(quoted(n) for n in [*names, "_extracted_at", "_rescued"])
    values = ", ".join(f"v.{quoted(n)}" for n in names)
    before = conn.execute(f"SELECT count(*) FROM {table.qualified_name}").fetchone()[0]
    conn.execute(
        f"INSERT INTO {table.qualified_name} ({target}) "
        f"SELECT DISTINCT ON (v.id, v.updated_at) {values}, ?, v._rescued "
        "FROM _source_versions v "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table.qualified_name} r "
        "WHERE r.id = v.id AND r.updated_at = v.updated_at)",
        [extracted_at],
    )
    added = conn.execute(f"SELECT count(*) FROM {table.qualified_name}").fetchone()[0] - before
    found = find_unversioned_changes(
        lambda sql: conn.execute(sql).fetchall(),
        table,
        "_source_versions",
        DUCKDB_SQL,
        extracted_at,
    )
    return added, found


def _dead_letter(
    conn: duckdb.DuckDBPyConnection,
    table: RawTable,
    names: list[str],
    kinds: BatchKinds,
    refused: list[tuple[str, str]],
    extracted_at: datetime,
) -> int:
    """Write the batch's refused rows to raw.dead_letter (those it does not hold yet) and take
    them out of the batch; how many dead letters were written."""
    _refused_arrow = refused_records(refused)  # read by DuckDB, by name
    target = ", ".join(quoted(n) for n in DEAD_LETTER.column_names)
    new = new_dead_letters_sql(
        table, "_refused_arrow", DUCKDB_SQL, extracted_at, DEAD_LETTER.column_names
    )
    [(written,)] = conn.execute(
        f"INSERT INTO {DEAD_LETTER.qualified_name} ({target}) {new}"
    ).fetchall()
    conn.execute(
        f"DELETE FROM _source_batch WHERE ({refusal(table, names, kinds, DUCKDB_SQL)}) IS NOT NULL"
    )
    return written


def extract_incremental(
    conn: duckdb.DuckDBPyConnection,
    engine: sa.Engine,
    table: RawTable,
    lookback: timedelta | None,
    extracted_at: datetime,
) -> ExtractionStats:
    """Append the source table's new (id, updated_at) versions to its raw version log, and count
    the rows re-read whose key is stored with other content (`UnversionedChanges`). The rows
    the contract refuses go to raw.dead_letter instead, in the same transaction (`DeadLetters`).
    With `lookback` None every source row is read, so every row is compared (`read_since`)."""
    ensure_raw_tables(conn, (table, DEAD_LETTER))
    # The timestamp rule reads offset-less text in the session's zone: the warehouse's, UTC,
    # whoever opened this connection.
    conn.execute("SET TimeZone = 'UTC'")
    hwm_sql = f"SELECT {HIGH_WATER_MARK} FROM {table.qualified_name}"
    hwm_before = conn.execute(hwm_sql).fetchone()[0]
    query, columns = source_query(engine, table, read_since(hwm_before, lookback))
    fetched = added = dead_lettered = 0
    unversioned = UnversionedChanges()
    with one_transaction(conn):
        for _source_arrow in source_batches(engine, table, query, columns):
            # DuckDB finds the Python variable by name; named like the temp table, it would be
            # shadowed by it from the second batch on, which re-read the first batch.
            conn.execute("CREATE OR REPLACE TEMP TABLE _source_batch AS FROM _source_arrow")
            kinds = batch_kinds(_source_arrow)
            refused = refused_rows(
                lambda sql: conn.execute(sql).fetchall(), table, columns, kinds, DUCKDB_SQL
            )
            if refused:
                dead_lettered += _dead_letter(
                    conn, table, columns.contract, kinds, refused, extracted_at
                )
            fetched += _source_arrow.num_rows
            batch_added, batch_unversioned = _append_new_versions(
                conn, table, columns, kinds, extracted_at
            )
            added += batch_added
            unversioned += batch_unversioned
        conn.execute("DROP TABLE IF EXISTS _source_versions")
    dead_letters = find_dead_letters(
        lambda sql: conn.execute(sql).fetchall(),
        table,
        DUCKDB_SQL,
        dead_lettered,
        lambda ids: ids_in_source(engine, table, ids),
    )
    hwm_after = conn.execute(hwm_sql).fetchone()[0]
    return ExtractionStats(
        table.name, hwm_before, hwm_after, fetched, added, unversioned, dead_letters
    )
