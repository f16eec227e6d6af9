"""The arithmetic of the checks, pure and unit-tested: ratios, severities, robust z-scores."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import dagster as dg

# MAD * 1.4826 estimates the standard deviation of normally distributed data.
MAD_TO_SIGMA = 1.4826


def ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def ratio_severity(
    bad: int, total: int, warn_above: float, error_above: float, min_records: int
) -> dg.AssetCheckSeverity | None:
    """None when fine, else WARN or ERROR; a small partition (< min_records) never ERRORs."""
    share = ratio(bad, total)
    if share > error_above and total >= min_records:
        return dg.AssetCheckSeverity.ERROR
    if share > warn_above:
        return dg.AssetCheckSeverity.WARN
    return None


def robust_z(value: float, baseline: Sequence[float], min_scale: float = 0.0) -> float:
    """How many robust standard deviations `value` lies from the baseline's median.

    Median and MAD ignore the odd outlier in the baseline itself (a past incident), unlike
    mean and standard deviation. `min_scale` floors the spread: a baseline of identical values
    has MAD 0, which would make any difference infinitely surprising. Without a floor, the
    result is infinite when the baseline is constant and the value differs.
    """
    if not baseline:
        raise ValueError("robust_z needs a non-empty baseline")
    median = statistics.median(baseline)
    mad = statistics.median(abs(x - median) for x in baseline)
    scale = max(mad * MAD_TO_SIGMA, min_scale)
    if scale == 0:
        return 0.0 if value == median else math.copysign(math.inf, value - median)
    return (value - median) / scale


def within_tolerance(expected: float, actual: float, tolerance: float) -> bool:
    """|actual - expected| within `tolerance` x |expected| (exact match needed at 0)."""
    return abs(actual - expected) <= tolerance * abs(expected)
