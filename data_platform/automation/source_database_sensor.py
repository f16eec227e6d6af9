"""Source-database sensor: a table whose max(updated_at) moved requests its raw extraction.

A row stamped in the future (a skewed clock) does not count: the mark is the newest updated_at
not ahead of the sensor's clock, or that one row would hide every later change. Newest is by
instant: on SQLite, whose text timestamps may carry a UTC offset, by SQLite's own UTC reading
(the extraction's), not by the text.

It reads each table's newest updated_at values (a page or a few, updated_at is indexed there)
and its columns from the application database, and never
opens the DuckDB warehouse, which a run may be writing. Any change of a mark counts (not only
an increase), as extraction is idempotent and a restored source must be re-read. Only the
tables that changed are extracted, together, in one run.

A transaction that commits late (it stamped its rows, then took a while) lands below the mark
and moves nothing. Each extraction re-reads its look-back window, so the next one takes such
rows in; but when the table then goes quiet there was no next one, and the rows waited for the
next change, or the weekly reconciliation. So every table whose mark moved is read once more
`SETTLE_AFTER` later if nothing moved it meanwhile (a "settling" run, tagged so): late commits
wait minutes, not for the next change. The cursor is JSON `{"marks": {table: mark},
"settle": {table: when its settling read is due}, "requests": runs requested so far}`.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg

from data_platform.ingestion.database import changed_since, sqlite_utc, sqlite_utc_text
from data_platform.ingestion.source_schema import missing_sqlite_file
from data_platform.ingestion.tables import SOURCE_DB_TABLES
from data_platform.resources.source_database import SourceDatabase

if TYPE_CHECKING:
    import sqlalchemy as sa

TABLES = [table.name for table in SOURCE_DB_TABLES]


def raw_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", table])


# A row stamped further ahead of the sensor's clock than this is a clock skewed or a bad write:
# the mark is taken below it, or it would hide every later change until its time came.
FUTURE_SKEW = timedelta(minutes=5)
# Rows read at a time, newest first, looking for the newest one not stamped ahead; past this
# many stamped ahead (a whole app writing local time as UTC) the newest of all is the mark, as
# each of its changes then moves it.
_PAGE, _PAGES = 100, 10
# Long enough for the transactions in flight when a table went quiet to commit; far below the
# extraction's look-back (60 min by default), which the late rows must still be inside.
SETTLE_AFTER = timedelta(minutes=10)
SETTLING_TAG = "data_platform/settling"


def _as_utc(value: object) -> datetime | None:
    """A source's updated_at as a UTC instant (naive is UTC), or None when it is no timestamp
    Python can read (then it is taken as not ahead)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # past year 9999 or before year 1 once in UTC: a sentinel, not news
        return (
            datetime.max.replace(tzinfo=UTC) if value.year > 1 else datetime.min.replace(tzinfo=UTC)
        )


def _newest_instant(
    conn: sa.Connection, table: str, value: object, limit: datetime | None
) -> object:
    """The updated_at of the greatest instant from `value`'s on (and not after `limit`, when
    given); `value` itself when none is readable.

    SQLite sorts text as text: a change stamped '08:20:00-05:00' (13:20 UTC) sorted below a
    mark '12:00:00', so the top of the index moved nothing and the change waited hours, until
    its local text passed the mark. A later instant is at most the widest offset lower in text,
    so `changed_since`, the extraction's filter, bounds the read to that end of the index; its
    rows are ranked by SQLite's UTC reading, as the extraction compares them. Elsewhere a
    timestamp column sorts by instant already (timestamptz), and the top of the index is it.
    """
    import sqlalchemy as sa

    since = _as_utc(value)
    if conn.dialect.name != "sqlite" or since is None:
        return value
    since = since.replace(tzinfo=None)
    column = sa.column("updated_at")
    as_utc = sqlite_utc(column)
    # The reading too must be at or after `value`'s: a text with none (not a timestamp to
    # SQLite) cannot be ranked, and is no newer.
    query = (
        sa.select(column).select_from(sa.table(table))
        .where(changed_since(conn.engine, column, since), as_utc >= sqlite_utc_text(since))
        .order_by(as_utc.desc(), column.desc()).limit(1)
    )  # fmt: skip
    if limit is not None:
        query = query.where(as_utc <= sqlite_utc_text(limit.astimezone(UTC).replace(tzinfo=None)))
    newest = conn.execute(query).scalar()
    return value if newest is None else newest


def _mark(conn: sa.Connection, table: str, now: datetime) -> str | None:
    """The table's newest updated_at (by instant, see `_newest_instant`) not stamped ahead of
    `now` (+ FUTURE_SKEW), as stored (the text cursors always held), with the rows stamped
    ahead counted after it; None for an empty table. Each query walks the updated_at index
    from its top: the rows stamped ahead are skipped, a page at a time."""
    import sqlalchemy as sa

    limit = now + FUTURE_SKEW
    column = sa.column("updated_at")
    newest_first = (
        sa.select(column).select_from(sa.table(table)).where(column.is_not(None))
        .order_by(column.desc()).limit(_PAGE)
    )  # fmt: skip
    ahead: list[object] = []
    for _ in range(_PAGES):
        page = newest_first if not ahead else newest_first.where(column < ahead[-1])
        values = conn.execute(page).scalars().all()
        for value in values:
            instant = _as_utc(value)
            if instant is None or instant <= limit:
                newest = _newest_instant(conn, table, value, limit)
                return f"{newest} (+{len(ahead)} ahead, up to {ahead[0]})" if ahead else str(newest)
            ahead.append(value)
        if len(values) < _PAGE:
            break
    if not ahead:
        return None
    return f"{_newest_instant(conn, table, ahead[0], None)} (+{len(ahead)} ahead)"


def high_water_marks(
    engine: sa.Engine, tables: list[str], log: logging.Logger | None = None
) -> dict[str, str]:
    """Each table's mark (see `_mark`); empty or missing tables are left out, and so is a table
    without an `updated_at` column (said in the log): one table the contract no longer fits
    must not stop change detection for the others."""
    import sqlalchemy as sa

    now = datetime.now(UTC)
    inspector = sa.inspect(engine)
    existing = set(inspector.get_table_names())
    marks = {}
    with engine.connect() as conn:
        for table in tables:
            if table not in existing:
                continue
            if "updated_at" not in {c["name"] for c in inspector.get_columns(table)}:
                if log is not None:
                    log.warning(
                        f"source table {table} has no updated_at column: its changes are not "
                        "detected (and its extraction fails) until the column is back"
                    )
                continue
            mark = _mark(conn, table, now)
            if mark is not None:
                marks[table] = mark
    return marks


def moved(marks: dict[str, str], seen: dict[str, str]) -> list[str]:
    return sorted(table for table, mark in marks.items() if seen.get(table) != mark)


def read_cursor(cursor: str | None) -> tuple[dict[str, str], dict[str, str], int]:
    """(marks, settling reads due, runs requested) of a cursor; one from before the settling
    reads was the marks alone, one from before the count had none."""
    stored = json.loads(cursor) if cursor else {}
    if "marks" not in stored:
        return stored, {}, 0
    return stored["marks"], stored["settle"], stored.get("requests", 0)


def plan(
    marks: dict[str, str], cursor: str | None, now: datetime
) -> tuple[dict[str, list[str | None]], dict[str, str], int, str]:
    """({table: [mark before, mark now]} of the tables whose mark moved, {table: due time} of
    the settling reads due now, the runs requested before, the cursor after them). A move
    (re)sets its table's settling read to SETTLE_AFTER from now."""
    seen, settle, requests = read_cursor(cursor)
    moves = {table: [seen.get(table), marks[table]] for table in moved(marks, seen)}
    due = {
        table: at
        for table, at in settle.items()
        if table in marks and table not in moves and datetime.fromisoformat(at) <= now
    }
    pending = {t: at for t, at in settle.items() if t in marks and t not in due}
    pending |= {table: (now + SETTLE_AFTER).isoformat() for table in moves}
    after = requests + (1 if moves or due else 0)
    return (
        moves,
        due,
        requests,
        json.dumps({"marks": seen | marks, "settle": pending, "requests": after}),
    )


@dg.sensor(
    name="source_database_changes",
    description="A newer max(updated_at) in the application database -> incremental extraction "
    "(and one settling re-read 10 minutes after a table's last change, for late commits).",
    target=[raw_key(table) for table in TABLES],
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
def source_database_sensor(context: dg.SensorEvaluationContext, source_database: SourceDatabase):
    import sqlalchemy as sa

    if missing_sqlite_file(sa.engine.make_url(source_database.url)) is not None:
        return dg.SkipReason("the source database does not exist yet")
    marks = high_water_marks(source_database.engine(), TABLES, context.log)
    moves, due, serial, cursor = plan(marks, context.cursor, datetime.now(UTC))
    context.update_cursor(cursor)
    if not moves and not due:
        return dg.SkipReason("no source table changed")
    # The key names each mark's move and the count of runs requested before: Dagster never runs
    # a key twice, so a key of the new marks alone skipped a source restored to marks it had
    # before, and one of the move alone a move made again (A->B->A->B). A tick retried from the
    # same cursor repeats its key. A settling read is named by when it was due.
    what = json.dumps({"moved": moves, "settling": due}, sort_keys=True)
    return dg.RunRequest(
        run_key=f"extract:{serial}:{what}",
        asset_selection=[raw_key(table) for table in sorted([*moves, *due])],
        tags={SETTLING_TAG: ",".join(sorted(due))} if due else {},
    )
