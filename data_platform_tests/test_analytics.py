"""The analytics assets' pure helpers."""

from __future__ import annotations

import pandas as pd
import pytest

from data_platform.assets.analytics import SegmentThresholds, assign_segments


def test_segments_start_at_their_threshold():
    spend = pd.Series([0.0, 99.99, 100.0, 499.99, 500.0, 10_000.0], index=list("abcdef"))
    segments = assign_segments(spend, SegmentThresholds(silver_from=100, gold_from=500))
    assert segments.to_dict() == {
        "a": "Bronze", "b": "Bronze", "c": "Silver", "d": "Silver", "e": "Gold", "f": "Gold"
    }  # fmt: skip


def test_equal_thresholds_leave_no_silver_tier():
    """Equal thresholds passed the config check, then failed the asset (pandas refuses a bin
    of width 0): they mean a shop with two tiers."""
    spend = pd.Series([50.0, 100.0, 700.0])
    segments = assign_segments(spend, SegmentThresholds(silver_from=100, gold_from=100))
    assert segments.tolist() == ["Bronze", "Gold", "Gold"]


def test_inverted_thresholds_are_refused_in_one_line():
    with pytest.raises(ValueError, match="must not exceed gold_from"):
        assign_segments(pd.Series([1.0]), SegmentThresholds(silver_from=600, gold_from=500))
