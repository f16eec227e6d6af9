"""The version of the platform's code a process runs: what a Celery worker and its run's process
must share (resources/run_pinned.py), and what tells `make services-up` that the workers it
left running are of an older checkout (services/celery_workers.py).

No Dagster or dbt import here: the services' CLI reads it too.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DBT_PROJECT_DIR = PACKAGE_DIR.parent / "dbt"

# What `make install` builds the manifest from: the Makefile's DBT_SOURCES.
_SOURCE_SUFFIXES = (".sql", ".yml")
_BUILT_FOLDERS = ("target", "logs")


def dbt_sources(project_dir: Path = DBT_PROJECT_DIR) -> Iterator[Path]:
    """The files the dbt manifest is built from, in a stable order."""
    for top in sorted(project_dir.iterdir()):
        if top.name in _BUILT_FOLDERS:
            continue
        for path in sorted(top.rglob("*")) if top.is_dir() else [top]:
            hidden = path.name.startswith(".")  # dbt's own `.user.yml`: no source
            if path.suffix in _SOURCE_SUFFIXES and not hidden and path.is_file():
                yield path


def code_digest(package_dir: Path, dbt_dir: Path) -> str:
    """A digest of the platform's Python package and dbt project: every `.py` file of the one
    and every source of the other (`dbt_sources`), by path and content (5 ms)."""
    digest = hashlib.sha256()
    sources = [(package_dir, p) for p in sorted(package_dir.rglob("*.py"))]
    for root, path in [*sources, *((dbt_dir, p) for p in dbt_sources(dbt_dir))]:
        digest.update(f"{root.name}/{path.relative_to(root)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]


@functools.cache
def loaded_code_version() -> str:
    """The code version of this process: its files as they were at the first call, which a
    Celery worker makes when it starts, before it loads any step's code."""
    return code_digest(PACKAGE_DIR, DBT_PROJECT_DIR)
