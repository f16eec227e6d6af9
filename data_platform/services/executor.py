"""The executor the Definitions run steps with, chosen by DATA_PLATFORM_EXECUTOR."""

from __future__ import annotations

import dagster as dg

from data_platform.settings import CELERY_BROKER_VARIABLE, Settings


def build_executor(settings: Settings) -> dg.ExecutorDefinition:
    """Embedded: steps in the run's process. Distributed: each step a task for a Celery worker.

    The broker is an `env:` reference (Redis is the result backend too), so its URL, which may
    carry a password in production, never shows in the UI or the run config.
    """
    if settings.executor == "celery":
        from dagster_celery import celery_executor

        broker = {"env": CELERY_BROKER_VARIABLE}
        return celery_executor.configured({"broker": broker, "backend": broker})
    return dg.in_process_executor
