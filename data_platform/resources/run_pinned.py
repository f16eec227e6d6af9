"""Settings a run's process pins and every process running its steps must share.

A Celery worker builds its resources from its own environment, frozen when `services up`
started it. A run's process with other settings handed its steps to workers that wrote
another warehouse (a Spark run's tables into a DuckDB file no one reads) or read another
landing zone (an S3 run ingesting the worker's local folder), and the run succeeded. The Celery
executor tags each run with its process's pins (`run_pins`); a resource checks its own where a
step first uses it (`require_run_pin`), so the step fails in one line instead. Checked at use,
not while the resource is set up: an error there escaped the worker's Celery task, and the run
hung waiting for its other steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlparse

import dagster as dg
from pydantic import PrivateAttr

from data_platform.code_version import loaded_code_version
from data_platform.settings import Settings, masked_url

TAG_PREFIX = "data_platform/"
# The tag of the code version of a Celery run's process (`loaded_code_version`).
CODE_TAG = TAG_PREFIX + "code"


def spark_endpoint(spark_remote: str) -> str:
    """The Spark Connect URL as `sc://host:port`: never the URL's token."""
    parsed = urlparse(spark_remote)
    return f"sc://{parsed.hostname}:{parsed.port}"


def warehouse_pin(engine: str, path: str, spark_remote: str | None) -> str:
    """The DuckDB file, or the Spark endpoint (`spark_endpoint`)."""
    if engine == "spark":
        return f"spark {spark_endpoint(spark_remote or '')}"
    return f"duckdb {Path(path).resolve()}"


def landing_pin(url: str) -> str:
    return url if url.startswith("s3://") else str(Path(url).resolve())


def source_database_pin(url: str) -> str:
    """The URL without its password (`masked_url`: also a driver's `?password=`)."""
    import sqlalchemy as sa

    return masked_url(sa.engine.make_url(url))


def run_pins(settings: Settings) -> dict[str, str]:
    """The run tags of the pins of a process with these settings, and of its code version."""
    pins = {
        "warehouse": warehouse_pin(settings.engine, str(settings.warehouse), settings.spark_remote),
        "landing": landing_pin(settings.landing),
        "source_database": source_database_pin(settings.source_db_url),
    }
    return {
        **{TAG_PREFIX + name: pin for name, pin in pins.items()},
        CODE_TAG: loaded_code_version(),
    }


class CodeVersionMismatch(RuntimeError):
    """A Celery worker runs other code than its step's run: one actionable line."""

    def __init__(self, workers: str, runs: str):
        super().__init__(
            f"this step's Celery worker runs the platform's code {workers} (its Python package "
            f"and dbt project as they were when it started), but its run's process runs {runs}: "
            "the workers were started before the code changed, and would run the step as it "
            "was. Start them again (`make services-up` does, for workers of other code), "
            "then re-run the step: nothing of it ran"
        )


def require_run_code(run_tags: Mapping[str, str]) -> None:
    """Raise CodeVersionMismatch when the run's process ran another code version than this
    one (a run tagged by no Celery executor of this platform is not checked)."""
    runs = run_tags.get(CODE_TAG)
    if runs and runs != loaded_code_version():
        raise CodeVersionMismatch(loaded_code_version(), runs)


class RunPinMismatch(RuntimeError):
    """A step's process would use another setting than its run's; one actionable line."""

    def __init__(self, what: str, steps: str, runs: str):
        super().__init__(
            f"this step's process would use the {what} {steps}, but its run's is {runs}: the "
            "Celery workers were started with other settings than the process that started "
            "the run. Restart them with the run's settings (`SERVICES=celery make "
            "services-down`, then `SERVICES=celery make services-up` in the run's environment, "
            "which also hands them the variables of the services running, the Spark "
            "cluster's), then re-run the step: it used nothing of the other one"
        )


class RunPinnedResource(dg.ConfigurableResource):
    """A resource whose `pin` must be the run's (its tag TAG_PREFIX + PIN, when set)."""

    PIN: ClassVar[str]
    _run_pin: str | None = PrivateAttr(default=None)

    @property
    def pin(self) -> str:
        raise NotImplementedError

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run = context.dagster_run
        self._run_pin = run.tags.get(TAG_PREFIX + self.PIN) if run else None

    def require_run_pin(self) -> None:
        if self._run_pin and self._run_pin != self.pin:
            raise RunPinMismatch(self.PIN.replace("_", " "), self.pin, self._run_pin)
