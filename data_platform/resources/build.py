"""Settings -> the resources every asset, sensor and check asks for by name."""

from __future__ import annotations

import os

import dagster as dg

from data_platform.resources.landing import LandingZone
from data_platform.resources.source_database import SourceDatabase
from data_platform.resources.warehouse import Warehouse
from data_platform.settings import Settings


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    # The source URL may carry a password: when it comes from the environment, pass it as an
    # EnvVar so Dagster resolves it at run time and never shows or stores its value.
    source_url = (
        dg.EnvVar("DATA_PLATFORM_SOURCE_DB_URL")
        if os.environ.get("DATA_PLATFORM_SOURCE_DB_URL", "").strip()
        else settings.source_db_url
    )
    return {
        "warehouse": Warehouse(path=str(settings.warehouse)),
        "landing": LandingZone(url=settings.landing),
        "source_database": SourceDatabase(url=source_url),
    }
