"""Every threshold of the quality gates, in one typed, validated place.

The checks are built from one `QualityThresholds` (`build_quality_checks(thresholds)`), so a
deployment or a test changes a number here instead of in the check code, and the README's
"Quality gates" section documents exactly these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class QualityThresholds:
    """The numbers that decide when a check passes, warns or fails hard."""

    dead_letter_warn_ratio: float = 0.01
    """Dead-lettered / records read in a partition above which the ratio check WARNs (1 %)."""

    dead_letter_error_ratio: float = 0.10
    """Above this ratio the check fails with ERROR and blocks downstream: a producer is broken."""

    ratio_min_records: int = 50
    """Below this many records in a partition a ratio is noise: it may WARN, never ERROR."""

    orphan_user_warn_ratio: float = 0.005
    """Share of events whose user_id has no version in raw.users above which to WARN."""

    orphan_order_warn_ratio: float = 0.005
    """Share of payments whose order_id has no version in raw.orders above which to WARN."""

    unknown_value_warn_ratio: float = 0.001
    """Share of events of an unknown event_type (or payments of an unknown status or currency)
    to WARN at."""

    out_of_range_warn_ratio: float = 0.001
    """Share of payments outside dbt vars payment_amount_min..max above which to WARN."""

    max_days_from_dt: int = 2
    """An event whose occurred_at date is more than this many days from its dt is suspicious."""

    far_from_dt_warn_ratio: float = 0.001
    """Share of events further than max_days_from_dt from their dt above which to WARN."""

    revenue_tolerance: float = 0.01
    """Relative gap allowed per day between completed-order revenue and the payments for it."""

    anomaly_z_score: float = 3.5
    """Robust z-score (median / MAD) of a partition's row count above which to WARN."""

    anomaly_window: int = 7
    """How many previous weeks (their same weekday) form the baseline of the row-count anomaly
    check; the preceding partitions with rows while fewer than `anomaly_min_history` such weeks
    hold rows."""

    anomaly_min_history: int = 3
    """Fewer preceding partitions with rows than this: no baseline yet, the check passes."""

    failure_cases_shown: int = 10
    """Rows of Pandera failure cases (and of other offenders) shown in a check's metadata."""

    scorecard_days: int = 7
    """The data-quality scorecard summarises check executions of this many past days."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value < 0:
                raise ValueError(f"{field.name} must not be negative, got {value}")
            if field.name.endswith(("_ratio", "_tolerance")) and value > 1:
                raise ValueError(f"{field.name} is a fraction between 0 and 1, got {value}")
        if self.dead_letter_warn_ratio > self.dead_letter_error_ratio:
            raise ValueError(
                f"dead_letter_warn_ratio ({self.dead_letter_warn_ratio}) must not exceed "
                f"dead_letter_error_ratio ({self.dead_letter_error_ratio})"
            )
        if not 1 <= self.anomaly_min_history <= self.anomaly_window:
            raise ValueError(
                f"anomaly_min_history ({self.anomaly_min_history}) must be between 1 and "
                f"anomaly_window ({self.anomaly_window})"
            )
