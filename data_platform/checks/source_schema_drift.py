"""Schema drift of the app database: columns that appeared in or disappeared from a source. WARN.

The counterpart of `schema_drift` on the landing files, for the four version logs. Extraction
loses nothing (columns outside the contract go to `_rescued`) and stops on a contract column
that is gone, but neither tells a person the source changed: this check does. It compares the
source table's columns, as they are now, with the contract, and counts the versions whose
`_rescued` carries each extra column. A contract decimal the source now declares with more
digits (numeric(12,4) for a DECIMAL(10,2)) is named too: extraction refuses any value it would
round, so a person hears of it before such a value stops a run. It keeps failing until the
contract grows (the column declared in `ingestion/tables.py`) or the source reverts.
"""

import dagster as dg

from data_platform.checks.report import markdown_table
from data_platform.ingestion.source_schema import reflect
from data_platform.ingestion.tables import RawTable
from data_platform.partitions import WAREHOUSE_POOL
from data_platform.resources.source_database import SourceDatabase
from data_platform.resources.warehouse import Warehouse

RESCUED_COLUMNS = """
SELECT key AS column, count(*) AS versions,
       min(_extracted_at) AS first_extracted, max(_extracted_at) AS last_extracted
FROM (SELECT unnest(json_keys(_rescued)) AS key, _extracted_at FROM {table}
      WHERE _rescued IS NOT NULL)
GROUP BY key ORDER BY versions DESC, key
"""


def source_schema_drift_check(table: RawTable) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(["raw", table.name]),
        name="schema_drift",
        pool=WAREHOUSE_POOL,
        description=f"Columns of the source table {table.name!r} outside the contract (kept in "
        "_rescued, with the versions carrying them) or missing from it; WARN when there are any.",
    )
    def _check(warehouse: Warehouse, source_database: SourceDatabase) -> dg.AssetCheckResult:
        _, columns = reflect(source_database.engine(), table)
        with warehouse.reader() as reader:
            # Launched before the first extraction, the version log is empty, not an error.
            reader.ensure_raw_tables((table,))
            rescued = reader.frame(RESCUED_COLUMNS.format(table=table.qualified_name))
        problems = [
            *([f"appeared: {', '.join(columns.extra)}"] if columns.extra else []),
            *([f"disappeared: {', '.join(columns.missing)}"] if columns.missing else []),
            *(
                [
                    "declared wider than the contract (a value with more digits stops "
                    f"extraction): {', '.join(f'{n} {t}' for n, t in columns.wider.items())}"
                ]
                if columns.wider
                else []
            ),
        ]
        return dg.AssetCheckResult(
            passed=not problems,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "appeared": dg.MetadataValue.json(columns.extra),
                "disappeared": dg.MetadataValue.json(columns.missing),
                "declared_wider": dg.MetadataValue.json(columns.wider),
                "versions_with_column": dg.MetadataValue.json(
                    rescued.set_index("column")["versions"].astype(int).to_dict()
                ),
                "rescued_columns": dg.MetadataValue.md(markdown_table(rescued)),
            },
            description=f"source table {table.name!r} changed: {'; '.join(problems)}; declare "
            "the columns in the contract (ingestion/tables.py) or revert the source"
            if problems
            else None,
        )

    return _check
