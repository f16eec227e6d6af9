"""Referential integrity of the file sources against the app database. WARN only.

Judged against the raw version logs (any version ever extracted), not staging: the check runs
right after raw ingestion, before dbt, and an id known in any version is a known id. Orphans
are expected in small numbers (an event can arrive before its user is extracted), which is why
a ratio threshold decides, and why the marts keep orphans with a flag instead of dropping them.
"""

import dagster as dg

from data_platform.checks.soft_rules import SoftRule
from data_platform.checks.thresholds import QualityThresholds


def orphan_rules(t: QualityThresholds) -> list[SoftRule]:
    return [
        SoftRule(
            "events",
            "orphan_user_ids",
            "NOT EXISTS (SELECT 1 FROM raw.users AS u WHERE u.id = t.user_id)",
            "user_id",
            t.orphan_user_warn_ratio,
            "Events whose user_id has no version in raw.users.",
            additional_deps=(dg.AssetKey(["raw", "users"]),),
        ),
        SoftRule(
            "payments",
            "orphan_order_ids",
            "NOT EXISTS (SELECT 1 FROM raw.orders AS o WHERE o.id = t.order_id)",
            "order_id",
            t.orphan_order_warn_ratio,
            "Payments whose order_id has no version in raw.orders.",
            additional_deps=(dg.AssetKey(["raw", "orders"]),),
        ),
    ]
