"""A query's rows held apart from the warehouse, so its lock goes before the output drains.

`data-platform sql` once streamed rows from an open DuckDB connection straight to stdout: a
reader slower than the query (a pager, `| less`, a paused terminal) kept the file locked for as
long as it took, and writers waiting for the lock failed at the end of their wait. The rows are
now fetched whole into a spool, the connection closed, and then written out.

Rows are pickled a batch at a time (exact Python values: Decimal, datetime, nested lists come
back as they were fetched), kept in memory up to a bound and past it in an unnamed temporary
file, private to the process and gone when it closes or dies: a large result costs disk, not
memory.
"""

from __future__ import annotations

import itertools
import pickle
import tempfile
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import IO

# Pickled bytes kept in memory before the spool moves to a temporary file.
MEMORY_BYTES = 64 << 20
BATCH_ROWS = 10_000
_LENGTH_BYTES = 8


class RowSpool:
    """Rows written once (`extend`), then read back once, in order (`rows`)."""

    def __init__(self, memory_bytes: int = MEMORY_BYTES) -> None:
        self.memory_bytes = memory_bytes
        self._memory: list[bytes] = []
        self._memory_size = 0
        self._file: IO[bytes] | None = None

    @property
    def spilled(self) -> bool:
        """Whether the rows outgrew memory and went to a temporary file."""
        return self._file is not None

    def extend(self, rows: Iterable[tuple]) -> None:
        iterator = iter(rows)
        while batch := list(itertools.islice(iterator, BATCH_ROWS)):
            self._add(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))

    def _add(self, blob: bytes) -> None:
        if self._file is None and self._memory_size + len(blob) <= self.memory_bytes:
            self._memory.append(blob)
            self._memory_size += len(blob)
            return
        if self._file is None:
            # Closed by close(), which every user reaches through `with`.
            self._file = tempfile.TemporaryFile(prefix="data-platform-sql-")  # noqa: SIM115
        self._file.write(len(blob).to_bytes(_LENGTH_BYTES, "little") + blob)

    def rows(self) -> Iterator[tuple]:
        """The rows in the order they were added; memory is given back as they are read."""
        while self._memory:
            yield from pickle.loads(self._memory.pop(0))
        if self._file is None:
            return
        self._file.seek(0)
        while header := self._file.read(_LENGTH_BYTES):
            yield from pickle.loads(self._file.read(int.from_bytes(header, "little")))

    def close(self) -> None:
        self._memory.clear()
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> RowSpool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
