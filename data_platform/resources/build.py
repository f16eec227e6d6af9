"""Settings -> the resources every asset, sensor and check asks for by name."""

from __future__ import annotations

import os

import dagster as dg

from data_platform.resources.alerts import AlertWebhook
from data_platform.resources.dbt_cli import local_dbt
from data_platform.resources.landing import LandingZone
from data_platform.resources.privacy import SALT_FILE, SALT_VARIABLE, Privacy
from data_platform.resources.source_database import SourceDatabase
from data_platform.resources.warehouse import warehouse_of
from data_platform.resources.warehouse_io_manager import (
    SparkWarehouseIOManager,
    WarehouseIOManager,
)
from data_platform.settings import (
    ALERT_WEBHOOK_VARIABLE,
    SOURCE_DB_URL_VARIABLE,
    SPARK_REMOTE_VARIABLE,
    Settings,
)


def _from_env_if_set(name: str, default: str) -> str | dg.EnvVar:
    """Secrets set in the environment go in as EnvVar: resolved at run time, never displayed,
    and as set (load_settings refuses spaces around those it checks)."""
    return dg.EnvVar(name) if os.environ.get(name, "").strip() else default


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    # The URL may carry a token (;token=...).
    spark_remote = _from_env_if_set(SPARK_REMOTE_VARIABLE, settings.spark_remote or "") or None
    warehouse = warehouse_of(settings, spark_remote)
    return {
        "warehouse": warehouse,
        # Python assets that return DataFrames store them as tables [schema, table] of the key.
        "warehouse_io_manager": SparkWarehouseIOManager(warehouse=warehouse)
        if settings.engine == "spark"
        else WarehouseIOManager(database=str(settings.warehouse)),
        "landing": LandingZone(url=settings.landing),
        # The URL may carry a password.
        "source_database": SourceDatabase(
            url=_from_env_if_set(SOURCE_DB_URL_VARIABLE, settings.source_db_url)
        ),
        "privacy": Privacy(
            pii_salt=_from_env_if_set(SALT_VARIABLE, "") or None,
            salt_file=str(settings.home / SALT_FILE),
            distributed=settings.executor == "celery",
        ),
        # The webhook URL is a secret: resolved at run time, never displayed; unset: logged.
        "alerts": AlertWebhook(
            webhook_url=dg.EnvVar(ALERT_WEBHOOK_VARIABLE) if settings.alert_webhook else None
        ),
        "dbt": local_dbt(),
    }
