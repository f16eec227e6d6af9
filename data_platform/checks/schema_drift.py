"""Schema drift: fields outside the contract, kept in `_rescued`, reported with counts. WARN.

Ingestion loses nothing (extra fields go to `_rescued`), but a new field usually means a
producer changed: someone should decide whether the contract grows. A key is new when no
partition before the run's window carried it; a check launched without partitions judges the
whole table, so every rescued key is new to it.
"""

import dagster as dg

from data_platform.checks.report import markdown_table
from data_platform.checks.scope import run_window
from data_platform.partitions import WAREHOUSE_POOL
from data_platform.resources.warehouse import Warehouse

RESCUED_KEYS = """
SELECT key, count(*) AS records, min(dt) AS first_dt, max(dt) AS last_dt
FROM (
    SELECT unnest(json_keys(_rescued)) AS key, dt FROM {table}
    WHERE _rescued IS NOT NULL AND {predicate}
)
GROUP BY key ORDER BY records DESC, key
"""
KEYS_BEFORE = """
SELECT DISTINCT unnest(json_keys(_rescued)) AS key FROM {table} WHERE _rescued IS NOT NULL AND dt < ?
"""


def schema_drift_check(source: str) -> dg.AssetChecksDefinition:
    table = f"raw.{source}"

    @dg.asset_check(
        asset=dg.AssetKey(["raw", source]),
        name="schema_drift",
        pool=WAREHOUSE_POOL,
        description=f"Top-level keys of {table}._rescued (fields outside the contract) with "
        "counts; WARN when a key no earlier partition had appears.",
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: Warehouse):
        window = run_window(context)
        predicate, params = window.where("dt")
        with warehouse.reader() as reader:
            keys = reader.frame(RESCUED_KEYS.format(table=table, predicate=predicate), params)
            known = (
                set(reader.frame(KEYS_BEFORE.format(table=table), [window.first])["key"])
                if window.first
                else set()
            )
        new_keys = sorted(set(keys["key"]) - known)
        keys = keys.assign(
            new=keys["key"].isin(new_keys),
            first_dt=keys["first_dt"].dt.date,
            last_dt=keys["last_dt"].dt.date,
        )
        return dg.AssetCheckResult(
            passed=not new_keys,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "partitions": window.describe(),
                "rescued_keys": len(keys),
                "new_keys": dg.MetadataValue.json(new_keys),
                "records_with_key": dg.MetadataValue.json(
                    keys.set_index("key")["records"].astype(int).to_dict()
                ),
                "keys": dg.MetadataValue.md(markdown_table(keys)),
            },
            description=f"new field(s) outside the contract: {', '.join(new_keys)}"
            if new_keys
            else None,
        )

    return _check
