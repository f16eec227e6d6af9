"""The table of contents: every asset, check, sensor and resource of the platform, in one place."""

import dagster as dg

from data_platform.assets.analytics import ANALYTICS_ASSETS
from data_platform.assets.dbt import DBT_ASSETS
from data_platform.assets.raw import DEAD_LETTER_SPEC, RAW_FILE_ASSETS, RAW_SOURCE_TABLE_ASSETS
from data_platform.resources.build import build_resources
from data_platform.settings import load_settings

defs = dg.Definitions(
    assets=[
        *RAW_SOURCE_TABLE_ASSETS,
        *RAW_FILE_ASSETS,
        DEAD_LETTER_SPEC,
        *DBT_ASSETS,
        *ANALYTICS_ASSETS,
    ],
    resources=build_resources(load_settings()),
)
