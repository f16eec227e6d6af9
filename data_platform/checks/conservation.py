"""Conservation: every non-blank record of a landing file is a raw row or a dead letter.

The ingestion's own figures (materialization metadata `records_read`) come from the very temp
table that its loaded and dead-lettered counts come from, so records_read = loaded +
dead-lettered holds there by construction and checking it would prove nothing. This check
re-counts the records from the files themselves (plain Python over the bytes, sharing no code
with ingestion) and compares them, file by file, with what the warehouse holds after the
commit. It costs one more read of the run's files (a download on S3): the price of a check
that can catch lost or invented records.

A file that cannot be read at all, or that is not read by its name or place (`misnamed`: the
one rule this check takes from ingestion), counts as one record, on both sides: ingestion gives it one
dead letter (line_number NULL), and this check counts one record for a file it cannot read
itself. A file gone from the landing zone since the load counts as one where ingestion found it
unreadable too. A file that ingestion loaded but that this check cannot read (DuckDB's gunzip
does not verify gzip checksums) therefore shows up as unbalanced.

Files that changed after the load. The check runs minutes after its run's ingestion (it queues
in the duckdb pool behind other runs), and the landing zone moves meanwhile: a file lands, a
producer appends to or rewrites a loaded file, a compaction deletes one. Counting the new content
against the old rows failed this blocking gate on a load that was right. A new or rewritten file
moves the day's state in the landing sensor, which re-runs the day, and that run's check judges
the new content; a deleted file requests nothing (the rows it loaded stay, see the sensor). So a
file modified after its day's load (less a second when stamped in whole seconds, as S3 does,
from its own clock) or gone since, that no longer balances, is left out of the balance with its
stored rows and listed (`files_changed_after_load`; `files_landed_after_load` for new ones); one
that still balances counts as any other. A day with nothing stored has no load time of its own:
the run's start stands in. Files not changed since the load stay strictly judged.

Counts alone miss records put under the wrong line (a reader that numbers lines its own way, as
DuckDB's does on a file mixing LF and CRLF), so the sum of the records' line numbers is compared
too: the dead letters' and lineage's line numbers are what a person opens the file at. Lines
end at LF; a CR ending one is part of its line ending, as the ingestion has it.
"""

import gzip
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import dagster as dg

from data_platform.checks.report import markdown_table
from data_platform.checks.scope import (
    DayVerdict,
    Window,
    day_verdicts,
    run_days,
    run_start,
    run_window,
)
from data_platform.ingestion.file_formats import FileFormat
from data_platform.ingestion.files import day_bounds, partition_of
from data_platform.partitions import DAILY_PARTITIONS, WAREHOUSE_POOL
from data_platform.resources.landing import LandingZone
from data_platform.resources.warehouse import Warehouse
from data_platform.resources.warehouse_reader import WarehouseReader

if TYPE_CHECKING:  # pandas loads when a check first runs, not with the Definitions
    import pandas as pd

# What Python raises on a file it cannot read at all (gone, denied, bad gzip). Ingestion has its
# own list: this check shares no code with what it checks.
_CANNOT_READ = (OSError, EOFError, zlib.error)
_BOM = b"\xef\xbb\xbf"
# A file stamped in whole seconds (S3: truncated, from S3's clock, not the one that stamped the
# load) counts as changed since the load when modified after it less this. A finer stamp (a
# local file, the machine's clock) is compared as it is.
CLOCK_SLACK = timedelta(seconds=1)
MODIFIED_AFTER_LOAD = "modified after load: re-run pending"
GONE_SINCE_LOAD = "gone since load"


class RecordCount(NamedTuple):
    records: int
    line_sum: int  # of the records' 1-based line numbers, header and blank lines counted


def count_records(path: Path, header_lines: int) -> RecordCount:
    """Non-blank lines after the header, the first `header_lines` non-blank ones (the left side
    of the contract's conservation rule), and the sum of their line numbers."""
    opener = gzip.open if path.name.endswith(".gz") else open
    records = line_sum = 0
    headers = header_lines
    with opener(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            # A byte order mark opening the file is no content (every reader drops it): a line
            # holding only one counted as a record nobody loaded, failing the check for good.
            line = line.removeprefix(_BOM) if number == 1 else line
            if not line.strip():
                continue  # blank, before the header as anywhere
            if headers:
                headers -= 1
            else:
                records += 1
                line_sum += number
    return RecordCount(records, line_sum)


def file_records(landing: LandingZone, key: str, fmt: FileFormat) -> tuple[RecordCount, bool]:
    """(records, readable): a file that cannot be read counts as one record, numbered nowhere,
    as does one ingestion dead-letters whole for what it holds (`FileFormat.headerless`)."""
    try:
        with landing.local_path(key) as path:
            if fmt.headerless(path):
                return RecordCount(1, 0), False
            return count_records(path, fmt.header_lines), True
    except _CANNOT_READ:
        return RecordCount(1, 0), False


@dataclass(frozen=True)
class FileBalance:
    key: str
    dt: date
    records: int
    loaded: int
    dead_lettered: int
    readable: bool = True
    line_sum: int = 0  # of the file's records' line numbers
    stored_line_sum: int = 0  # of the raw rows' and dead letters' line numbers
    changed: str = ""  # why it is left out of the balance (changed after load), or ""

    @property
    def difference(self) -> int:
        return self.records - self.loaded - self.dead_lettered

    @property
    def misnumbered(self) -> bool:
        return self.line_sum != self.stored_line_sum

    @property
    def unbalanced(self) -> bool:
        return bool(self.difference) or self.misnumbered


def warehouse_counts(reader: WarehouseReader, fmt: FileFormat, window: Window) -> "pd.DataFrame":
    """Rows, dead letters and whole-file dead letters per file of the window, and when each dt
    was loaded."""
    predicate, params = window.where("dt")
    return reader.frame(
        f"""
        WITH file_rows AS (
            SELECT _source_file AS key, dt, count(*) AS n_rows, max(_loaded_at) AS rows_at,
                CAST(sum(_line_number) AS BIGINT) AS rows_line_sum
            FROM {fmt.table.qualified_name} WHERE {predicate} GROUP BY ALL
        ), file_dead AS (
            SELECT source_file AS key, dt, count(*) AS n_dead,
                count(*) FILTER (WHERE line_number IS NULL) AS n_whole, max(rejected_at) AS dead_at,
                CAST(sum(line_number) AS BIGINT) AS dead_line_sum
            FROM raw.dead_letter WHERE source = ? AND {predicate} GROUP BY ALL
        )
        SELECT key, dt, coalesce(n_rows, 0) AS loaded, coalesce(n_dead, 0) AS dead,
            coalesce(n_whole, 0) AS whole_file,
            coalesce(rows_line_sum, 0) + coalesce(dead_line_sum, 0) AS line_sum,
            max(greatest(rows_at, dead_at)) OVER (PARTITION BY dt) AS loaded_at
        FROM file_rows FULL JOIN file_dead USING (key, dt)
        """,
        [*params, fmt.source, *params],
    )


def window_files(landing: LandingZone, fmt: FileFormat, window: Window):
    """The landing files of the window's days: one listing of their key range, not the
    source's whole history (one S3 request per 1,000 files of it, every run)."""
    bounds = day_bounds(fmt.source, window.first, window.last) if window.first else ()
    for file in landing.list_files(f"{fmt.source}/", *bounds):
        dt = partition_of(file.key)
        if dt is not None and window.contains(dt):
            yield file, dt


def balances(
    landing: LandingZone,
    fmt: FileFormat,
    counts: "pd.DataFrame",
    window: Window,
    run_started: datetime | None = None,
):
    """(per-file balances, keys of files that landed after their dt was loaded).

    A balance whose file may have changed after its day's load (modified since, or gone) says
    so in `changed`: the check leaves it out if it does not balance. A day with nothing stored
    was loaded at `run_started` (naive UTC) if given."""
    stored = {row.key: row for row in counts.itertuples()}
    load_time = {row.dt.date(): row.loaded_at for row in counts.itertuples()}
    found, late = [], []
    for file, dt in window_files(landing, fmt, window):
        loaded_at = load_time.get(dt, run_started)
        modified = datetime.fromtimestamp(file.modified, UTC).replace(tzinfo=None)
        slack = CLOCK_SLACK if file.modified == int(file.modified) else timedelta(0)
        changed = loaded_at is not None and modified > loaded_at - slack
        if file.key not in stored and changed:
            late.append(file.key)
            continue
        if fmt.misnamed(file):  # not read by its name: one record, as unreadable
            (records, line_sum), readable = RecordCount(1, 0), False
        else:
            (records, line_sum), readable = file_records(landing, file.key, fmt)
        loaded, dead, stored_line_sum = _stored(stored.pop(file.key, None))
        why = MODIFIED_AFTER_LOAD if changed else ""
        found.append(
            FileBalance(
                file.key, dt, records, loaded, dead, readable, line_sum, stored_line_sum, why
            )
        )
    # A file gone from the landing zone is one record if ingestion found it unreadable as well
    # (gone before it was read: its one dead letter); one it loaded rows from went since.
    for r in stored.values():
        loaded, dead, stored_line_sum = _stored(r)
        records = 1 if r.whole_file else 0
        found.append(
            FileBalance(
                r.key,
                r.dt.date(),
                records,
                loaded,
                dead,
                False,
                0,
                stored_line_sum,
                GONE_SINCE_LOAD,
            )
        )
    return found, late


def _stored(row) -> tuple[int, int, int]:
    """(rows loaded, dead letters, sum of their line numbers) of a file, none if not stored."""
    if row is None:
        return 0, 0, 0
    return int(row.loaded), int(row.dead), int(row.line_sum)


def per_dt(found: list[FileBalance]) -> "pd.DataFrame":
    import pandas as pd

    frame = pd.DataFrame(
        [(b.dt, 1, b.records, b.loaded, b.dead_lettered, b.difference) for b in found],
        columns=["dt", "files", "records in files", "rows loaded", "dead-lettered", "difference"],
    )
    return frame.groupby("dt", as_index=False).sum()


def day_verdict(
    scope: str, found: list[FileBalance], changed: list[FileBalance], late: list[str]
) -> DayVerdict:
    """The balance of the files of `scope` (a day) as a verdict: passed unless a file that did
    not change since the load is off."""
    import pandas as pd

    off = [b for b in found if b.unbalanced]
    metadata = {
        "partitions": scope,
        "records_in_files": sum(b.records for b in found),
        "rows_loaded": sum(b.loaded for b in found),
        "rows_dead_lettered": sum(b.dead_lettered for b in found),
        "per_dt": dg.MetadataValue.md(markdown_table(per_dt(found))),
        "files_unbalanced": len(off),
        "files_misnumbered": sum(b.misnumbered for b in found),
        "files_unreadable": dg.MetadataValue.json(sorted(b.key for b in found if not b.readable)),
        "files_landed_after_load": dg.MetadataValue.json(late),
        "files_changed_after_load": dg.MetadataValue.json(sorted(b.key for b in changed)),
    }
    if changed:
        metadata["changed_after_load"] = dg.MetadataValue.md(
            markdown_table(
                pd.DataFrame(
                    [(b.key, b.changed, b.records, b.loaded, b.dead_lettered) for b in changed],
                    columns=["file", "why", "records now", "rows loaded", "dead-lettered"],
                )
            )
        )
    if off:
        offenders = pd.DataFrame(
            [vars(b) | {"difference": b.difference, "misnumbered": b.misnumbered} for b in off]
        )
        metadata["unbalanced_files"] = dg.MetadataValue.md(markdown_table(offenders))
    return DayVerdict(
        passed=not off,
        metadata=metadata,
        description=(
            f"{len(off)} file(s) where records != rows + dead letters, or their line numbers "
            "differ from the file's: records lost, doubled or misplaced by the ingestion; "
            "re-run the day, and report the file if it stays unbalanced"
            if off
            else None
        ),
    )


def conservation_check(fmt: FileFormat) -> dg.AssetChecksDefinition:
    key = dg.AssetCheckKey(dg.AssetKey(["raw", fmt.source]), "conservation")

    @dg.asset_check(
        asset=key.asset_key,
        name=key.name,
        blocking=True,
        pool=WAREHOUSE_POOL,
        # A verdict per day: a day whose files did not balance stays failed, in the UI and to
        # automation, until a run of that day balances (see dead_letter_ratio).
        partitions_def=DAILY_PARTITIONS,
        description="Records re-counted in the run's landing files = raw rows + dead letters, "
        "per file, at the same line numbers. ERROR and blocking: lost, invented or misplaced "
        "records make every number downstream wrong.",
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: Warehouse, landing: LandingZone):
        window = run_window(context)
        with warehouse.reader() as reader:
            counts = warehouse_counts(reader, fmt, window)
        listed, late = balances(landing, fmt, counts, window, run_start(context))
        # Changed since the load and off: the day's re-run judges the new content.
        changed, found = [], []
        for b in listed:
            (changed if b.changed and b.unbalanced else found).append(b)
        late_days = {file_key: partition_of(file_key) for file_key in late}
        days = run_days(window, [b.dt for b in listed] + list(late_days.values()))
        verdicts = {
            day: day_verdict(
                day.isoformat(),
                [b for b in found if b.dt == day],
                [b for b in changed if b.dt == day],
                [file_key for file_key, dt in late_days.items() if dt == day],
            )
            for day in days
        }
        yield from day_verdicts(context, key, verdicts)

    return _check
