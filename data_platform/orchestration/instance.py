"""The platform's Dagster instance, for the commands that run outside `dagster dev`."""

from __future__ import annotations

import dagster as dg

from data_platform.settings import Settings


def platform_instance(settings: Settings) -> dg.DagsterInstance:
    """DAGSTER_HOME's instance, by default `$DATA_PLATFORM_HOME/dagster_home` as the Makefile
    exports it: a command typed by hand (`data-platform materialize`, `metrics`) records its runs
    where `make run` reads them, instead of stopping on Dagster's DAGSTER_HOME-not-set error."""
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.from_config(str(settings.dagster_home))
