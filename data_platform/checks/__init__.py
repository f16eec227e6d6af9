"""Quality gates: Pandera models and the asset checks built from them and from the thresholds.

`build_quality_checks(thresholds)` builds every check from one QualityThresholds, so tests and
deployments change numbers without touching check code; QUALITY_CHECKS uses the defaults.
"""

import dagster as dg

from data_platform.checks.anomaly import row_count_anomaly_check
from data_platform.checks.conservation import conservation_check
from data_platform.checks.dead_letter import dead_letter_checks
from data_platform.checks.gates import GATES
from data_platform.checks.pandera_gate import pandera_check
from data_platform.checks.reconciliation import revenue_reconciliation_check
from data_platform.checks.referential import orphan_rules
from data_platform.checks.schema_drift import schema_drift_check
from data_platform.checks.soft_rules import soft_rule_check, soft_rules
from data_platform.checks.source_schema_drift import source_schema_drift_check
from data_platform.checks.thresholds import QualityThresholds
from data_platform.ingestion.file_formats import EVENT_FILES, PAYMENT_FILES
from data_platform.ingestion.tables import SOURCE_DB_TABLES

FILE_FORMATS = (EVENT_FILES, PAYMENT_FILES)


def build_quality_checks(thresholds: QualityThresholds) -> list[dg.AssetChecksDefinition]:
    t = thresholds
    return [
        *(pandera_check(gate, t) for gate in GATES),
        *(conservation_check(fmt) for fmt in FILE_FORMATS),
        *(dead_letter_checks(fmt, t) for fmt in FILE_FORMATS),
        *(soft_rule_check(rule, t) for rule in [*orphan_rules(t), *soft_rules(t)]),
        *(row_count_anomaly_check(fmt.source, t) for fmt in FILE_FORMATS),
        *(schema_drift_check(fmt.source) for fmt in FILE_FORMATS),
        *(source_schema_drift_check(table) for table in SOURCE_DB_TABLES),
        revenue_reconciliation_check(t),
    ]


QUALITY_CHECKS = build_quality_checks(QualityThresholds())
# The checks that keep a verdict per day (a partitions_def on their spec): conservation,
# dead_letter_ratio and the Pandera gates of the raw files and of the partitioned facts
# (Gate.per_day). An unpartitioned reader of their assets sees one of them failed while any
# day is, and waits (daily_active_users, on fct_events), unless it reports on the checks
# themselves (the scorecard ignores these); see automation.conditions.follows_inputs.
DAY_PARTITIONED_CHECKS = dg.AssetSelection.checks(
    *(spec.key for c in QUALITY_CHECKS for spec in c.check_specs if spec.partitions_def)
)
