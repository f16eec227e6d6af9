"""Scratch folders that a killed process does not leave behind.

A temporary folder is removed when its block ends, which a process killed (kill -9, OOM) never
reaches: an S3 file downloaded for its ingestion, a Python copy of a file DuckDB cannot read
(either a whole landing file), the lines a fast path parked, a simulated day's files all stayed
in `$TMPDIR`, and nothing ever removed them. Every such folder names its process, and each run
that makes them (an ingestion, a simulate) first removes those whose process is gone.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from data_platform.services.process import pid_alive

_PREFIX = "data-platform-"
_NAMED = re.compile(rf"^{_PREFIX}(\d+)-")


@contextmanager
def scratch_folder(kind: str) -> Iterator[Path]:
    """A temporary folder named for this process and `kind` (what it holds), removed when the
    block ends."""
    with tempfile.TemporaryDirectory(prefix=f"{_PREFIX}{os.getpid()}-{kind}-") as folder:
        yield Path(folder)


def remove_abandoned_scratch() -> list[Path]:
    """Remove the scratch folders of processes that died before removing their own; one whose
    process lives (another run, of any home) is left alone."""
    abandoned = [
        path
        for path in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*")
        if (found := _NAMED.match(path.name)) and path.is_dir() and not pid_alive(int(found[1]))
    ]
    for path in abandoned:
        shutil.rmtree(path, ignore_errors=True)
    return abandoned
