"""The dbt project, in its own module so `dagster-dbt project prepare-and-package` can build the
manifest at install time: loading the Definitions never runs dbt."""

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from dagster_dbt import DbtProject

from data_platform.code_version import DBT_PROJECT_DIR, dbt_sources
from data_platform.settings import SettingsError

DBT_PROJECT = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


@cache
def dbt_vars() -> dict[str, Any]:
    """The project's vars (dbt_project.yml): the value lists the checks judge with, and what the
    check descriptions show for a test's `{{ var(...) }}` arguments."""
    return yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]


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
