"""The dbt project, in its own module so `dagster-dbt project prepare-and-package` can build the
manifest at install time: loading the Definitions never runs dbt."""

from collections.abc import Iterator
from pathlib import Path

from dagster_dbt import DbtProject

from data_platform.settings import SettingsError

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt"

DBT_PROJECT = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)

# What `make install` builds the manifest from: the Makefile's DBT_SOURCES.
_SOURCE_SUFFIXES = (".sql", ".yml")
_BUILT_FOLDERS = ("target", "logs")


def missing_manifest(project_dir: Path = DBT_PROJECT_DIR) -> str | None:
    """Why the dbt manifest is not there, or None: a checkout without `make install`, whose
    Definitions failed to load with a 36-line traceback."""
    manifest = project_dir / "target" / "manifest.json"
    return None if manifest.exists() else f"the dbt manifest {manifest} does not exist"


def require_manifest(project_dir: Path = DBT_PROJECT_DIR) -> None:
    """Raise SettingsError when the dbt manifest is not there: the Definitions do not load
    without it (`data-platform metrics` ended on a 30-line traceback, with status 0)."""
    if missing := missing_manifest(project_dir):
        raise SettingsError(f"{missing}: run `make install`, which builds it")


def dbt_sources(project_dir: Path = DBT_PROJECT_DIR) -> Iterator[Path]:
    """The files the manifest is built from, in a stable order."""
    for top in sorted(project_dir.iterdir()):
        if top.name in _BUILT_FOLDERS:
            continue
        for path in sorted(top.rglob("*")) if top.is_dir() else [top]:
            hidden = path.name.startswith(".")  # dbt's own `.user.yml`: no source
            if path.suffix in _SOURCE_SUFFIXES and not hidden and path.is_file():
                yield path


def stale_manifest(project_dir: Path = DBT_PROJECT_DIR) -> str | None:
    """Why the dbt manifest, there, is older than a dbt source, or None: after a `git pull`
    without `make install`, the dbt steps failed on a node the new sources had renamed (a
    KeyError), once the raw steps had run."""
    manifest = project_dir / "target" / "manifest.json"
    built = manifest.stat().st_mtime
    for path in dbt_sources(project_dir):
        if path.stat().st_mtime > built:
            return f"the dbt manifest {manifest} is older than {path}"
    return None
