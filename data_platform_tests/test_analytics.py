"""The analytics assets' pure helpers."""

from __future__ import annotations

import dagster as dg
import duckdb
import pandas as pd
import pytest

from data_platform.assets.analytics import SegmentThresholds, assign_segments
from data_platform.assets.scorecard import check_outcomes, scorecard


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


def test_scorecard_counts_checks_that_raise_as_errored():
    """A check that raises leaves no evaluation (its record stays PLANNED): reading evaluations
    only hid it, and a table whose checks all crashed left the scorecard."""

    @dg.asset
    def thing() -> int:
        return 1

    @dg.asset_check(asset=thing)
    def crashes() -> dg.AssetCheckResult:
        raise RuntimeError("a bug in the check")

    @dg.asset_check(asset=thing)
    def fails() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN)

    instance = dg.DagsterInstance.ephemeral()
    for _ in range(2):
        dg.materialize([thing, crashes, fails], instance=instance, raise_on_error=False)
    keys = [crashes.check_key, fails.check_key]
    outcomes = check_outcomes(instance, keys, since=0)
    assert sorted(map(tuple, outcomes[["check", "passed", "errored"]].values)) == [
        ("crashes", False, True), ("crashes", False, True),
        ("fails", False, False), ("fails", False, False),
    ]  # fmt: skip
    volumes = pd.DataFrame(columns=["table", "records", "dead_letters"])
    [row] = scorecard(outcomes, volumes).to_dict("records")
    assert (row["executions"], row["passed"], row["failed_warn"], row["errored"]) == (4, 0, 2, 2)
    assert row["pass_rate"] == 0


def test_a_frame_with_other_columns_replaces_its_table(tmp_path):
    """The scorecard gained a column (`errored`): inserted into the table an older version made,
    the frame failed every run on every existing warehouse."""
    from data_platform.resources.warehouse_io_manager import WarehouseIOManager
    from data_platform_tests.helpers import query

    path = tmp_path / "warehouse.duckdb"
    resources = {"warehouse_io_manager": WarehouseIOManager(database=str(path))}

    def version(frame: pd.DataFrame) -> dg.AssetsDefinition:
        @dg.asset(key=["analytics", "card"], io_manager_key="warehouse_io_manager")
        def card():
            return frame

        return card

    for frame in (
        pd.DataFrame({"table": ["a", "b"], "passed": [1, 2]}),
        pd.DataFrame({"table": ["a"], "passed": [3], "errored": [1]}),
        pd.DataFrame({"table": ["c"], "passed": [4], "errored": [0]}),  # same columns: replaced
    ):
        assert dg.materialize([version(frame)], resources=resources).success
        stored = query(path, "SELECT * FROM analytics.card ORDER BY ALL")
        assert stored == list(frame.itertuples(index=False, name=None))


def test_customer_segments_are_stored_as_the_asset_declares_them(settings, resources):
    """The UI showed no Columns for the segments (Dagster's pandas handler stores its frame's
    columns under a key the UI does not read): the asset declares them, as stored."""
    from data_platform.assets.analytics import SEGMENT_COLUMNS, customer_segments
    from data_platform_tests.helpers import query
    from data_platform_tests.test_scorecard import stored_columns

    settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.warehouse)) as conn:
        conn.execute("CREATE SCHEMA marts")
        conn.execute(
            "CREATE TABLE marts.customer_lifetime_value AS SELECT * FROM (VALUES "
            "(1::BIGINT, 50.0::DECIMAL(18, 2)), (2, 150.0), (3, 900.0)) AS t(user_id, lifetime_revenue)"
        )
    assert dg.materialize([customer_segments], resources=resources).success
    assert stored_columns(settings.warehouse, "customer_segments") == [
        (c.name, c.type) for c in SEGMENT_COLUMNS.columns
    ]
    stored = query(settings.warehouse, "SELECT user_id, segment FROM analytics.customer_segments")
    assert sorted(stored) == [(1, "Bronze"), (2, "Silver"), (3, "Gold")]
