"""Rendering line tables to files and publishing them in the landing zone.

DuckDB renders each line (text ending in a newline) and hands back Arrow batches; the bytes of
a batch's string column *are* the file content, so they go to disk without a Python object
per line. One query renders all the files that share a spelling (a day's six event files), cut
at the files' line counts, because a query's fixed cost outweighs rendering a small file.
Each file is finished in a local temporary folder and then published with
`LandingZone.upload_file`, which readers never see half-written (local rename or S3 upload).
Gzip output is byte-reproducible: no timestamp and no file name in its header.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import duckdb
import numpy as np
import pyarrow as pa

from data_platform.scratch import remove_abandoned_scratch, scratch_folder
from data_platform.simulator.defects import DefectKinds
from data_platform.simulator.summary import FileReport

if TYPE_CHECKING:
    from data_platform.resources.landing import LandingZone


@dataclass(frozen=True)
class PlannedFile:
    """One file to write: where it goes and what its lines are (one defect code per line)."""

    key: str
    source: str
    dt: date
    kinds: np.ndarray  # defect code per line, CLEAN if none
    defect_kinds: DefectKinds
    header: str | None = None
    file_defects: tuple[str, ...] = ()

    def report(self) -> FileReport:
        counts = self.defect_kinds.counts(self.kinds)
        blank = counts.get("blank_line", 0)
        for name in self.file_defects:
            counts[name] = counts.get(name, 0) + 1
        return FileReport(
            key=self.key,
            source=self.source,
            dt=self.dt,
            records=len(self.kinds) - blank,
            blank_lines=blank,
            defects=counts,
            hard_defects=sum(n for k, n in counts.items() if k in self.defect_kinds.hard),
        )


@dataclass(frozen=True)
class RenderJob:
    """Files rendered by one query: `lines` holds their rows back to back, in file order."""

    lines: pa.Table
    sql: str  # SELECT line FROM lines: one newline-terminated text per row, in row order
    files: list[PlannedFile]


def combine(jobs: list[RenderJob]) -> RenderJob:
    """One job for several jobs that spell their lines with the same SQL."""
    assert len({job.sql for job in jobs}) == 1, "only jobs with the same SQL can be combined"
    lines = pa.concat_tables([job.lines for job in jobs])
    return RenderJob(lines=lines, sql=jobs[0].sql, files=[f for job in jobs for f in job.files])


def _pieces(
    batches: Iterable[pa.RecordBatch], counts: list[int]
) -> Iterator[tuple[int, memoryview]]:
    """(file number, bytes) pieces of the rendered lines, cut at the files' line counts."""
    bounds = np.r_[0, np.cumsum(counts)]
    first_line = 0
    for batch in batches:
        column = batch.column(0)
        n = len(column)
        offset_type = np.int64 if pa.types.is_large_string(column.type) else np.int32
        offsets = np.frombuffer(column.buffers()[1], dtype=offset_type)[column.offset :]
        data = memoryview(column.buffers()[2]) if n else memoryview(b"")
        cuts = np.clip(bounds - first_line, 0, n)
        for number in np.flatnonzero(cuts[1:] > cuts[:-1]):
            yield int(number), data[offsets[cuts[number]] : offsets[cuts[number + 1]]]
        first_line += n


@contextmanager
def _opened(path: Path, compress: bool) -> Iterator[BinaryIO]:
    with path.open("wb") as raw:
        if not compress:
            yield raw
            return
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=1, mtime=0) as gz:
            yield gz  # type: ignore[misc]


def render(con: duckdb.DuckDBPyConnection, job: RenderJob, paths: list[Path]) -> None:
    """Write the job's files to local `paths` (gzip where the key ends in .gz)."""
    with ExitStack() as stack:
        outs = [
            stack.enter_context(_opened(path, planned.key.endswith(".gz")))
            for path, planned in zip(paths, job.files, strict=True)
        ]
        for out, planned in zip(outs, job.files, strict=True):
            if planned.header is not None:
                out.write((planned.header + "\n").encode())
        con.register("lines", job.lines)
        try:
            reader = con.sql(job.sql).arrow()
            batches = reader if isinstance(reader, pa.RecordBatchReader) else reader.to_batches()
            for number, piece in _pieces(batches, [len(f.kinds) for f in job.files]):
                outs[number].write(piece)
        finally:
            con.unregister("lines")


def publish(
    con: duckdb.DuckDBPyConnection, job: RenderJob, landing: LandingZone, workdir: Path
) -> list[FileReport]:
    """Render the job's files locally, upload each under its key, and report what they hold."""
    paths = [workdir / f"{number}-{Path(f.key).name}" for number, f in enumerate(job.files)]
    render(con, job, paths)
    for path, planned in zip(paths, job.files, strict=True):
        landing.upload_file(path, planned.key)
        path.unlink()
    return [planned.report() for planned in job.files]


@contextmanager
def workspace() -> Iterator[tuple[duckdb.DuckDBPyConnection, Path]]:
    """An in-memory DuckDB for rendering and a scratch folder, both gone afterwards.

    One DuckDB thread: a day's query is too small to gain from more, and `simulate` renders
    on a thread of its own while the next day is simulated on another core.
    """
    remove_abandoned_scratch()
    con = duckdb.connect(config={"threads": 1})
    try:
        with scratch_folder("simulator") as tmp:
            yield con, tmp
    finally:
        con.close()
