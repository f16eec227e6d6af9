"""The dbt CLI resource: the dbt installed beside this interpreter."""

import os
import sys
from collections.abc import Sequence
from functools import cached_property
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

from dagster_dbt import DbtCliInvocation, DbtCliResource
from packaging import version

from data_platform.assets.dbt_project import DBT_PROJECT
from data_platform.resources.dbt_guard import PARENT_VARIABLE


class LocalDbtCliResource(DbtCliResource):
    """dagster-dbt learns dbt's version by running `dbt --version` once per resource, and every
    run builds its resources anew: 1.25 s of every dbt step here. The executable is this
    environment's own dbt, so the installed dbt-core package tells the same version."""

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(installed_version("dbt-core"))

    def cli(self, args: Sequence[str], **kwargs: Any) -> DbtCliInvocation:
        # dbt's guard (dbt_guard.py) checks that the process starting it is still its parent.
        os.environ[PARENT_VARIABLE] = str(os.getpid())
        return super().cli(args, **kwargs)

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:
        """No in-process dbt adapter: dagster-dbt builds one (0.8 s: it parses every macro) only
        to read column metadata and row counts, which `assets/dbt_metadata.py` reads straight
        from the warehouse. It also kept DuckDB's single-writer lock after the run."""
        return None


def local_dbt() -> LocalDbtCliResource:
    """The venv's dbt, whether or not the venv is on PATH, through `data-platform-dbt`, which
    ends it with the step that started it (resources/dbt_guard.py)."""
    return LocalDbtCliResource(
        project_dir=DBT_PROJECT,
        profiles_dir=str(DBT_PROJECT.profiles_dir),
        dbt_executable=str(Path(sys.executable).with_name("data-platform-dbt")),
    )
